"""WorkerPool: a task can name what its thread runs next (submit_next)."""

from __future__ import annotations

import threading
import time
from typing import Any

from routilux import Flow, FlowRegistry, Routine, Runtime
from routilux.runtime.worker_pool import WorkerPool


def test_the_first_task_submitted_next_runs_on_the_same_thread_right_after() -> None:
    pool = WorkerPool(4)
    ran: list[tuple[str, str]] = []
    done = threading.Event()

    def record(name: str) -> None:
        ran.append((name, threading.current_thread().name))
        if len(ran) == 3:
            done.set()

    def first(_: Any) -> None:
        pool.submit_next(record, "next")  # runs here, after this task
        pool.submit_next(record, "queued")  # only one runs here: the rest is queued
        record("first")

    try:
        pool.submit(first, None)
        assert done.wait(10)
        names = dict(ran)
        assert [name for name, _ in ran[:2]] in (
            ["first", "next"],
            ["first", "queued"],
            ["queued", "first"],
        )
        assert names["next"] == names["first"]
        assert ran.index(("next", names["next"])) > ran.index(("first", names["first"]))
    finally:
        pool.stop(5)


def test_submit_next_from_outside_the_pool_just_queues() -> None:
    pool = WorkerPool(2)
    done = threading.Event()
    try:
        pool.submit_next(lambda _: done.set(), None)
        assert done.wait(10)
    finally:
        pool.stop(5)


def registry_of(*flows: Flow) -> FlowRegistry:
    """A registry holding ``flows`` under their flow ids."""
    registry = FlowRegistry()
    for flow in flows:
        registry.register_by_name(flow.flow_id, flow)
    return registry


class Step(Routine):
    """Records the thread it ran on and passes the data point on."""

    def __init__(self, threads: list[str], last: bool = False) -> None:
        super().__init__()
        self.threads = threads
        self.define_slot("trigger")
        if not last:
            self.define_event("out", ["n"])
        self.last = last
        self.set_logic(self.run)

    def run(self, trigger: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        self.threads.append(threading.current_thread().name)
        if not self.last:
            self.emit("out", n=trigger[0]["n"])


def test_a_chain_of_activations_stays_on_one_thread() -> None:
    threads: list[str] = []
    flow = Flow("chain3")
    flow.add_routine(Step(threads), "a")
    flow.add_routine(Step(threads), "b")
    flow.add_routine(Step(threads, last=True), "c")
    flow.connect("a", "out", "b", "trigger")
    flow.connect("b", "out", "c", "trigger")
    flow.entry_routine_id = "a"
    registry = registry_of(flow)
    with Runtime(thread_pool_size=4, registry=registry) as runtime:
        job = runtime.exec("chain3", {"n": 1})
        assert job.wait(10)
    assert len(threads) == 3 and len(set(threads)) == 1


class Block(Routine):
    """Starts another job from inside its logic and waits for it: must not deadlock."""

    def __init__(self, runtime_box: list[Runtime]) -> None:
        super().__init__()
        self.runtime_box = runtime_box
        self.define_slot("trigger")
        self.set_logic(self.run)

    def run(self, trigger: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        inner = self.runtime_box[0].exec("chain3", {"n": 2})
        assert inner.wait(10)
        job_state.shared_data["inner"] = inner.status.value


def test_logic_that_waits_for_a_job_it_started_does_not_wait_for_itself() -> None:
    threads: list[str] = []
    chain = Flow("chain3")
    chain.add_routine(Step(threads), "a")
    chain.add_routine(Step(threads, last=True), "b")
    chain.connect("a", "out", "b", "trigger")
    chain.entry_routine_id = "a"
    box: list[Runtime] = []
    outer = Flow("outer")
    outer.add_routine(Block(box), "block")
    registry = registry_of(chain, outer)
    with Runtime(thread_pool_size=2, registry=registry) as runtime:
        box.append(runtime)
        job = runtime.exec("outer", {})
        assert job.wait(15)
        assert job.shared_data["inner"] == "completed"


class Poll(Routine):
    """Loops on itself until ``stop`` is set (or ``give_up`` seconds pass)."""

    def __init__(self, stop: threading.Event, give_up: float) -> None:
        super().__init__()
        self.stop, self.give_up = stop, give_up
        self.define_slot("trigger")
        self.define_event("again", ["n", "since"])
        self.set_logic(self.run)

    def run(self, trigger: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        point = trigger[0]
        since = point.get("since") or time.monotonic()
        if not self.stop.is_set() and time.monotonic() - since < self.give_up:
            self.emit("again", n=point["n"] + 1, since=since)


class SetFlag(Routine):
    def __init__(self, flag: threading.Event) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.set_logic(lambda trigger, message, job_state: flag.set())


def test_a_looping_chain_lets_queued_work_run_between_its_steps() -> None:
    stop = threading.Event()
    loop = Flow("loop")
    loop.add_routine(Poll(stop, give_up=60.0), "poll")
    loop.connect("poll", "again", "poll", "trigger")
    loop.entry_routine_id = "poll"
    setter = Flow("setter")
    setter.add_routine(SetFlag(stop), "set")
    registry = registry_of(loop, setter)
    with Runtime(thread_pool_size=1, registry=registry) as runtime:
        looping = runtime.exec("loop", {"n": 0})
        assert runtime.exec("setter", {}).wait(10)  # not after the loop gives up (60 s)
        assert looping.wait(10)


class Produce(Routine):
    """Emits item i+1 to itself and to a consumer until ``last``."""

    def __init__(self, last: int) -> None:
        super().__init__()
        self.last = last
        self.define_slot("trigger")
        self.define_event("item", ["i"])
        self.set_logic(self.run)

    def run(self, trigger: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        if trigger[0]["i"] < self.last:
            self.emit("item", i=trigger[0]["i"] + 1)


class Consume(Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.set_logic(lambda items, message, job_state: None)


class InFlight:
    """Checkpointer that keeps the largest number of activations in flight it saw."""

    def __init__(self) -> None:
        self.most = 0

    def save(self, snapshot: dict[str, Any]) -> None:
        self.most = max(self.most, len(snapshot["pending"]["activations"]))


def test_one_branch_of_a_fan_out_never_runs_ahead_of_the_other() -> None:
    # Had the looping branch kept its thread, the consumer's activations would pile up
    # in flight (and into every checkpoint).
    flow = Flow("fan")
    flow.add_routine(Produce(last=2000), "produce")
    flow.add_routine(Consume(), "consume")
    flow.connect("produce", "item", "produce", "trigger")
    flow.connect("produce", "item", "consume", "input")
    flow.entry_routine_id = "produce"
    registry = registry_of(flow)
    seen = InFlight()
    with Runtime(thread_pool_size=1, registry=registry, checkpointer=seen) as runtime:
        assert runtime.exec("fan", {"i": 0}).wait(60)
    assert seen.most <= 5
