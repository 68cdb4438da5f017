"""Module-level routines for tests (importable by path, so flows can be rebuilt)."""

from __future__ import annotations

import threading
from typing import Any

from routilux import Flow, Routine
from routilux.activation_policies import batch_size_policy


class Source(Routine):
    """Entry routine: emits each trigger data point's ``n`` on ``out``."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.define_event("out", ["n"])
        self.set_logic(self.run)

    def run(self, trigger: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        for item in trigger:
            self.emit("out", n=item.get("n", 0))


class Double(Routine):
    """Emits ``n * 2`` for every input."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.define_event("out", ["n"])
        self.set_logic(self.run)

    def run(self, items: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        for item in items:
            self.emit("out", n=item["n"] * 2)


class Collect(Routine):
    """Appends every ``n`` it receives to ``shared_data['collected']`` and the shared log."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.set_logic(self.run)

    def run(self, items: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        values = [item["n"] for item in items]
        job_state.shared_data["collected"] = job_state.shared_data.get("collected", []) + values
        job_state.shared_log.extend(values)
        rid = job_state.current_routine_id
        count = job_state.get_routine_state(rid, {}).get("calls", 0)
        job_state.update_routine_state(rid, {"calls": count + 1})


class Fanout(Routine):
    """Emits ``count`` items (0..count-1) on ``item`` per trigger."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.define_event("item", ["n"])
        self.set_logic(self.run)

    def run(self, trigger: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        for data in trigger:
            for i in range(data.get("count", 10)):
                self.emit("item", n=i)


class BatchSink(Routine):
    """Collects batches of 10 into shared_data['batches']."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.set_activation_policy(batch_size_policy(10))
        self.set_logic(self.run)

    def run(self, items: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        batches = job_state.shared_data.get("batches", [])
        job_state.shared_data["batches"] = [*batches, [i["n"] for i in items]]


class Gate(Routine):
    """Blocks until the process-wide ``GATE`` event is set (for mid-job snapshots)."""

    GATE = threading.Event()

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.define_event("out", ["n"])
        self.set_logic(self.run)

    def run(self, items: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        if not Gate.GATE.wait(timeout=30):
            raise TimeoutError("gate never opened")
        for item in items:
            self.emit("out", n=item["n"])


def chain_flow(flow_id: str = "chain") -> Flow:
    """source -> double -> collect."""
    flow = Flow(flow_id)
    flow.add_routine(Source(), "source")
    flow.add_routine(Double(), "double")
    flow.add_routine(Collect(), "collect")
    flow.connect("source", "out", "double", "input")
    flow.connect("double", "out", "collect", "input")
    return flow


def gated_flow(flow_id: str = "gated") -> Flow:
    """source -> gate -> collect; the gate blocks until Gate.GATE is set."""
    flow = Flow(flow_id)
    flow.add_routine(Source(), "source")
    flow.add_routine(Gate(), "gate")
    flow.add_routine(Collect(), "collect")
    flow.connect("source", "out", "gate", "input")
    flow.connect("gate", "out", "collect", "input")
    return flow


class Recorder(Routine):
    """Stores every raw data point it receives in shared_data['received']."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.set_logic(self.run)

    def run(self, items: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        job_state.shared_data["received"] = job_state.shared_data.get("received", []) + items
