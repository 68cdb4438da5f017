"""Child process of test_crash_loop: runs N jobs of a 4-step flow on a SQLite store.

Usage: crash_child.py DB LOG_DIR JOBS. On start it resumes whatever a previous
(killed) run left unfinished, prints ``READY``, then claims job ``key-<i>`` for every
i (a dedupe key, so jobs claimed by an earlier run are skipped), runs the new ones,
waits for all of them, closes the store and prints ``DONE``. Each step appends the
job id to ``LOG_DIR/<step>.log`` (flushed and fsynced) and marks itself done in the
job's routine state, so the parent can compare side effects with checkpoints.
"""

from __future__ import annotations

import itertools
import os
import sys
import uuid
from typing import Any

from daemon.checkpoints.sqlite import SqliteCheckpointStore
from routilux import Flow, Routine, Runtime
from routilux.monitoring.flow_registry import FlowRegistry

#: The steps of the flow, in order.
STEPS = ("s1", "s2", "s3", "s4")
#: Name the flow is registered under.
FLOW = "crash4"


class LoggedStep(Routine):
    """Appends ``job_id`` to its step log, records itself done, passes the data on."""

    slot_name = "input"

    def __init__(self) -> None:
        super().__init__()
        self.define_slot(self.slot_name)
        self.define_event("output")
        self.set_logic(self.run)

    def run(self, items: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        rid = job_state.current_routine_id
        for item in items:
            path = os.path.join(item["log"], f"{rid}.log")
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{job_state.job_id}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            job_state.update_routine_state(rid, {"done": True})
            self.emit("output", **item)


class FirstStep(LoggedStep):
    slot_name = "trigger"


def build_flow() -> Flow:
    """s1 -> s2 -> s3 -> s4."""
    flow = Flow(FLOW)
    for i, rid in enumerate(STEPS):
        flow.add_routine(FirstStep() if i == 0 else LoggedStep(), rid)
    for src, dst in itertools.pairwise(STEPS):
        flow.connect(src, "output", dst, "input")
    return flow


def main(db: str, log_dir: str, jobs: int) -> int:
    registry = FlowRegistry()
    registry.register_by_name(FLOW, build_flow())
    store = SqliteCheckpointStore(db)
    with Runtime(thread_pool_size=4, checkpointer=store, registry=registry) as runtime:
        summary = store.resume_all(runtime, registry)
        print(f"READY resumed={len(summary.resumed)} failed={len(summary.failed)}", flush=True)
        for i in range(jobs):
            params = {"i": i, "log": log_dir}
            claim = store.claim(uuid.uuid4().hex, FLOW, "crash-test", f"key-{i}", params)
            if claim.created:
                runtime.exec(FLOW, params, job_id=claim.job_id)
        finished = runtime.wait_until_all_jobs_finished(60)
    closed = store.close(timeout=30)
    print(f"DONE finished={finished} closed={closed}", flush=True)
    return 0 if finished and closed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
