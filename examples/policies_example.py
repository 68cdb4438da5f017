"""Activation policies: when a routine runs, and on which slice of its waiting data.

One small flow per policy, each feeding a recording routine:

* ``batch_size_policy(3)`` on 7 items: two batches of 3; the 7th item stays in the
  job's pending slots (kept in the JobState, never dropped).
* ``all_slots_ready_policy()`` on 3 ``left`` and 2 ``right`` items: two activations of
  one ``left`` + one ``right``; the third ``left`` waits.
* ``time_interval_policy(0.2)`` on 8 ticks 0.05 s apart: fewer activations than items,
  at least 0.2 s apart, and every item delivered.
* ``custom_policy(check)``: runs once the waiting values add up to 10 or more.

Run: ``python examples/policies_example.py`` (exits 0, prints ``policies example OK``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from typing import Any

from routilux import Flow, FlowRegistry, Routine, Runtime
from routilux.activation_policies import (
    SlotView,
    all_slots_ready_policy,
    batch_size_policy,
    custom_policy,
    time_interval_policy,
)
from routilux.job_state import JobState
from routilux.status import ExecutionStatus

#: Seconds between two ticks of the Ticker.
TICK_SECONDS = 0.05


class Emitter(Routine):
    """Entry: emits each of ``entry_params['values']`` on ``item`` (and ``other``)."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.define_event("item", ["value"])
        self.define_event("other", ["value"])
        self.set_logic(self.emit_all)

    def emit_all(
        self, trigger: list[dict[str, Any]], policy_message: Any, job_state: JobState
    ) -> None:
        for point in trigger:
            for value in point.get("values", []):
                self.emit("item", value=value)
            for value in point.get("others", []):
                self.emit("other", value=value)


class Ticker(Routine):
    """Entry: emits ``item`` i = 0..count-1, one every TICK_SECONDS, via a self-loop."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.define_event("item", ["value"])
        self.define_event("tick", ["i", "count"])
        self.set_logic(self.tick)

    def tick(self, trigger: list[dict[str, Any]], policy_message: Any, job_state: JobState) -> None:
        for point in trigger:
            i, count = point.get("i", 0), point["count"]
            self.emit("item", value=i)
            if i + 1 < count:
                time.sleep(TICK_SECONDS)  # paces the ticks; stands in for real arrivals
                self.emit("tick", i=i + 1, count=count)


class Recorder(Routine):
    """Logs each activation: the values it got, the policy message and the time."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.set_logic(self.record)

    def record(self, items: list[dict[str, Any]], policy_message: Any, job_state: JobState) -> None:
        job_state.shared_log.append(
            {"values": [p["value"] for p in items], "message": policy_message, "at": time.time()}
        )


class PairRecorder(Routine):
    """Logs each activation of a two-slot join: the values per slot."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("left")
        self.define_slot("right")
        self.set_logic(self.record)

    def record(
        self,
        left: list[dict[str, Any]],
        right: list[dict[str, Any]],
        policy_message: Any,
        job_state: JobState,
    ) -> None:
        job_state.shared_log.append(
            {"left": [p["value"] for p in left], "right": [p["value"] for p in right]}
        )


def sum_reaches_ten(slots: Mapping[str, SlotView], job_state: JobState) -> bool:
    """Custom policy check: the waiting values add up to at least 10."""
    return sum(p["value"] for view in slots.values() for p in view.peek()) >= 10


def build_flow(name: str, policy: Any, source: Routine) -> Flow:
    """``source.item`` -> ``sink.input``, where ``sink`` is a Recorder with ``policy``."""
    flow = Flow(flow_id=name)
    flow.add_routine(source, "source")
    sink = Recorder()
    sink.set_activation_policy(policy)
    flow.add_routine(sink, "sink")
    flow.connect("source", "item", "sink", "input")
    if "tick" in source.events:
        flow.connect("source", "tick", "source", "trigger")  # the Ticker's self-loop
    return flow


def build_join_flow() -> Flow:
    """``source.item`` -> ``sink.left`` and ``source.other`` -> ``sink.right``."""
    flow = Flow(flow_id="join")
    flow.add_routine(Emitter(), "source")
    sink = PairRecorder()
    sink.set_activation_policy(all_slots_ready_policy())
    flow.add_routine(sink, "sink")
    flow.connect("source", "item", "sink", "left")
    flow.connect("source", "other", "sink", "right")
    return flow


def run(runtime: Runtime, name: str, params: dict[str, Any]) -> tuple[list[Any], JobState]:
    job = runtime.exec(name, entry_params=params)
    assert job.wait_for_completion(timeout=10.0), f"{name} did not finish"
    assert job.status is ExecutionStatus.COMPLETED, job.error
    return list(job.shared_log), job


def show_batch(runtime: Runtime) -> None:
    log, job = run(runtime, "batch", {"values": list(range(7))})
    print("batch_size(3), 7 items:", [a["values"] for a in log])
    assert [a["values"] for a in log] == [[0, 1, 2], [3, 4, 5]]
    assert [a["message"] for a in log] == [{"batch_size": 3}] * 2
    leftover = job.to_dict()["pending"]["slots"]["sink"]["input"]
    print("  left in the job's pending slots:", leftover)
    assert leftover == [{"value": 6}]


def show_all_slots_ready(runtime: Runtime) -> None:
    log, job = run(runtime, "join", {"values": [1, 2, 3], "others": ["x", "y"]})
    pairs = [(a["left"], a["right"]) for a in log]
    print("all_slots_ready, 3 left + 2 right:", pairs)
    assert pairs == [([1], ["x"]), ([2], ["y"])]
    assert job.to_dict()["pending"]["slots"]["sink"] == {"left": [{"value": 3}]}


def show_time_interval(runtime: Runtime) -> None:
    log, _ = run(runtime, "interval", {"count": 8})
    batches = [a["values"] for a in log]
    gaps = [round(b["at"] - a["at"], 3) for a, b in itertools.pairwise(log)]
    print(f"time_interval(0.2), 8 ticks {TICK_SECONDS}s apart: {batches}, gaps {gaps}")
    assert sorted(v for batch in batches for v in batch) == list(range(8)), "an item was lost"
    assert len(batches) < 8, "interval did not group items"
    # Allow for thread scheduling between the policy firing and the logic running.
    assert all(gap >= 0.2 - 0.05 for gap in gaps), "activations closer than the interval"


def show_custom(runtime: Runtime) -> None:
    log, job = run(runtime, "custom", {"values": [4, 3, 5, 1, 9, 2]})
    print("custom (sum >= 10) on 4,3,5,1,9,2:", [a["values"] for a in log])
    # All six arrive in one commit, so the first check already sees sum 24.
    assert [a["values"] for a in log] == [[4, 3, 5, 1, 9, 2]]
    log, job = run(runtime, "custom", {"values": [4, 3]})
    print("custom (sum >= 10) on 4,3:", log, "-> still waiting, kept in the job state")
    assert log == [] and len(job.to_dict()["pending"]["slots"]["sink"]["input"]) == 2


def main() -> None:
    registry = FlowRegistry()
    registry.register_by_name("batch", build_flow("batch", batch_size_policy(3), Emitter()))
    registry.register_by_name("join", build_join_flow())
    registry.register_by_name(
        "interval", build_flow("interval", time_interval_policy(0.2), Ticker())
    )
    registry.register_by_name(
        "custom", build_flow("custom", custom_policy(sum_reaches_ten), Emitter())
    )
    with Runtime(thread_pool_size=4, registry=registry) as runtime:
        show_batch(runtime)
        show_all_slots_ready(runtime)
        show_time_interval(runtime)
        show_custom(runtime)
    print("policies example OK")


if __name__ == "__main__":
    main()
