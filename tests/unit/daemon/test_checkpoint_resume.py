"""resume_all() on a real Runtime: continue, start claimed jobs, fail, quarantine."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.checkpoints import CheckpointStore
from daemon.checkpoints.memory import MemoryCheckpointStore
from daemon.checkpoints.sqlite import SqliteCheckpointStore
from routilux import Flow, Routine, Runtime
from routilux.monitoring.flow_registry import FlowRegistry

#: Released at teardown; routines of the "gated" flow wait on it (with a timeout).
GATES: dict[str, threading.Event] = {}


class Step(Routine):
    """Counts its own runs in the job's routine state, then passes the data on."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot(self.slot_name)
        self.define_event("output")
        self.set_logic(self.run)

    slot_name = "input"

    def run(self, items: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        rid = job_state.current_routine_id
        runs = job_state.get_routine_state(rid, {}).get("runs", 0)
        job_state.update_routine_state(rid, {"runs": runs + 1})
        for item in items:
            self.emit("output", **item)


class Entry(Step):
    slot_name = "trigger"


class GatedStep(Step):
    """Blocks until the test's gate opens: a job that makes no progress."""

    def run(self, items: list[dict[str, Any]], policy_message: Any, job_state: Any) -> None:
        GATES[job_state.job_id].wait(30)
        super().run(items, policy_message, job_state)


def chain(flow_id: str, ids: list[str], middle: type[Step] = Step) -> Flow:
    flow = Flow(flow_id)
    for i, rid in enumerate(ids):
        routine = Entry() if i == 0 else (middle() if i == 1 else Step())
        flow.add_routine(routine, rid)
    for src, dst in itertools.pairwise(ids):
        flow.connect(src, "output", dst, "input")
    return flow


class Recorder:
    """A checkpointer that keeps every snapshot, to pick the one a crash would leave."""

    def __init__(self) -> None:
        self.snapshots: list[dict[str, Any]] = []

    def save(self, snapshot: dict[str, Any]) -> None:
        self.snapshots.append(snapshot)


@pytest.fixture
def registry() -> FlowRegistry:
    reg = FlowRegistry()
    reg.register_by_name("abc", chain("abc", ["a", "b", "c"]))
    return reg


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CheckpointStore]:
    made: CheckpointStore
    if request.param == "memory":
        made = MemoryCheckpointStore(max_resumes=2)
    else:
        made = SqliteCheckpointStore(str(tmp_path / "jobs.db"), max_resumes=2)
    yield made
    made.close()


def snapshot_with_b_in_flight(registry: FlowRegistry) -> dict[str, Any]:
    recorder = Recorder()
    with Runtime(thread_pool_size=2, checkpointer=recorder, registry=registry) as runtime:
        runtime.exec("abc", {"n": 1}, job_id="job-1").wait_for_completion(10)
    [hit] = [
        s
        for s in recorder.snapshots
        if [a["routine_id"] for a in s["pending"]["activations"]] == ["b"]
    ]
    return hit


def runs(row_state: dict[str, Any] | None) -> dict[str, int]:
    assert row_state is not None
    return {rid: st["runs"] for rid, st in row_state["routine_states"].items()}


def resume_and_wait(store: CheckpointStore, registry: FlowRegistry) -> Any:
    with Runtime(thread_pool_size=2, checkpointer=store, registry=registry) as runtime:
        summary = store.resume_all(runtime, registry)
        assert runtime.wait_until_all_jobs_finished(10)
    for job_id in summary.resumed:  # the terminal snapshot is written asynchronously
        assert store.wait_durable(job_id, timeout=5)
    return summary


def test_resume_reruns_only_the_activation_in_flight(
    store: CheckpointStore, registry: FlowRegistry
) -> None:
    crashed = snapshot_with_b_in_flight(registry)
    assert runs(crashed) == {"a": 1}
    store.save(crashed)
    summary = resume_and_wait(store, registry)
    assert (summary.resumed, summary.failed) == (["job-1"], {})
    row = store.get_job("job-1")
    assert row is not None and row.status == "completed"
    assert runs(row.state) == {"a": 1, "b": 1, "c": 1}
    assert row.state is not None and row.state["checkpoint_seq"] > crashed["checkpoint_seq"]


def test_claimed_job_without_checkpoint_starts_from_its_entry_params(
    store: CheckpointStore, registry: FlowRegistry
) -> None:
    assert store.claim("job-2", "abc", "amqp:q", "msg-2", {"n": 2}).created
    summary = resume_and_wait(store, registry)
    assert summary.resumed == ["job-2"]
    row = store.get_job("job-2")
    assert row is not None and row.status == "completed"
    assert (row.trigger, row.dedupe_key) == ("amqp:q", "msg-2")
    assert runs(row.state) == {"a": 1, "b": 1, "c": 1}


def test_job_of_an_unregistered_flow_is_failed_with_a_reason(
    store: CheckpointStore, registry: FlowRegistry
) -> None:
    store.save(snapshot_with_b_in_flight(registry))
    registry.unregister("abc")
    summary = resume_and_wait(store, registry)
    assert summary.failed == {"job-1": "flow 'abc' is not registered"}
    row = store.get_job("job-1")
    assert row is not None
    assert (row.status, row.error) == ("failed", "flow 'abc' is not registered")


def test_snapshot_that_no_longer_fits_the_changed_flow_fails_the_job(
    store: CheckpointStore, registry: FlowRegistry
) -> None:
    store.save(snapshot_with_b_in_flight(registry))
    registry.register_by_name("abc", chain("abc", ["a", "b2", "c"]))
    summary = resume_and_wait(store, registry)
    reason = summary.failed["job-1"]
    assert "flow 'abc' changed since the snapshot" in reason and "ResumeError" in reason
    row = store.get_job("job-1")
    assert row is not None and row.status == "failed" and row.error == reason


def test_snapshot_resumes_across_a_compatible_flow_change(
    store: CheckpointStore, registry: FlowRegistry
) -> None:
    store.save(snapshot_with_b_in_flight(registry))
    registry.register_by_name("abc", chain("abc", ["a", "b", "c", "d"]))
    summary = resume_and_wait(store, registry)
    assert summary.resumed == ["job-1"]
    row = store.get_job("job-1")
    assert row is not None and row.status == "completed"
    assert runs(row.state) == {"a": 1, "b": 1, "c": 1, "d": 1}


def test_job_that_never_progresses_is_quarantined_after_max_resumes(
    store: CheckpointStore, registry: FlowRegistry
) -> None:
    snapshot = snapshot_with_b_in_flight(registry)
    store.save(snapshot)
    registry.register_by_name("abc", chain("abc", ["a", "b", "c"], middle=GatedStep))
    GATES["job-1"] = threading.Event()
    abandoned: list[Runtime] = []
    try:
        # Each "process" dies while b runs. The first restart finds the job merely
        # interrupted; from then on it is stalled, started on probation, and every
        # death while it is the probe is charged to it.
        for restart in range(1, store.max_resumes + 2):
            runtime = Runtime(thread_pool_size=1, checkpointer=store, registry=registry)
            abandoned.append(runtime)
            assert store.resume_all(runtime, registry).resumed == ["job-1"]
            resumed_seq = snapshot["checkpoint_seq"] + restart  # one checkpoint per resume
            assert store.wait_durable("job-1", resumed_seq, timeout=5)
            assert store.probe() == (None if restart == 1 else "job-1")
        runtime = Runtime(thread_pool_size=1, checkpointer=store, registry=registry)
        abandoned.append(runtime)
        summary = store.resume_all(runtime, registry)
    finally:
        GATES.pop("job-1").set()
        for runtime in abandoned:
            runtime.shutdown(wait=True, timeout=10)
    expected = f"quarantined: resumed {store.max_resumes} times without progress"
    assert summary.resumed == [] and summary.failed["job-1"].startswith(expected)
    row = store.get_job("job-1")
    assert row is not None and row.status == "failed"
    assert row.error is not None and row.error.startswith(expected)


def test_jobs_stalled_beside_a_poison_job_are_not_quarantined_with_it(
    store: CheckpointStore, registry: FlowRegistry
) -> None:
    """Only the job on probation when the process died is charged."""
    snapshot = snapshot_with_b_in_flight(registry)
    registry.register_by_name("abc", chain("abc", ["a", "b", "c"], middle=GatedStep))
    jobs = [f"job-{i}" for i in range(1, 4)]
    for job_id in jobs:
        GATES[job_id] = threading.Event()
        store.save({**snapshot, "job_id": job_id})
    abandoned: list[Runtime] = []
    try:
        for _ in range(store.max_resumes + 2):
            runtime = Runtime(thread_pool_size=4, checkpointer=store, registry=registry)
            abandoned.append(runtime)
            summary = store.resume_all(runtime, registry)
            if "job-1" in summary.failed:
                break
            # job-1 (the oldest) is probed first and blocks forever: the others wait.
            assert store.wait_durable("job-1", timeout=5)
        GATES["job-2"].set()
        GATES["job-3"].set()
        for job_id in ("job-2", "job-3"):  # started one after the other by the probation
            assert _eventually(lambda j=job_id: _status(store, j) == "completed", 10)
    finally:
        for job_id in jobs:
            GATES.pop(job_id).set()
        for runtime in abandoned:
            runtime.shutdown(wait=True, timeout=10)
    assert summary.failed["job-1"].startswith("quarantined")
    assert set(summary.resumed) == {"job-2", "job-3"}
    for job_id in ("job-2", "job-3"):
        row = store.get_job(job_id)
        assert row is not None and row.status == "completed", (job_id, row and row.error)


def test_daemon_path_claim_exec_then_durable_before_ack(
    store: CheckpointStore, registry: FlowRegistry
) -> None:
    with Runtime(thread_pool_size=2, checkpointer=store, registry=registry) as runtime:
        claim = store.claim("job-9", "abc", "amqp:orders", "message-9", {"n": 9})
        assert claim.created
        runtime.exec("abc", {"n": 9}, job_id=claim.job_id)
        assert store.wait_durable(claim.job_id, timeout=5)  # the on_checkpoint ack point
        # A redelivery of the same message finds the job and starts nothing.
        assert store.claim("other-id", "abc", "amqp:orders", "message-9") == ("job-9", False)
        assert runtime.wait_until_all_jobs_finished(10)
    assert store.wait_durable("job-9", timeout=5)
    row = store.get_job("job-9")
    assert row is not None and row.status == "completed" and row.dedupe_key == "message-9"
    assert [r.job_id for r in store.list_jobs(flow="abc")] == ["job-9"]


def _status(store: CheckpointStore, job_id: str) -> str | None:
    row = store.get_job(job_id)
    return row.status if row is not None else None


def _eventually(predicate: Any, timeout: float) -> bool:
    """Wait for a condition reached by other threads (the store's probation)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
