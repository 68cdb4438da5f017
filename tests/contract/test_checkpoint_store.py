"""The CheckpointStore contract, run against every implementation (memory and SQLite)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from daemon.checkpoints import CheckpointStore, ClaimRequest, StoreClosedError
from daemon.checkpoints.memory import MemoryCheckpointStore
from daemon.checkpoints.sqlite import SqliteCheckpointStore

T0 = "2026-01-01T00:00:00+00:00"


def snap(job_id: str, seq: int, status: str = "running", **extra: Any) -> dict[str, Any]:
    """A minimal snapshot in JobState.to_dict() form."""
    data: dict[str, Any] = {
        "schema": 1,
        "job_id": job_id,
        "flow_id": "flow",
        "flow_fingerprint": "",
        "status": status,
        "created_at": T0,
        "checkpoint_seq": seq,
        "error": None,
        "pending": {"slots": {}, "activations": [], "timers": []},
    }
    data.update(extra)
    return data


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CheckpointStore]:
    made: CheckpointStore
    if request.param == "memory":
        made = MemoryCheckpointStore(retention_days=7)
    else:
        made = SqliteCheckpointStore(str(tmp_path / "jobs.db"), retention_days=7)
    yield made
    made.close()


def test_both_stores_satisfy_the_protocol(store: CheckpointStore) -> None:
    assert isinstance(store, CheckpointStore)


def test_saved_snapshot_becomes_durable_and_readable(store: CheckpointStore) -> None:
    store.save(snap("j1", 1, shared_data={"k": [1, 2]}))
    assert store.wait_durable("j1", timeout=5)
    row = store.get_job("j1")
    assert row is not None
    assert (row.flow_id, row.status) == ("flow", "running")
    assert row.state is not None and row.state["shared_data"] == {"k": [1, 2]}


def test_newest_snapshot_wins(store: CheckpointStore) -> None:
    for seq in range(1, 30):
        store.save(snap("j1", seq))
    assert store.wait_durable("j1", seq=29, timeout=5)
    row = store.get_job("j1")
    assert row is not None and row.state is not None
    assert row.state["checkpoint_seq"] == 29


def test_terminal_status_is_recorded_once(store: CheckpointStore) -> None:
    error = {"type": "ValueError", "message": "bad input"}
    store.save(snap("j1", 1))
    store.save(snap("j1", 2, status="failed", error=error, completed_at=T0))
    assert store.wait_durable("j1", seq=2, timeout=5)
    store.save(snap("j1", 3, status="running"))
    # A late snapshot is settled (so nobody waits forever) but not written.
    assert store.wait_durable("j1", seq=3, timeout=5)
    row = store.get_job("j1")
    assert row is not None
    assert (row.status, row.error, row.completed_at) == ("failed", "ValueError: bad input", T0)


def test_wait_durable_times_out_for_unknown_job(store: CheckpointStore) -> None:
    assert store.wait_durable("nobody", timeout=0.05) is False


def test_durable_future_can_be_awaited_from_asyncio(store: CheckpointStore) -> None:
    async def scenario() -> bool:
        fut = asyncio.wrap_future(store.durable_future("j1"))
        await asyncio.to_thread(store.save, snap("j1", 1))
        return await asyncio.wait_for(fut, 5)

    assert asyncio.run(scenario()) is True


def test_claim_creates_once_per_dedupe_key(store: CheckpointStore) -> None:
    first = store.claim("j1", "flow", "amqp:orders", "msg-1", {"x": 1})
    again = store.claim("j2", "flow", "amqp:orders", "msg-1", {"x": 1})
    same_id = store.claim("j1", "flow", "amqp:orders", None)
    assert first == ("j1", True)
    assert again == ("j1", False)
    assert same_id == ("j1", False)
    row = store.get_job("j1")
    assert row is not None
    assert (row.status, row.trigger, row.dedupe_key, row.state) == (
        "pending",
        "amqp:orders",
        "msg-1",
        None,
    )
    assert store.get_job("j2") is None


def test_claims_without_dedupe_key_do_not_collide(store: CheckpointStore) -> None:
    assert store.claim("a", "flow").created
    assert store.claim("b", "flow").created


def test_concurrent_claims_of_one_key_create_exactly_one_job(store: CheckpointStore) -> None:
    results: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def claim(i: int) -> None:
        result = store.claim(f"job-{i}", "flow", None, "same-key")
        with lock:
            results.append(tuple(result))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    created = [job for job, new in results if new]
    assert len(created) == 1
    assert {job for job, _ in results} == set(created)


def test_wait_durable_many_returns_the_jobs_that_are_durable(store: CheckpointStore) -> None:
    for i in range(3):
        store.save(snap(f"w{i}", 1))
    assert store.wait_durable_many(["w0", "w1", "w2"], timeout=5) == {"w0", "w1", "w2"}
    assert store.wait_durable_many(["w0", "never-saved"], timeout=0.05) == {"w0"}


def test_claim_many_claims_in_order_and_dedupes_within_and_across_calls(
    store: CheckpointStore,
) -> None:
    store.claim("old", "flow", "amqp:q", "k-old", {"n": 0})
    results = store.claim_many(
        [
            ClaimRequest("a", "flow", "amqp:q", "k-a", {"n": 1}),
            ClaimRequest("b", "flow", "amqp:q", "k-old", {"n": 2}),  # known key
            ClaimRequest("c", "flow", "amqp:q", "k-a", {"n": 3}),  # key of "a" above
            ClaimRequest("old", "flow", "amqp:q", None),  # known id
            ClaimRequest("d", "flow", "cron:flow", None, None),
        ]
    )
    assert results == [("a", True), ("old", False), ("a", False), ("old", False), ("d", True)]
    assert store.get_job("b") is None and store.get_job("c") is None
    unfinished = {j.job_id: j.entry_params for j in store.unfinished_jobs()}
    assert unfinished == {"old": {"n": 0}, "a": {"n": 1}, "d": {}}
    row = store.get_job("a")
    assert row is not None and (row.status, row.trigger, row.dedupe_key) == (
        "pending",
        "amqp:q",
        "k-a",
    )
    assert store.claim_many([]) == []


def test_claim_many_with_a_repeated_id_creates_it_once(store: CheckpointStore) -> None:
    store.claim("other", "flow", None, "taken")
    results = store.claim_many(
        [
            ClaimRequest("x", "flow", None, "taken"),  # key taken: x is not created here
            ClaimRequest("x", "flow", None, "fresh"),  # so this one creates x
            ClaimRequest("x", "flow", None, None),  # and this one repeats it
        ]
    )
    assert results == [("other", False), ("x", True), ("x", False)]


def test_an_empty_dedupe_key_is_a_key_like_any_other(store: CheckpointStore) -> None:
    assert store.claim("o1", "flow", "amqp:q", "") == ("o1", True)
    again = store.claim_many(
        [ClaimRequest("n1", "flow", "amqp:q", ""), ClaimRequest("n2", "flow", "amqp:q", "")]
    )
    assert again == [("o1", False), ("o1", False)]
    assert store.get_job("n1") is None and store.get_job("n2") is None


def test_claim_many_handles_more_claims_than_one_statement_holds(store: CheckpointStore) -> None:
    requests = [ClaimRequest(f"j{i}", "flow", None, f"k{i % 400}") for i in range(1000)]
    results = store.claim_many(requests)
    assert [job for job, _ in results] == [f"j{i % 400}" for i in range(1000)]
    assert [created for _, created in results] == [i < 400 for i in range(1000)]
    assert len(store.unfinished_jobs()) == 400


def test_claim_keeps_trigger_and_key_when_snapshots_arrive(store: CheckpointStore) -> None:
    store.claim("j1", "flow", "cron:flow", "k1")
    store.save(snap("j1", 1, status="completed", completed_at=T0))
    assert store.wait_durable("j1", timeout=5)
    row = store.get_job("j1")
    assert row is not None
    assert (row.status, row.trigger, row.dedupe_key) == ("completed", "cron:flow", "k1")


def test_queued_claims_come_before_snapshots_saved_after_them(store: CheckpointStore) -> None:
    # The daemon starts a job at once and queues its claim: the job's first snapshot
    # may well be written in the same group, and must not take the claim's place.
    future = store.queue_claims([ClaimRequest("j1", "flow", "amqp:q", "k1", {"n": 1})])
    store.save(snap("j1", 1))
    assert [tuple(c) for c in future.result(timeout=5)] == [("j1", True)]
    assert store.wait_durable("j1", timeout=5)
    row = store.get_job("j1")
    assert row is not None
    assert (row.status, row.trigger, row.dedupe_key) == ("running", "amqp:q", "k1")


def test_key_owners_names_the_committed_owner_of_each_known_key(store: CheckpointStore) -> None:
    assert store.key_owners([]) == {}
    store.claim_many([ClaimRequest("j1", "flow", None, "k1"), ClaimRequest("j2", "flow")])
    assert store.key_owners(["k1", "k2"]) == {"k1": "j1"}
    keys = [f"k{i}" for i in range(2000)]  # more than one statement's parameters
    assert store.key_owners(keys) == {"k1": "j1"}


def test_key_owners_after_close_is_refused(store: CheckpointStore) -> None:
    store.close()
    with pytest.raises(StoreClosedError):
        store.key_owners(["k1"])


def test_list_jobs_filters_by_status_and_flow(store: CheckpointStore) -> None:
    store.save(snap("a", 1, status="completed", completed_at=T0))
    store.save(snap("b", 1, flow_id="other"))
    store.save(snap("c", 1))
    assert store.wait_durable("c", timeout=5) and store.wait_durable("a", timeout=5)
    assert {r.job_id for r in store.list_jobs()} == {"a", "b", "c"}
    assert [r.job_id for r in store.list_jobs(status="completed")] == ["a"]
    assert {r.job_id for r in store.list_jobs(flow="flow")} == {"a", "c"}
    assert [r.job_id for r in store.list_jobs(status="running", flow="other")] == ["b"]
    assert len(store.list_jobs(limit=2)) == 2


def test_oldest_pending_age_counts_only_unfinished_jobs(store: CheckpointStore) -> None:
    assert store.oldest_pending_age() is None
    store.save(snap("done", 1, status="completed", completed_at=T0))
    store.save(snap("live", 1, created_at=T0))
    assert store.wait_durable("live", timeout=5)
    now = datetime(2026, 1, 1, 0, 1, tzinfo=timezone.utc)
    assert store.oldest_pending_age(now) == pytest.approx(60.0)


def test_unfinished_jobs_include_claimed_jobs_with_entry_params(store: CheckpointStore) -> None:
    store.claim("claimed", "flow", None, "k", {"order": 7})
    store.save(snap("running", 3))
    store.save(snap("finished", 2, status="cancelled"))
    assert store.wait_durable("finished", timeout=5)
    jobs = {j.job_id: j for j in store.unfinished_jobs()}
    assert set(jobs) == {"claimed", "running"}
    assert (jobs["claimed"].state, jobs["claimed"].entry_params, jobs["claimed"].seq) == (
        None,
        {"order": 7},
        0,
    )
    assert jobs["running"].seq == 3


def test_mark_failed_fails_unfinished_jobs_only(store: CheckpointStore) -> None:
    store.save(snap("live", 1))
    store.save(snap("done", 1, status="completed"))
    assert store.wait_durable("done", timeout=5) and store.wait_durable("live", timeout=5)
    assert store.mark_failed("live", "flow 'x' is not registered") is True
    assert store.mark_failed("done", "nope") is False
    assert store.mark_failed("ghost", "nope") is False
    row = store.get_job("live")
    assert row is not None and row.state is not None
    assert (row.status, row.error) == ("failed", "flow 'x' is not registered")
    assert row.state["status"] == "failed"
    assert row.state["error"]["message"] == "flow 'x' is not registered"


def test_nan_and_infinity_are_stored_as_null_everywhere(store: CheckpointStore) -> None:
    # JSON has no such numbers; both stores write what daemon.json_text writes.
    odd = {"mean": float("nan"), "bounds": [float("-inf"), float("inf")], "at": T0}
    store.claim("claimed", "flow", None, None, dict(odd))
    store.save(snap("saved", 1, shared_data=dict(odd)))
    assert store.add_outbox("saved", "replies", None, {"shared_data": dict(odd)})
    assert store.wait_durable("saved", timeout=5)
    stored = {"mean": None, "bounds": [None, None], "at": T0}
    row = store.get_job("saved")
    assert row is not None and row.state is not None and row.state["shared_data"] == stored
    entries = {j.job_id: j.entry_params for j in store.unfinished_jobs()}
    assert entries["claimed"] == stored
    [entry] = store.pending_outbox()
    assert entry.body == {"shared_data": stored}
    assert store.mark_failed("saved", "quarantined")  # the stored text stays valid JSON


def test_record_resumes_counts_only_resumes_without_progress(store: CheckpointStore) -> None:
    assert store.record_resumes([("a", 4), ("b", 0)]) == {"a": 1, "b": 1}
    assert store.record_resumes([("a", 4), ("b", 0)]) == {"a": 2, "b": 2}
    # The engine checkpoints once when it resumes a job: seq + 1 is not progress.
    assert store.record_resumes([("a", 5), ("b", 1)]) == {"a": 3, "b": 3}
    assert store.record_resumes([("a", 7)]) == {"a": 1}


def test_record_resumes_charges_only_the_named_stalled_jobs(store: CheckpointStore) -> None:
    jobs = [("j1", 3), ("j2", 3), ("j3", 3)]
    assert store.stalled_jobs(jobs) == set()
    assert store.record_resumes(jobs, charge=set()) == {"j1": 1, "j2": 1, "j3": 1}
    # Next start: every job stalled (seq moved by the resume checkpoint only).
    stalled = [("j1", 4), ("j2", 4), ("j3", 4)]
    assert store.stalled_jobs(stalled) == {"j1", "j2", "j3"}
    assert store.record_resumes(stalled, charge={"j2"}) == {"j1": 1, "j2": 2, "j3": 1}
    # j1 progressed and starts again at 1; j2 is charged again.
    later = [("j1", 9), ("j2", 5), ("j3", 5)]
    assert store.stalled_jobs(later) == {"j2", "j3"}
    assert store.record_resumes(later, charge={"j2"}) == {"j1": 1, "j2": 3, "j3": 1}


def test_the_probe_is_durable_until_cleared(store: CheckpointStore) -> None:
    assert store.probe() is None
    store.set_probe("j7")
    assert store.probe() == "j7"
    store.set_probe(None)
    assert store.probe() is None


def test_prune_removes_old_finished_jobs_only(store: CheckpointStore) -> None:
    old, recent = "2026-01-01T00:00:00+00:00", "2026-01-09T00:00:00+00:00"
    store.claim("old-done", "flow", None, "key-old")
    store.save(snap("old-done", 1, status="completed", completed_at=old))
    store.save(snap("old-live", 1, created_at=old))
    store.save(snap("new-done", 1, status="failed", completed_at=recent))
    assert store.wait_durable("new-done", timeout=5) and store.wait_durable("old-done", timeout=5)
    assert store.wait_durable("old-live", timeout=5)
    now = datetime(2026, 1, 10, tzinfo=timezone.utc)
    assert store.prune(now) == 1
    assert {r.job_id for r in store.list_jobs()} == {"old-live", "new-done"}
    # The dedupe key of a pruned job is free again.
    assert store.claim("again", "flow", None, "key-old").created
    assert store.prune(now + timedelta(days=30)) == 1


def test_schedule_ledger_fires_each_slot_once(store: CheckpointStore) -> None:
    assert store.last_schedule_run("t1") is None
    assert store.claim_schedule_run("t1", "2026-01-01T00:05:00+00:00")
    assert not store.claim_schedule_run("t1", "2026-01-01T00:05:00+00:00")
    assert store.claim_schedule_run("t1", "2026-01-01T00:10:00+00:00")
    assert store.claim_schedule_run("t2", "2026-01-01T00:05:00+00:00")
    assert store.last_schedule_run("t1") == "2026-01-01T00:10:00+00:00"


def test_outbox_holds_replies_until_published(store: CheckpointStore) -> None:
    body = {"job_id": "j1", "status": "completed"}
    assert store.add_outbox("j1", "replies", "corr-1", body)
    assert not store.add_outbox("j1", "replies", "corr-1", body)
    [entry] = store.pending_outbox()
    assert (entry.job_id, entry.reply_to, entry.correlation_id, entry.body) == (
        "j1",
        "replies",
        "corr-1",
        body,
    )
    assert store.finish_outbox("j1")
    assert not store.finish_outbox("j1")
    assert store.pending_outbox() == []


def test_closed_store_refuses_writes_and_resolves_waiters(store: CheckpointStore) -> None:
    fut = store.durable_future("never")
    assert store.close() is True
    assert fut.result(timeout=5) is False
    with pytest.raises(StoreClosedError):
        store.claim("j", "flow")
    store.save(snap("late", 1))  # dropped, never raises into the Runtime
    assert store.wait_durable("late", timeout=0.05) is False


def test_retention_zero_keeps_finished_jobs_forever(store: CheckpointStore) -> None:
    store.save(snap("ancient", 1, status="completed", completed_at="2000-01-01T00:00:00+00:00"))
    assert store.wait_durable("ancient", timeout=5)
    store.retention_days = 0  # type: ignore[attr-defined]
    assert store.prune(datetime(2026, 1, 10, tzinfo=timezone.utc)) == 0
    assert store.get_job("ancient") is not None
