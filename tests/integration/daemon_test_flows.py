"""Flows the daemon subprocess of the integration tests loads (``flows.modules``).

* ``chain``: ``first -> second -> third``; each step adds 1 to ``n``; ``third``
  stores the result in ``shared_data["result"]``. ``sleep`` (seconds) in the entry
  params makes ``second`` slow, for drain and kill tests.
* ``tick``: one routine recording its params, for interval triggers.
"""

from __future__ import annotations

import time
from typing import Any

from routilux import Flow, Routine

Points = list[dict[str, Any]]


class First(Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.define_event("out", ["n", "sleep"])
        self.set_logic(self.run)

    def run(self, trigger: Points, policy_message: Any, job_state: Any) -> None:
        for point in trigger:
            self.emit("out", n=int(point.get("n", 0)) + 1, sleep=float(point.get("sleep", 0)))


class Second(Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.define_event("out", ["n"])
        self.set_logic(self.run)

    def run(self, input: Points, policy_message: Any, job_state: Any) -> None:
        for point in input:
            if point["sleep"]:
                time.sleep(point["sleep"])  # stands for slow work in the routine
            self.emit("out", n=point["n"] + 1)


class Third(Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.set_logic(self.run)

    def run(self, input: Points, policy_message: Any, job_state: Any) -> None:
        for point in input:
            job_state.shared_data["result"] = point["n"] + 1


class Tick(Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.set_logic(self.run)

    def run(self, trigger: Points, policy_message: Any, job_state: Any) -> None:
        for point in trigger:
            job_state.shared_data["params"] = dict(point)


def register_flows(registry: Any) -> None:
    chain = Flow("chain")
    chain.add_routine(First(), "first")
    chain.add_routine(Second(), "second")
    chain.add_routine(Third(), "third")
    chain.connect("first", "out", "second", "input")
    chain.connect("second", "out", "third", "input")
    registry.register_by_name("chain", chain)
    tick = Flow("tick")
    tick.add_routine(Tick(), "tick")
    registry.register_by_name("tick", tick)
