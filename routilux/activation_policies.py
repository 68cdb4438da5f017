"""Activation policies: when a routine runs, and on which slice of its waiting data.

A policy looks at one job's slots for one routine and answers
``(should_activate, data_slice, policy_message)``; ``data_slice`` maps slot name to the
data points taken for this activation (taking removes them from the slot). The runtime
asks again after every activation it starts, so a policy that can fire several times
(``batch_size_policy``) does.

Example::

    >>> from routilux.activation_policies import batch_size_policy
    >>> batch_size_policy(10).describe()
    {'name': 'batch_size', 'args': {'batch_size': 10}}
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from routilux.errors import SerializationError
from routilux.imports import import_path, path_of

if TYPE_CHECKING:
    from routilux.job_state import JobState

DataSlice = dict[str, list[dict[str, Any]]]
PolicyResult = tuple[bool, DataSlice, Any]


class SlotView:
    """What a policy sees of one slot in one job: its waiting data, oldest first."""

    __slots__ = ("_queue", "name")

    def __init__(self, name: str, queue: deque[dict[str, Any]]) -> None:
        self.name = name
        self._queue = queue

    def __len__(self) -> int:
        return len(self._queue)

    def __bool__(self) -> bool:
        return bool(self._queue)

    def peek(self, n: int | None = None) -> list[dict[str, Any]]:
        """Copy of the first ``n`` waiting data points (all when ``n`` is None); takes nothing."""
        if n is None:
            return list(self._queue)
        return [self._queue[i] for i in range(min(n, len(self._queue)))]

    def take(self, n: int) -> list[dict[str, Any]]:
        """Remove and return up to ``n`` data points, oldest first."""
        queue = self._queue
        return [queue.popleft() for _ in range(min(n, len(queue)))]

    def take_all(self) -> list[dict[str, Any]]:
        """Remove and return every waiting data point."""
        items = list(self._queue)
        self._queue.clear()
        return items

    def get_unconsumed_count(self) -> int:
        """Number of waiting data points (the name routilux 1.x used)."""
        return len(self._queue)


class PolicyTiming:
    """Clock and per-(job, routine) memory handed to time-aware policies."""

    __slots__ = ("now", "recheck_at", "state")

    def __init__(self, now: float, state: dict[str, Any], recheck_at: Callable[[float], None]):
        self.now = now  #: wall-clock seconds (time.time()), survives a restart
        self.state = state  #: plain-JSON dict kept in the job's snapshot
        self.recheck_at = recheck_at  #: ask to be checked again at this wall-clock time


class ActivationPolicy(Protocol):
    """What the runtime needs of a policy object.

    A policy whose ``uses_clock`` is False (the built-ins other than time_interval) is
    passed ``timing=None``; policies without the attribute always get a PolicyTiming.
    """

    def check(
        self, slots: Mapping[str, SlotView], job_state: JobState, timing: PolicyTiming | None
    ) -> PolicyResult: ...

    def describe(self) -> dict[str, Any]: ...


def _take_all(slots: Mapping[str, SlotView]) -> DataSlice:
    return {name: view.take_all() for name, view in slots.items()}


class ImmediatePolicy:
    """Any waiting data activates the routine with everything waiting."""

    uses_clock = False

    def check(
        self, slots: Mapping[str, SlotView], job_state: JobState, timing: PolicyTiming | None
    ) -> PolicyResult:
        for view in slots.values():
            if view:
                return True, _take_all(slots), None
        return False, {}, None

    def describe(self) -> dict[str, Any]:
        return {"name": "immediate", "args": {}}


class AllSlotsReadyPolicy:
    """Activates once every slot holds data, taking one data point from each."""

    uses_clock = False

    def check(
        self, slots: Mapping[str, SlotView], job_state: JobState, timing: PolicyTiming | None
    ) -> PolicyResult:
        if slots and all(slots.values()):
            return True, {name: view.take(1) for name, view in slots.items()}, None
        return False, {}, None

    def describe(self) -> dict[str, Any]:
        return {"name": "all_slots_ready", "args": {}}


class BatchSizePolicy:
    """Activates whenever every slot holds at least ``batch_size``, taking that many from each.

    Items short of a full batch when the job runs out of work stay in the slot and are
    kept in the job state (logged at completion), never dropped.
    """

    uses_clock = False

    def __init__(self, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size = batch_size

    def check(
        self, slots: Mapping[str, SlotView], job_state: JobState, timing: PolicyTiming | None
    ) -> PolicyResult:
        size = self.batch_size
        if slots and all(len(view) >= size for view in slots.values()):
            return (
                True,
                {name: view.take(size) for name, view in slots.items()},
                {"batch_size": size},
            )
        return False, {}, None

    def describe(self) -> dict[str, Any]:
        return {"name": "batch_size", "args": {"batch_size": self.batch_size}}


class TimeIntervalPolicy:
    """At most one activation per ``min_interval`` seconds per routine and job.

    Data arriving sooner waits in the slot; the job keeps a timer and activates the
    routine with everything waiting when the interval ends, so nothing is dropped.
    """

    uses_clock = True  #: needs ``timing``; others get None

    def __init__(self, min_interval: float) -> None:
        if min_interval < 0:
            raise ValueError("min_interval must be >= 0")
        self.min_interval = min_interval

    def check(
        self, slots: Mapping[str, SlotView], job_state: JobState, timing: PolicyTiming | None
    ) -> PolicyResult:
        if timing is None:
            raise TypeError("time_interval_policy needs the runtime's PolicyTiming")
        if not any(slots.values()):
            return False, {}, None
        last = timing.state.get("last_fire")
        if last is not None and timing.now - last < self.min_interval:
            timing.recheck_at(last + self.min_interval)
            return False, {}, None
        timing.state["last_fire"] = timing.now
        return True, _take_all(slots), {"min_interval": self.min_interval}

    def describe(self) -> dict[str, Any]:
        return {"name": "time_interval", "args": {"min_interval": self.min_interval}}


class CustomPolicy:
    """Activates when ``check(slots, job_state)`` is true, taking everything waiting.

    ``check`` must be quick and must not block: it runs while the job's work is being
    routed. To serialize the flow, define ``check`` at module level.
    """

    uses_clock = False

    def __init__(self, check: Callable[[Mapping[str, SlotView], JobState], bool]) -> None:
        self.check_function = check

    def check(
        self, slots: Mapping[str, SlotView], job_state: JobState, timing: PolicyTiming | None
    ) -> PolicyResult:
        if any(slots.values()) and self.check_function(slots, job_state):
            return True, _take_all(slots), None
        return False, {}, None

    def describe(self) -> dict[str, Any]:
        return {"name": "custom", "args": {"check": path_of(self.check_function)}}


class FunctionPolicy:
    """Adapts a bare 1.x-style ``fn(slots, job_state) -> (bool, data_slice, message)``."""

    uses_clock = False

    def __init__(self, function: Callable[[Mapping[str, SlotView], JobState], PolicyResult]):
        self.function = function

    def check(
        self, slots: Mapping[str, SlotView], job_state: JobState, timing: PolicyTiming | None
    ) -> PolicyResult:
        return self.function(slots, job_state)

    def describe(self) -> dict[str, Any]:
        return {"name": "function", "args": {"function": path_of(self.function)}}


def immediate_policy() -> ImmediatePolicy:
    """Run as soon as any slot receives data, on everything waiting."""
    return ImmediatePolicy()


def all_slots_ready_policy() -> AllSlotsReadyPolicy:
    """Run once every slot has data, on one data point from each."""
    return AllSlotsReadyPolicy()


def batch_size_policy(batch_size: int) -> BatchSizePolicy:
    """Run on ``batch_size`` data points from each slot, as often as full batches exist."""
    return BatchSizePolicy(batch_size)


def time_interval_policy(min_interval: float) -> TimeIntervalPolicy:
    """Run at most once per ``min_interval`` seconds; later data waits, never dropped."""
    return TimeIntervalPolicy(min_interval)


def custom_policy(check: Callable[[Mapping[str, SlotView], JobState], bool]) -> CustomPolicy:
    """Run on everything waiting whenever ``check(slots, job_state)`` returns True."""
    return CustomPolicy(check)


def as_policy(policy: Any) -> ActivationPolicy:
    """Accept a policy object or a bare 1.x-style function; reject anything else clearly."""
    if hasattr(policy, "check") and hasattr(policy, "describe"):
        return policy  # type: ignore[no-any-return]
    if callable(policy):
        return FunctionPolicy(policy)
    raise TypeError(f"{policy!r} is not an activation policy (see routilux.activation_policies)")


def policy_from_description(description: Mapping[str, Any]) -> ActivationPolicy:
    """Rebuild a policy from ``policy.describe()``."""
    name = description.get("name")
    args = dict(description.get("args", {}))
    if name == "immediate":
        return ImmediatePolicy()
    if name == "all_slots_ready":
        return AllSlotsReadyPolicy()
    if name == "batch_size":
        return BatchSizePolicy(int(args["batch_size"]))
    if name == "time_interval":
        return TimeIntervalPolicy(float(args["min_interval"]))
    if name == "custom":
        return CustomPolicy(import_path(args["check"]))
    if name == "function":
        return FunctionPolicy(import_path(args["function"]))
    raise SerializationError(
        f"unknown activation policy {name!r}; known: immediate, all_slots_ready, "
        "batch_size, time_interval, custom, function"
    )


__all__ = [
    "ActivationPolicy",
    "AllSlotsReadyPolicy",
    "BatchSizePolicy",
    "CustomPolicy",
    "FunctionPolicy",
    "ImmediatePolicy",
    "PolicyTiming",
    "SlotView",
    "TimeIntervalPolicy",
    "all_slots_ready_policy",
    "batch_size_policy",
    "custom_policy",
    "immediate_policy",
    "policy_from_description",
    "time_interval_policy",
]
