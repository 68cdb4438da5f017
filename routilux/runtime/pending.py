"""The pieces of a job's pending work and their snapshot form.

``restore_pending`` validates a snapshot's ``pending`` section against the flow before
anything runs, so a snapshot from an older version of a flow fails with a clear
``ResumeError`` instead of half-resuming.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from routilux.errors import ResumeError
from routilux.flow import FlowPlan
from routilux.runtime.timer_queue import TimerHandle


class Activation:
    """One unit of progress: a routine, the data slice it runs on, and the attempt number."""

    __slots__ = ("attempt", "data", "id", "policy_message", "routine_id")

    def __init__(
        self,
        id: int,
        routine_id: str,
        data: dict[str, list[dict[str, Any]]],
        policy_message: Any,
        attempt: int,
    ) -> None:
        self.id = id
        self.routine_id = routine_id
        self.data = data
        self.policy_message = policy_message
        self.attempt = attempt

    def renumbered(self, new_id: int) -> Activation:
        return Activation(new_id, self.routine_id, self.data, self.policy_message, self.attempt)

    def to_dict(self) -> dict[str, Any]:
        return {
            "routine_id": self.routine_id,
            "data": {name: list(items) for name, items in self.data.items()},
            "policy_message": self.policy_message,
            "attempt": self.attempt,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Activation:
        return cls(
            0,
            data["routine_id"],
            dict(data.get("data", {})),
            data.get("policy_message"),
            int(data.get("attempt", 0)),
        )


class TimerEntry:
    """A pending timer of a job: a delayed retry, or a policy recheck of a routine."""

    __slots__ = ("activation", "due", "handle", "id", "kind", "routine_id")

    def __init__(
        self, id: int, kind: str, due: float, routine_id: str, activation: Activation | None
    ) -> None:
        self.id = id
        self.kind = kind
        self.due = due  # wall clock, so it survives a restart
        self.routine_id = routine_id
        self.activation = activation
        self.handle: TimerHandle | None = None

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()

    def renumbered(self, new_id: int) -> TimerEntry:
        activation = self.activation.renumbered(new_id) if self.activation else None
        return TimerEntry(new_id, self.kind, self.due, self.routine_id, activation)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "due": self.due, "routine_id": self.routine_id}
        if self.activation is not None:
            data["activation"] = self.activation.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimerEntry:
        activation = Activation.from_dict(data["activation"]) if data.get("activation") else None
        routine_id = data.get("routine_id") or (activation.routine_id if activation else "")
        return cls(0, data["kind"], float(data["due"]), routine_id, activation)


@dataclass
class RestoredWork:
    """A validated ``pending`` section."""

    slots: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    activations: list[Activation] = field(default_factory=list)
    timers: list[TimerEntry] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)
    policy_state: dict[str, dict[str, Any]] = field(default_factory=dict)


def restore_pending(plan: FlowPlan, pending: dict[str, Any]) -> RestoredWork:
    """Parse and check a snapshot's ``pending`` section against ``plan``."""
    work = RestoredWork()
    flow_id = plan.flow.flow_id
    for rid, slots in pending.get("slots", {}).items():
        for slot, items in slots.items():
            _check_slot(plan, flow_id, rid, slot)
            work.slots[(rid, slot)] = list(items)
    for data in pending.get("activations", []):
        act = Activation.from_dict(data)
        _check_activation(plan, flow_id, act)
        work.activations.append(act)
    for data in pending.get("timers", []):
        entry = TimerEntry.from_dict(data)
        _check_routine(plan, flow_id, entry.routine_id)
        if entry.activation is not None:
            _check_activation(plan, flow_id, entry.activation)
        work.timers.append(entry)
    for rid in pending.get("skipped_routines", []):
        _check_routine(plan, flow_id, rid)
        work.skipped.add(rid)
    for rid, state in pending.get("policy_state", {}).items():
        _check_routine(plan, flow_id, rid)
        work.policy_state[rid] = dict(state)
    return work


def _check_routine(plan: FlowPlan, flow_id: str, routine_id: str) -> None:
    if routine_id not in plan.routines:
        raise ResumeError(
            f"saved job needs routine {routine_id!r}, which flow {flow_id!r} no longer has"
        )


def _check_slot(plan: FlowPlan, flow_id: str, routine_id: str, slot: str) -> None:
    _check_routine(plan, flow_id, routine_id)
    if slot not in plan.routines[routine_id].slots:
        raise ResumeError(
            f"saved job has data for slot {routine_id}.{slot}, which flow {flow_id!r} no longer has"
        )


def _check_activation(plan: FlowPlan, flow_id: str, act: Activation) -> None:
    _check_routine(plan, flow_id, act.routine_id)
    for slot in act.data:
        _check_slot(plan, flow_id, act.routine_id, slot)
