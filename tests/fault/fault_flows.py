"""Flows the daemon subprocess of the fault suite loads (``flows.modules``).

* ``steps4``: ``s1 -> s2 -> s3 -> s4``. Every step appends ``<job_id> <step>`` to the
  marker file named by env ``FAULT_MARKERS`` (one ``write`` on an ``O_APPEND`` fd,
  so a SIGKILL never leaves half a line and nothing written is lost with the
  process), records ``{"done": True}`` in its routine state (so a checkpoint shows
  which steps finished), and passes the data on. Entry params it understands,
  ignoring anything else (fuzzed bodies carry arbitrary keys and types):

  - ``sleep`` (number): seconds ``s2`` spends working, for drain and load tests;
  - ``crash`` (``True``): ``s2`` kills the whole process with ``os._exit(3)``,
    the poison input of the quarantine test.

  With env ``FAULT_INERT=1`` (the fuzz test) both are ignored.

* ``tick``: one routine that records a marker, for interval triggers in the soak.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

from routilux import Flow, Routine

Points = list[dict[str, Any]]

#: The steps of ``steps4``, in order.
STEPS = ("s1", "s2", "s3", "s4")


def write_marker(job_id: str, step: str) -> None:
    """Append one marker line; a no-op when ``FAULT_MARKERS`` is unset."""
    path = os.environ.get("FAULT_MARKERS")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{job_id} {step}\n".encode())
    finally:
        os.close(fd)


def _number(value: Any) -> float:
    """``value`` if it is a real, finite, small non-negative number, else 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if 0 <= value <= 60 else 0.0


class Step(Routine):
    """One marked step of ``steps4``."""

    slot_name = "input"

    def __init__(self) -> None:
        super().__init__()
        self.define_slot(self.slot_name)
        self.define_event("output")
        self.set_logic(self.run)

    def run(self, items: Points, policy_message: Any, job_state: Any) -> None:
        rid = job_state.current_routine_id
        for item in items:
            # The entry point is the message body itself; later steps get it wrapped,
            # so arbitrary body keys never clash with emit()'s own parameters.
            params = item if self.slot_name == "trigger" else item["payload"]
            self.work(rid, params)
            write_marker(job_state.job_id, rid)
            job_state.update_routine_state(rid, {"done": True})
            self.emit("output", payload=params)

    def work(self, rid: str, item: dict[str, Any]) -> None:
        if rid != "s2" or os.environ.get("FAULT_INERT") == "1":
            return
        if item.get("crash") is True:
            os._exit(3)  # the poison input: takes the daemon down with it
        delay = _number(item.get("sleep"))
        if delay:
            time.sleep(delay)  # stands for slow work in the routine


class EntryStep(Step):
    slot_name = "trigger"


class Tick(Routine):
    """Records one marker per timer fire."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.set_logic(self.run)

    def run(self, trigger: Points, policy_message: Any, job_state: Any) -> None:
        write_marker(job_state.job_id, "tick")


def build_steps4() -> Flow:
    flow = Flow("steps4")
    for i, rid in enumerate(STEPS):
        flow.add_routine(EntryStep() if i == 0 else Step(), rid)
    for src, dst in itertools.pairwise(STEPS):
        flow.connect(src, "output", dst, "input")
    return flow


def register_flows(registry: Any) -> None:
    registry.register_by_name("steps4", build_steps4())
    tick = Flow("tick")
    tick.add_routine(Tick(), "tick")
    registry.register_by_name("tick", tick)
