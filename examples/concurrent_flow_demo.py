"""Concurrency demo: parallel branches inside a job, and many jobs on one Flow.

    splitter --parts--> fetch_a.input --done--> merge.a
             --parts--> fetch_b.input --done--> merge.b      (all_slots_ready_policy)
             --parts--> fetch_c.input --done--> merge.c

Each ``fetch_*`` routine simulates 0.3 s of I/O. The three branches of a job run at
the same time on the Runtime's shared thread pool, and several jobs of the same Flow
run side by side without seeing each other's data: slot queues and routine states
live per job, never on the Routine objects.

Run: ``python examples/concurrent_flow_demo.py`` (exits 0, prints ``concurrent demo OK``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from routilux import Flow, FlowRegistry, Routine, Runtime
from routilux.activation_policies import all_slots_ready_policy
from routilux.job_state import JobState
from routilux.status import ExecutionStatus

#: Simulated I/O time of one fetch, seconds.
FETCH_SECONDS = 0.3
#: Jobs started at once.
JOBS = 4
#: Branches per job.
BRANCHES = ("a", "b", "c")


class Splitter(Routine):
    """Entry: sends the job's ``user`` to every fetch branch."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.define_event("parts", ["user"])
        self.set_logic(self.split)

    def split(
        self, trigger: list[dict[str, Any]], policy_message: Any, job_state: JobState
    ) -> None:
        for point in trigger:
            self.emit("parts", user=point["user"])


class Fetch(Routine):
    """Simulated slow call; records when and on which thread it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.define_event("done", ["user", "part"])
        self.set_logic(self.fetch)

    def fetch(self, items: list[dict[str, Any]], policy_message: Any, job_state: JobState) -> None:
        routine_id = job_state.current_routine_id or "fetch"
        started = time.monotonic()
        time.sleep(FETCH_SECONDS)  # stands in for a network call
        for item in items:
            self.emit("done", user=item["user"], part=f"{routine_id}({item['user']})")
        job_state.update_routine_state(
            routine_id,
            {"thread": threading.current_thread().name, "start": started, "end": time.monotonic()},
        )


class Merge(Routine):
    """Joins one result from each branch (all_slots_ready_policy)."""

    def __init__(self) -> None:
        super().__init__()
        for name in BRANCHES:
            self.define_slot(name)
        self.set_logic(self.merge)
        self.set_activation_policy(all_slots_ready_policy())

    def merge(self, *args: Any) -> None:
        *slot_lists, _policy_message, job_state = args
        parts = [items[0]["part"] for items in slot_lists]
        job_state.shared_data["merged"] = parts
        job_state.shared_data["user"] = slot_lists[0][0]["user"]


def build_flow() -> Flow:
    """Splitter fanning out to three Fetch branches joined by Merge."""
    flow = Flow(flow_id="fan_out_fan_in")
    flow.add_routine(Splitter(), "splitter")
    flow.add_routine(Merge(), "merge")
    for name in BRANCHES:
        flow.add_routine(Fetch(), f"fetch_{name}")
        flow.connect("splitter", "parts", f"fetch_{name}", "input")
        flow.connect(f"fetch_{name}", "done", "merge", name)
    return flow


def check_job(state: JobState, user: str) -> float:
    """Assert one job's results; return how long its branches overlapped (seconds)."""
    assert state.status is ExecutionStatus.COMPLETED, state.error
    assert state.shared_data["user"] == user
    assert state.shared_data["merged"] == [f"fetch_{b}({user})" for b in BRANCHES]
    spans = [state.get_routine_state(f"fetch_{b}") for b in BRANCHES]
    assert len({span["thread"] for span in spans}) == len(BRANCHES), "branches shared a thread"
    return min(s["end"] for s in spans) - max(s["start"] for s in spans)


def main() -> None:
    registry = FlowRegistry()
    registry.register_by_name("fan_out_fan_in", build_flow())
    users = [f"user{i}" for i in range(JOBS)]
    started = time.monotonic()
    with Runtime(thread_pool_size=JOBS * len(BRANCHES), registry=registry) as runtime:
        jobs = [runtime.exec("fan_out_fan_in", entry_params={"user": u}) for u in users]
        assert runtime.wait_until_all_jobs_finished(timeout=20.0), "jobs did not finish"
    elapsed = time.monotonic() - started

    for state, user in zip(jobs, users, strict=True):
        overlap = check_job(state, user)
        print(
            f"{user}: {state.status} merged={state.shared_data['merged']} "
            f"(branches overlapped {overlap:.2f}s)"
        )
        # All three 0.3 s branches of a job were running at the same moment.
        assert overlap > 0, f"{user}: branches ran one after another"
    serial = JOBS * len(BRANCHES) * FETCH_SECONDS
    print(
        f"{JOBS} jobs x {len(BRANCHES)} branches of {FETCH_SECONDS}s: {elapsed:.2f}s "
        f"wall clock (one after another would take {serial:.1f}s)"
    )
    assert elapsed < serial / 2, "jobs did not run concurrently"
    print("concurrent demo OK")


if __name__ == "__main__":
    main()
