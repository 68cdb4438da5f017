"""Routine: a unit of work with input slots, output events, logic and policies.

Subclass it, declare ports and logic in ``__init__`` (which takes no parameters, so
flows can be rebuilt from their description), and keep per-run state in the JobState::

    class Greeter(Routine):
        def __init__(self):
            super().__init__()
            self.define_slot("trigger")
            self.define_event("greeting", ["text"])
            self.set_logic(self.greet)

        def greet(self, trigger, policy_message, job_state):
            for item in trigger:
                self.emit("greeting", text=f"hello {item.get('name', 'world')}")

A Routine object holds no per-job state and may serve many jobs at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from routilux.activation_policies import ActivationPolicy, as_policy
from routilux.context import current_activation
from routilux.error_handler import ErrorHandler
from routilux.errors import EmitError, InvalidFlowError, SlotQueueFullError
from routilux.event import Event
from routilux.slot import Slot

Logic = Callable[..., Any]


class Routine:
    """Base class of every routine. See the module docstring for usage."""

    def __init__(self) -> None:
        self._slots: dict[str, Slot] = {}
        self._events: dict[str, Event] = {}
        self._config: dict[str, Any] = {}
        self._logic: Logic | None = None
        self._policy: ActivationPolicy | None = None
        self._error_handler: ErrorHandler | None = None
        self._version = 0

    # -- declaration -------------------------------------------------------------------
    def define_slot(self, name: str, max_queue_length: int = 1000, watermark: float = 0.8) -> Slot:
        """Declare an input slot; logic receives one list per slot, in declaration order."""
        if name in self._slots:
            raise InvalidFlowError(f"{self._name()} already has a slot named {name!r}")
        slot = Slot(name, max_queue_length, watermark)
        self._slots[name] = slot
        self._version += 1
        return slot

    def define_event(self, name: str, output_params: Sequence[str] | None = None) -> Event:
        """Declare an output event; ``output_params`` limits what an emit may carry."""
        if name in self._events:
            raise InvalidFlowError(f"{self._name()} already has an event named {name!r}")
        event = Event(name, tuple(output_params or ()))
        self._events[name] = event
        self._version += 1
        return event

    def set_logic(self, logic: Logic) -> None:
        """Set ``logic(*slot_lists, policy_message, job_state)``; bound methods work."""
        if not callable(logic):
            raise TypeError(f"{self._name()}: logic must be callable, got {logic!r}")
        self._logic = logic
        self._version += 1

    def set_activation_policy(self, policy: Any) -> None:
        """Set when this routine runs (see ``routilux.activation_policies``)."""
        self._policy = as_policy(policy)
        self._version += 1

    def set_error_handler(self, handler: ErrorHandler | None) -> None:
        """Error policy for this routine; it wins over the flow's."""
        self._error_handler = handler
        self._version += 1

    def get_error_handler(self) -> ErrorHandler | None:
        return self._error_handler

    def set_config(self, **values: Any) -> None:
        """Store read-only configuration (kept in ``Flow.to_dict()``)."""
        self._config.update(values)
        self._version += 1

    def get_config(self, key: str, default: Any = None) -> Any:
        return self._config.get(key, default)

    # -- introspection -----------------------------------------------------------------
    @property
    def config(self) -> Mapping[str, Any]:
        return MappingProxyType(self._config)

    @property
    def slots(self) -> Mapping[str, Slot]:
        return MappingProxyType(self._slots)

    @property
    def events(self) -> Mapping[str, Event]:
        return MappingProxyType(self._events)

    @property
    def logic(self) -> Logic | None:
        return self._logic

    @property
    def activation_policy(self) -> ActivationPolicy | None:
        return self._policy

    def get_slot(self, name: str) -> Slot:
        try:
            return self._slots[name]
        except KeyError:
            raise InvalidFlowError(
                f"{self._name()} has no slot {name!r}; slots: {_choices(self._slots)}"
            ) from None

    def get_event(self, name: str) -> Event:
        try:
            return self._events[name]
        except KeyError:
            raise InvalidFlowError(
                f"{self._name()} has no event {name!r}; events: {_choices(self._events)}"
            ) from None

    def _name(self) -> str:
        return type(self).__name__

    # -- running -----------------------------------------------------------------------
    def emit(self, event: str | Event, **params: Any) -> None:
        """Send one data point (``params``) to every slot connected to ``event``.

        Only valid inside this routine's logic while it runs. Returns at once; the data
        is delivered when the activation finishes, together with its state changes.

        Raises:
            EmitError: outside an activation, unknown event, or undeclared parameter.
            SlotQueueFullError: a connected slot of this job has no room left.
        """
        ctx = current_activation.get()
        if ctx is None:
            raise EmitError(
                f"{self._name()}.emit({_event_name(event)!r}) called outside a running "
                "activation; emit only from the routine's logic"
            )
        if ctx.routine is not self:
            raise EmitError(
                f"{self._name()}.emit() called while routine {ctx.routine_id!r} is running; "
                "a routine may only emit its own events"
            )
        name = _event_name(event)
        declared = self._events.get(name)
        if declared is None:
            raise EmitError(
                f"routine {ctx.routine_id!r} has no event {name!r}; events: "
                f"{_choices(self._events)}"
            )
        declared.check_params(ctx.routine_id, params)
        ctx.run.check_room(ctx, name)
        ctx.emits.append((name, params))


def _event_name(event: str | Event) -> str:
    return event.name if isinstance(event, Event) else event


def _choices(names: Mapping[str, Any]) -> str:
    return ", ".join(sorted(names)) or "(none)"


__all__ = ["Routine", "SlotQueueFullError"]
