"""Save a running job, stop, and finish it in a new process.

    step1 -> step2 -> step3 (slow, 0.5 s) -> step4

1. This process starts a job and, as soon as ``step3`` is in flight, saves the job's
   state with ``job_state.save(path)`` and stops its Runtime without waiting, as a
   crash or a restart would.
2. A new process (this file with ``--resume PATH``) loads the state and calls
   ``runtime.exec(flow_name, job_state=loaded)`` to finish the job.
3. Back here we check the result: ``step1`` and ``step2`` ran once, in the first
   process, and did not run again; ``step3`` was in flight when the state was saved,
   so it ran again in the new process (activations are at-least-once; keep logic
   idempotent); ``step4`` ran only in the new process.

Run: ``python examples/save_resume_example.py`` (exits 0, prints ``save/resume example OK``).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from routilux import Flow, FlowRegistry, Routine, Runtime
from routilux.job_state import JobState
from routilux.status import ExecutionStatus

#: Name the flow is registered under, in both processes.
FLOW_NAME = "resumable_pipeline"
#: Steps of the pipeline, in order.
STEPS = ("step1", "step2", "step3", "step4")
#: The child prints its result on one line starting with this.
RESULT_PREFIX = "RESULT "


class Step(Routine):
    """Records ``{step, pid}`` in the shared log, then passes the order on.

    ``set_config(seconds=s)`` makes it take ``s`` seconds (simulated work).
    """

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.define_event("done", ["order"])
        self.set_logic(self.work)

    def work(self, items: list[dict[str, Any]], policy_message: Any, job_state: JobState) -> None:
        step = job_state.current_routine_id
        print(f"  [pid {os.getpid()}] {step} started", flush=True)
        time.sleep(self.get_config("seconds", 0.0))  # stands in for slow work
        for item in items:
            job_state.shared_log.append({"step": step, "pid": os.getpid()})
            self.emit("done", order=item["order"])
        if step == STEPS[-1]:
            job_state.shared_data["shipped"] = [item["order"] for item in items]


def build_flow() -> Flow:
    """step1 -> step2 -> step3 -> step4; step3 is slow. Both processes build it alike."""
    flow = Flow(flow_id=FLOW_NAME)
    for step in STEPS:
        routine = Step()
        if step == "step3":
            routine.set_config(seconds=0.5)
        flow.add_routine(routine, step)
    for source, target in itertools.pairwise(STEPS):
        flow.connect(source, "done", target, "trigger")
    flow.entry_routine_id = STEPS[0]
    return flow


class InFlightWatcher:
    """Checkpointer that signals once a snapshot shows ``routine_id`` in flight."""

    def __init__(self, routine_id: str) -> None:
        self.routine_id = routine_id
        self.seen = threading.Event()

    def save(self, snapshot: dict[str, Any]) -> None:
        running = [a["routine_id"] for a in snapshot["pending"]["activations"]]
        if self.routine_id in running:
            self.seen.set()


def start_and_save(path: Path) -> JobState:
    """Phase 1: run until step3 is in flight, save the job, stop without waiting."""
    registry = FlowRegistry()
    registry.register_by_name(FLOW_NAME, build_flow())
    watcher = InFlightWatcher("step3")
    runtime = Runtime(thread_pool_size=2, checkpointer=watcher, registry=registry)
    try:
        job = runtime.exec(FLOW_NAME, entry_params={"order": "A-17"})
        assert watcher.seen.wait(timeout=10.0), "step3 never started"
        job.save(path)
    finally:
        # Don't wait for step3: this stands for the process going away mid-job.
        runtime.shutdown(wait=False)
    return job


def resume(path: Path) -> None:
    """Phase 2 (the child process): load the saved job and run it to the end."""
    registry = FlowRegistry()
    registry.register_by_name(FLOW_NAME, build_flow())
    loaded = JobState.load(path)
    with Runtime(thread_pool_size=2, registry=registry) as runtime:
        job = runtime.exec(loaded.flow_id, job_state=loaded)
        assert job.wait_for_completion(timeout=10.0), "resumed job did not finish"
    result = job.to_dict()
    print(
        RESULT_PREFIX
        + json.dumps(
            {key: result[key] for key in ("job_id", "status", "shared_log", "shared_data")}
        )
    )


def run_child(path: Path) -> dict[str, Any]:
    """Run phase 2 in a new Python process and return its result."""
    child = subprocess.run(
        [sys.executable, __file__, "--resume", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = child.stdout.splitlines()
    for line in lines:
        if not line.startswith(RESULT_PREFIX):
            print(line)
    assert child.returncode == 0, f"resume process failed:\n{child.stderr}"
    return json.loads(
        next(ln for ln in lines if ln.startswith(RESULT_PREFIX))[len(RESULT_PREFIX) :]
    )


def check_saved(path: Path) -> None:
    saved = JobState.load(path)
    in_flight = [a["routine_id"] for a in saved.pending_work["activations"]]
    done = [entry["step"] for entry in saved.shared_log]
    print(f"saved {path.name}: status={saved.status} finished={done} in flight={in_flight}")
    assert saved.status is ExecutionStatus.RUNNING
    assert done == ["step1", "step2"] and in_flight == ["step3"]


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "job.json"
        print(f"phase 1 (pid {os.getpid()}): run until step3 is in flight, save, stop")
        job = start_and_save(path)
        check_saved(path)
        print("phase 2: resume in a new process")
        result = run_child(path)

    parent, log = os.getpid(), result["shared_log"]
    print(
        f"resumed job {result['job_id'][:8]}: status={result['status']} "
        f"shipped={result['shared_data']['shipped']}"
    )
    for entry in log:
        where = "first process" if entry["pid"] == parent else "new process"
        print(f"  {entry['step']} committed in the {where}")
    assert result["job_id"] == job.job_id and result["status"] == "completed"
    assert [entry["step"] for entry in log] == list(STEPS), "a step ran twice or not at all"
    assert [entry["pid"] == parent for entry in log] == [True, True, False, False]
    assert result["shared_data"] == {"shipped": ["A-17"]}
    print("save/resume example OK")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--resume":
        resume(Path(sys.argv[2]))
    else:
        main()
