"""Deterministic flows for the resume, policy, slot-full and live-view properties."""

from __future__ import annotations

import time
from typing import Any

from prop_flows import INTERVAL

from routilux import ErrorHandler, ErrorStrategy, Flow, Routine
from routilux.activation_policies import batch_size_policy, time_interval_policy
from routilux.job_state import JobState


# -- the deterministic pipeline used by the resume property ----------------------------
class NumberSource(Routine):
    """Entry: emits 0..n-1 from ``{"n": n}``."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.define_event("out", ["value"])
        self.set_logic(self.produce)

    def produce(self, trigger: list[dict[str, Any]], message: Any, job_state: JobState) -> None:
        for point in trigger:
            for value in range(point["n"]):
                self.emit("out", value=value)


class Square(Routine):
    """Squares each value; records it in its routine state and the shared log."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.define_event("out", ["value"])
        self.set_logic(self.square)

    def square(self, items: list[dict[str, Any]], message: Any, job_state: JobState) -> None:
        for item in items:
            value = item["value"]
            job_state.update_routine_state("square", {str(value): value * value})
            job_state.shared_log.append(["square", value])
            self.emit("out", value=value * value)


class Batcher(Routine):
    """Groups values (the flow sets a batch_size policy) and emits each group."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.define_event("out", ["values"])
        self.set_logic(self.group)

    def group(self, items: list[dict[str, Any]], message: Any, job_state: JobState) -> None:
        values = [item["value"] for item in items]
        job_state.shared_data[f"batch:{values[0]}"] = values
        self.emit("out", values=values)


class FlakySum(Routine):
    """Sums each batch; every batch fails once first (RETRY makes it succeed)."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.define_event("out", ["total"])
        self.set_logic(self.total)

    def total(self, items: list[dict[str, Any]], message: Any, job_state: JobState) -> None:
        keys = sorted(str(item["values"][0]) for item in items)
        failed = {
            key for e in job_state.errors if e.routine_id == "flaky" for key in e.message.split()
        }
        fresh = [key for key in keys if key not in failed]
        if fresh:
            raise TimeoutError(" ".join(fresh))
        for item in items:
            total = sum(item["values"])
            job_state.shared_data[f"sum:{item['values'][0]}"] = total
            self.emit("out", total=total)


class TotalSink(Routine):
    """Logs every total and marks it in its routine state."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.set_logic(self.store)

    def store(self, items: list[dict[str, Any]], message: Any, job_state: JobState) -> None:
        for item in items:
            job_state.shared_log.append(["sink", item["total"]])
            job_state.update_routine_state("sink", {str(item["total"]): True})


def build_pipeline_flow(batch: int) -> Flow:
    """source -> square -> batcher(batch_size) -> flaky(RETRY) -> sink(time_interval)."""
    flow = Flow(flow_id="pipeline")
    batcher = Batcher()
    batcher.set_activation_policy(batch_size_policy(batch))
    flaky = FlakySum()
    flaky.set_error_handler(ErrorHandler(ErrorStrategy.RETRY, max_retries=3, retry_delay=0.005))
    sink = TotalSink()
    sink.set_activation_policy(time_interval_policy(INTERVAL))
    for routine_id, routine in (
        ("source", NumberSource()),
        ("square", Square()),
        ("batcher", batcher),
        ("flaky", flaky),
        ("sink", sink),
    ):
        flow.add_routine(routine, routine_id)
    for source, target in (
        ("source", "square"),
        ("square", "batcher"),
        ("batcher", "flaky"),
        ("flaky", "sink"),
    ):
        flow.connect(source, "out", target, "input")
    return flow


# -- policies --------------------------------------------------------------------------
class Starter(Routine):
    """Entry of the policy flows: one ``go`` to every feeder."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.define_event("go")
        self.set_logic(self.start)

    def start(self, trigger: list[dict[str, Any]], message: Any, job_state: JobState) -> None:
        self.emit("go", i=0)


class Feeder(Routine):
    """Emits ``item`` [slot, i] for i < config ``count``, one per activation (self-loop)."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.define_event("item", ["value"])
        self.define_event("next", ["i"])
        self.set_logic(self.feed)

    def feed(self, trigger: list[dict[str, Any]], message: Any, job_state: JobState) -> None:
        count, slot = self.get_config("count"), self.get_config("slot")
        for point in trigger:
            i = point["i"]
            if i < count:
                self.emit("item", value=[slot, i])
            if i + 1 < count:
                self.emit("next", i=i + 1)


class RecordingSink(Routine):
    """Logs each activation as ``{slot: [indices]}`` plus the policy message."""

    SLOT_NAMES: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        for name in self.SLOT_NAMES:
            self.define_slot(name)
        self.set_logic(self.record)

    def record(self, *args: Any) -> None:
        *slot_lists, message, job_state = args
        got = {
            name: [item["value"][1] for item in items]
            for name, items in zip(self.SLOT_NAMES, slot_lists, strict=True)
        }
        job_state.shared_log.append({"got": got, "message": message})


class OneSlotSink(RecordingSink):
    SLOT_NAMES = ("s0",)


class TwoSlotSink(RecordingSink):
    SLOT_NAMES = ("s0", "s1")


class ThreeSlotSink(RecordingSink):
    SLOT_NAMES = ("s0", "s1", "s2")


class SmallSlotSink(RecordingSink):
    """One slot ``s0`` that holds at most SMALL_QUEUE items."""

    SLOT_NAMES = ("s0",)

    def __init__(self) -> None:
        Routine.__init__(self)
        self.define_slot("s0", max_queue_length=SMALL_QUEUE)
        self.set_logic(self.record)


#: max_queue_length of SmallSlotSink's slot.
SMALL_QUEUE = 5

SINKS: dict[int, type[RecordingSink]] = {1: OneSlotSink, 2: TwoSlotSink, 3: ThreeSlotSink}


def build_policy_flow(counts: list[int], policy: Any, sink: RecordingSink | None = None) -> Flow:
    """starter -> feeder k (count k items) -> sink slot s<k>, sink using ``policy``."""
    flow = Flow(flow_id="policy")
    flow.add_routine(Starter(), "starter")
    sink = sink or SINKS[len(counts)]()
    sink.set_activation_policy(policy)
    flow.add_routine(sink, "sink")
    for k, count in enumerate(counts):
        feeder = Feeder()
        feeder.set_config(count=count, slot=f"s{k}")
        flow.add_routine(feeder, f"feeder{k}")
        flow.connect("starter", "go", f"feeder{k}", "trigger")
        flow.connect(f"feeder{k}", "next", f"feeder{k}", "trigger")
        flow.connect(f"feeder{k}", "item", "sink", f"s{k}")
    flow.entry_routine_id = "starter"
    return flow


# -- live view -------------------------------------------------------------------------
class WriteThenMaybeFail(Routine):
    """Writes to every part of the JobState, then raises while fewer than config
    ``failures`` errors are recorded for it."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.set_logic(self.work)

    def work(self, trigger: list[dict[str, Any]], message: Any, job_state: JobState) -> None:
        attempt = len(job_state.errors)
        job_state.shared_log.append(["attempt", attempt])
        job_state.shared_data[f"attempt{attempt}"] = True
        job_state.update_routine_state("writer", {f"attempt{attempt}": True})
        if attempt < self.get_config("failures", 0):
            raise TimeoutError(f"attempt {attempt} fails")


def build_writer_flow(strategy: ErrorStrategy, failures: int) -> Flow:
    """One routine that writes, then fails ``failures`` times under ``strategy``."""
    flow = Flow(flow_id="writer")
    writer = WriteThenMaybeFail()
    writer.set_config(failures=failures)
    writer.set_error_handler(ErrorHandler(strategy, max_retries=5, retry_delay=0.001))
    flow.add_routine(writer, "writer")
    return flow


# -- runtime state machine -------------------------------------------------------------
class Pause(Routine):
    """Takes config ``seconds`` (simulated work), then passes each data point on."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.define_event("out")
        self.set_logic(self.work)

    def work(self, items: list[dict[str, Any]], message: Any, job_state: JobState) -> None:
        time.sleep(self.get_config("seconds", 0.0))  # long enough to be cancelled mid-way
        for item in items:
            job_state.shared_log.append(job_state.current_routine_id)
            self.emit("out", **item)


def build_slow_chain_flow(length: int = 3, seconds: float = 0.01) -> Flow:
    """p0 -> p1 -> ... each taking ``seconds``; a job lasts about ``length * seconds``."""
    flow = Flow(flow_id="slow")
    for i in range(length):
        step = Pause()
        step.set_config(seconds=seconds)
        flow.add_routine(step, f"p{i}")
        if i:
            flow.connect(f"p{i - 1}", "out", f"p{i}", "trigger")
    flow.entry_routine_id = "p0"
    return flow


def pipeline_totals(n: int, batch: int) -> list[int]:
    """The totals the pipeline flow's sink receives for entry ``{"n": n}``."""
    squares = [v * v for v in range(n)]
    full = len(squares) - len(squares) % batch
    return [sum(squares[i : i + batch]) for i in range(0, full, batch)]
