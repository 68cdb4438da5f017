"""Flow: routines wired together, event to slot.

Example::

    flow = Flow(flow_id="data_pipeline")
    flow.add_routine(DataSource(), "source")
    flow.add_routine(DataProcessor(), "processor")
    flow.connect("source", "output", "processor", "input")

A Flow is a definition only: every job's data lives in the Runtime, so one Flow serves
any number of concurrent jobs. ``to_dict``/``from_dict`` describe it in plain JSON
(routines by import path plus config; policies and error handlers by name and args).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from routilux import flow_graph
from routilux.activation_policies import (
    ActivationPolicy,
    ImmediatePolicy,
    policy_from_description,
)
from routilux.connection import Connection
from routilux.error_handler import ErrorHandler
from routilux.errors import InvalidFlowError, SerializationError
from routilux.imports import import_path, path_of
from routilux.routine import Logic, Routine
from routilux.slot import Slot

#: Version of the ``Flow.to_dict`` layout.
FLOW_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class RoutinePlan:
    """What the runtime needs of one routine, resolved once per flow version."""

    routine_id: str
    routine: Routine
    slot_names: tuple[str, ...]
    slots: Mapping[str, Slot]
    logic: Logic | None
    policy: ActivationPolicy
    uses_clock: bool
    error_handler: ErrorHandler


@dataclass(frozen=True)
class FlowPlan:
    """A flow compiled for execution: routines and the event -> slot routing table."""

    flow: Flow
    routines: Mapping[str, RoutinePlan]
    routes: Mapping[tuple[str, str], tuple[tuple[str, str, Slot], ...]]
    fingerprint: str
    #: ``resolve_entry()`` worked out once; None if the flow has no clear entry
    default_entry: tuple[str, str] | None


class Flow:
    """A workflow definition. See the module docstring."""

    def __init__(self, flow_id: str | None = None) -> None:
        self.flow_id: str = flow_id or uuid.uuid4().hex
        self.entry_routine_id: str | None = None
        self._routines: dict[str, Routine] = {}
        self._connections: list[Connection] = []
        self._error_handler: ErrorHandler | None = None
        self._version = 0
        self._plan: FlowPlan | None = None
        self._plan_key: tuple[int, ...] = ()

    def __repr__(self) -> str:
        return f"Flow({self.flow_id!r}, routines={list(self._routines)})"

    # -- building ----------------------------------------------------------------------
    def add_routine(self, routine: Routine, routine_id: str | None = None) -> str:
        """Add ``routine`` under ``routine_id`` (default: a fresh id); returns the id."""
        if not isinstance(routine, Routine):
            raise TypeError(f"add_routine expects a Routine, got {type(routine).__name__}")
        routine_id = routine_id or uuid.uuid4().hex[:12]
        if routine_id in self._routines:
            raise InvalidFlowError(f"flow {self.flow_id!r} already has a routine {routine_id!r}")
        self._routines[routine_id] = routine
        self._version += 1
        return routine_id

    def connect(self, source_id: str, event: str, target_id: str, slot: str) -> Connection:
        """Deliver every emit of ``source_id.event`` to ``target_id.slot``.

        Raises ``InvalidFlowError`` naming the unknown routine, event or slot and the
        valid choices, or if the same edge exists already.
        """
        source = self.get_routine(source_id)
        target = self.get_routine(target_id)
        source.get_event(event)
        target.get_slot(slot)
        connection = Connection(source_id, event, target_id, slot)
        if connection in self._connections:
            raise InvalidFlowError(
                f"{source_id}.{event} -> {target_id}.{slot} is connected already"
            )
        self._connections.append(connection)
        self._version += 1
        return connection

    def set_error_handler(self, handler: ErrorHandler | None) -> None:
        """Default error policy for routines that have none of their own."""
        self._error_handler = handler
        self._version += 1

    def get_error_handler(self) -> ErrorHandler | None:
        return self._error_handler

    def get_routine(self, routine_id: str) -> Routine:
        try:
            return self._routines[routine_id]
        except KeyError:
            choices = ", ".join(sorted(self._routines)) or "(none)"
            raise InvalidFlowError(
                f"flow {self.flow_id!r} has no routine {routine_id!r}; routines: {choices}"
            ) from None

    @property
    def routines(self) -> Mapping[str, Routine]:
        return MappingProxyType(self._routines)

    @property
    def connections(self) -> tuple[Connection, ...]:
        return tuple(self._connections)

    # -- entry -------------------------------------------------------------------------
    def resolve_entry(self, entry: str | None = None) -> tuple[str, str]:
        """The ``(routine_id, slot)`` that receives a job's ``entry_params``.

        ``entry`` may be ``"routine.slot"`` or a routine id; by default it is
        ``entry_routine_id`` if set, else the single routine with a ``trigger`` slot.
        A routine given without a slot uses its ``trigger`` slot, else its first slot.
        """
        if entry and "." in entry:
            routine_id, slot = entry.split(".", 1)
            self.get_routine(routine_id).get_slot(slot)
            return routine_id, slot
        routine_id = entry or self.entry_routine_id or self._single_trigger_routine()
        slots = self.get_routine(routine_id).slots
        if not slots:
            raise InvalidFlowError(f"entry routine {routine_id!r} has no slots")
        return routine_id, "trigger" if "trigger" in slots else next(iter(slots))

    def _single_trigger_routine(self) -> str:
        candidates = [rid for rid, r in self._routines.items() if "trigger" in r.slots]
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise InvalidFlowError(
                f"flow {self.flow_id!r} has no entry: set entry_routine_id or give one "
                "routine a slot named 'trigger'"
            )
        raise InvalidFlowError(
            f"flow {self.flow_id!r} has several routines with a 'trigger' slot "
            f"({', '.join(sorted(candidates))}); set entry_routine_id to choose"
        )

    # -- compiled plan -----------------------------------------------------------------
    def plan(self) -> FlowPlan:
        """The compiled form the runtime executes; rebuilt only when the flow changed."""
        key = (self._version, *(r._version for r in self._routines.values()))
        plan = self._plan
        if plan is None or key != self._plan_key:
            plan = self._compile()
            self._plan, self._plan_key = plan, key
        return plan

    def _compile(self) -> FlowPlan:
        default_handler = self._error_handler or ErrorHandler()
        routines = {}
        for rid, r in self._routines.items():
            policy = r.activation_policy or ImmediatePolicy()
            routines[rid] = RoutinePlan(
                routine_id=rid,
                routine=r,
                slot_names=tuple(r.slots),
                slots=dict(r.slots),
                logic=r.logic,
                policy=policy,
                uses_clock=getattr(policy, "uses_clock", True),
                error_handler=r.get_error_handler() or default_handler,
            )
        routes: dict[tuple[str, str], list[tuple[str, str, Slot]]] = {}
        for c in self._connections:
            slot = self._routines[c.target_id].get_slot(c.slot)
            routes.setdefault((c.source_id, c.event), []).append((c.target_id, c.slot, slot))
        frozen = {key: tuple(targets) for key, targets in routes.items()}
        try:
            entry: tuple[str, str] | None = self.resolve_entry()
        except InvalidFlowError:
            entry = None
        return FlowPlan(self, routines, frozen, self.fingerprint(), entry)

    def fingerprint(self) -> str:
        """sha256 over routine ids, classes, slots, events and connections.

        Two flows with the same fingerprint accept each other's job snapshots.
        """
        shape = {
            "routines": {
                rid: [_class_name(r), sorted(r.slots), sorted(r.events)]
                for rid, r in sorted(self._routines.items())
            },
            "connections": sorted(
                [c.source_id, c.event, c.target_id, c.slot] for c in self._connections
            ),
        }
        return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()

    # -- pictures ----------------------------------------------------------------------
    def to_mermaid(self) -> str:
        """Mermaid flowchart of the routines and connections (paste into Markdown)."""
        return flow_graph.to_mermaid(self)

    def to_dot(self) -> str:
        """Graphviz DOT of the same picture (``dot -Tpng``)."""
        return flow_graph.to_dot(self)

    # -- serialization -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Describe the flow in plain JSON; raises ``SerializationError`` if it cannot."""
        return {
            "schema": FLOW_SCHEMA_VERSION,
            "flow_id": self.flow_id,
            "entry_routine_id": self.entry_routine_id,
            "error_handler": _handler_dict(self._error_handler),
            "routines": {rid: _routine_dict(rid, r) for rid, r in self._routines.items()},
            "connections": [c.to_dict() for c in self._connections],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Flow:
        """Rebuild a flow from ``to_dict()`` output, importing each routine class."""
        try:
            flow = cls(data["flow_id"])
            for rid, spec in data["routines"].items():
                flow.add_routine(_routine_from_dict(rid, spec), rid)
            for c in data.get("connections", []):
                flow.connect(c["source"], c["event"], c["target"], c["slot"])
        except KeyError as exc:
            raise SerializationError(f"flow description is missing {exc}") from None
        flow.entry_routine_id = data.get("entry_routine_id")
        if data.get("error_handler"):
            flow.set_error_handler(ErrorHandler.from_dict(data["error_handler"]))
        return flow


def _class_name(routine: Routine) -> str:
    cls = type(routine)
    return f"{cls.__module__}:{cls.__qualname__}"


def _handler_dict(handler: ErrorHandler | None) -> dict[str, Any] | None:
    return handler.to_dict() if handler is not None else None


def _routine_dict(routine_id: str, routine: Routine) -> dict[str, Any]:
    try:
        class_path = path_of(type(routine))
        policy = routine.activation_policy
        return {
            "class": class_path,
            "config": json.loads(json.dumps(dict(routine.config))),
            "policy": policy.describe() if policy is not None else None,
            "error_handler": _handler_dict(routine.get_error_handler()),
        }
    except (SerializationError, TypeError, ValueError) as exc:
        raise SerializationError(f"routine {routine_id!r}: {exc}") from exc


def _routine_from_dict(routine_id: str, spec: Mapping[str, Any]) -> Routine:
    cls = import_path(spec["class"])
    try:
        routine = cls()
    except TypeError as exc:
        raise SerializationError(
            f"routine {routine_id!r}: {spec['class']} cannot be built without arguments "
            f"({exc}); routines must take no constructor parameters, use set_config"
        ) from exc
    if not isinstance(routine, Routine):
        raise SerializationError(f"routine {routine_id!r}: {spec['class']} is not a Routine")
    if spec.get("config"):
        routine.set_config(**spec["config"])
    if spec.get("policy"):
        routine.set_activation_policy(policy_from_description(spec["policy"]))
    if spec.get("error_handler"):
        routine.set_error_handler(ErrorHandler.from_dict(spec["error_handler"]))
    return routine
