"""Activation policies as the contract describes them."""

from __future__ import annotations

import itertools
import time
from typing import Any

from sample_routines import BatchSink, Fanout, Recorder

from routilux import Flow, FlowRegistry, Routine, Runtime
from routilux.activation_policies import (
    all_slots_ready_policy,
    custom_policy,
    time_interval_policy,
)


class Pair(Routine):
    """Two inputs; records what each activation got."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("left")
        self.define_slot("right")
        self.set_logic(self.run)

    def run(self, left, right, policy_message, job_state):  # type: ignore[no-untyped-def]
        calls = job_state.shared_data.get("calls", [])
        job_state.shared_data["calls"] = [*calls, ([i["n"] for i in left], [i["n"] for i in right])]


class Emitter(Routine):
    """Emits on left/right per the trigger's lists."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.define_event("left", ["n"])
        self.define_event("right", ["n"])
        self.set_logic(self.run)

    def run(self, trigger, policy_message, job_state):  # type: ignore[no-untyped-def]
        for n in trigger[0].get("left", []):
            self.emit("left", n=n)
        for n in trigger[0].get("right", []):
            self.emit("right", n=n)


def _pair_flow(registry: FlowRegistry, name: str, policy: Any) -> None:
    flow = Flow(name)
    flow.add_routine(Emitter(), "emitter")
    pair = Pair()
    pair.set_activation_policy(policy)
    flow.add_routine(pair, "pair")
    flow.connect("emitter", "left", "pair", "left")
    flow.connect("emitter", "right", "pair", "right")
    registry.register_by_name(name, flow)


def test_all_slots_ready_takes_one_from_each_slot(registry: FlowRegistry, runtime: Runtime) -> None:
    _pair_flow(registry, "ready", all_slots_ready_policy())
    job = runtime.exec("ready", {"left": [1, 2, 3], "right": [10, 20]})
    assert job.wait_for_completion(5)
    assert sorted(job.shared_data["calls"]) == [([1], [10]), ([2], [20])]
    assert job.to_dict()["pending"]["slots"] == {"pair": {"left": [{"n": 3}]}}


def test_batch_size_fires_repeatedly_while_full_batches_exist(
    registry: FlowRegistry, runtime: Runtime
) -> None:
    flow = Flow("batches")
    flow.add_routine(Fanout(), "fan")
    flow.add_routine(BatchSink(), "sink")
    flow.connect("fan", "item", "sink", "input")
    registry.register_by_name("batches", flow)
    job = runtime.exec("batches", {"count": 35})
    assert job.wait_for_completion(5)
    batches = job.shared_data["batches"]
    assert len(batches) == 3 and all(len(b) == 10 for b in batches)
    assert sorted(n for b in batches for n in b) == list(range(30))
    left = job.to_dict()["pending"]["slots"]["sink"]["input"]
    assert [i["n"] for i in left] == [30, 31, 32, 33, 34]


def test_time_interval_rate_limits_without_dropping_data(registry: FlowRegistry) -> None:
    class Ticker(Routine):
        """Emits one item per trigger element; each activation is one trigger."""

        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger")
            self.define_event("out", ["n"])
            self.set_logic(self.run)

        def run(self, trigger, policy_message, job_state):  # type: ignore[no-untyped-def]
            for item in trigger:
                for n in range(item["count"]):
                    self.emit("out", n=n)

    class Stamped(Recorder):
        def run(self, items, policy_message, job_state):  # type: ignore[no-untyped-def]
            calls = job_state.shared_data.get("calls", [])
            job_state.shared_data["calls"] = [*calls, (time.monotonic(), [i["n"] for i in items])]

    flow = Flow("interval")
    flow.add_routine(Ticker(), "ticker")
    sink = Stamped()
    sink.set_activation_policy(time_interval_policy(0.2))
    flow.add_routine(sink, "sink")
    flow.connect("ticker", "out", "sink", "input")
    registry.register_by_name("interval", flow)
    with Runtime(thread_pool_size=2, registry=registry) as rt:
        job = rt.exec("interval", {"count": 5})
        assert job.wait_for_completion(5)
    calls = job.shared_data["calls"]
    assert sorted(n for _, items in calls for n in items) == [0, 1, 2, 3, 4]
    for (t1, _), (t2, _) in itertools.pairwise(calls):
        assert t2 - t1 >= 0.19


def test_time_interval_delivers_late_data_when_the_interval_ends(registry: FlowRegistry) -> None:
    flow = Flow("late")
    flow.add_routine(Emitter(), "emitter")
    pair = Pair()
    pair.set_activation_policy(time_interval_policy(0.3))
    flow.add_routine(pair, "pair")
    flow.connect("emitter", "left", "pair", "left")
    flow.connect("emitter", "right", "pair", "right")
    registry.register_by_name("late", flow)
    with Runtime(thread_pool_size=2, registry=registry) as rt:
        started = time.monotonic()
        first = rt.exec("late", {"left": [1], "right": [2]})
        assert first.wait_for_completion(5)
        assert time.monotonic() - started < 0.3  # first activation is immediate
        assert first.shared_data["calls"] == [([1], [2])]


def odd_total(slots, job_state):  # type: ignore[no-untyped-def]
    return sum(i["n"] for view in slots.values() for i in view.peek()) % 2 == 1


def test_custom_policy_fires_when_check_is_true(registry: FlowRegistry, runtime: Runtime) -> None:
    _pair_flow(registry, "custom", custom_policy(odd_total))
    job = runtime.exec("custom", {"left": [2, 4], "right": [1]})
    assert job.wait_for_completion(5)
    calls = job.shared_data.get("calls", [])
    assert sum(len(left) + len(right) for left, right in calls) == 3
