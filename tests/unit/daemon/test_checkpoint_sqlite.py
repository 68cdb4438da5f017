"""SQLite-specific behaviour of SqliteCheckpointStore: WAL, pragmas, group commit, failures."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from daemon.checkpoints import (
    CheckpointStoreError,
    ClaimRequest,
    StoreClosedError,
    StoreCorruptError,
    StoreError,
    StoreFullError,
    StoreLockedError,
    StoreReadOnlyError,
)
from daemon.checkpoints.durability import DurabilityTracker
from daemon.checkpoints.schema import SCHEMA_VERSION, migrate, open_write_connection
from daemon.checkpoints.sqlite import SqliteCheckpointStore
from daemon.checkpoints.statements import MAX_ROWS_PER_STATEMENT, snapshot_row, upsert_snapshots
from daemon.checkpoints.writer import SnapshotWriter

JOBS_COLUMNS = [
    "job_id",
    "flow_id",
    "status",
    "trigger",
    "dedupe_key",
    "created_at",
    "updated_at",
    "completed_at",
    "error",
    "state",
]


def snap(job_id: str, seq: int, status: str = "running", **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"job_id": job_id, "flow_id": "flow", "status": status}
    data.update(checkpoint_seq=seq, **extra)
    return data


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "store" / "jobs.db")


@pytest.fixture
def store(db_path: str) -> Iterator[SqliteCheckpointStore]:
    made = SqliteCheckpointStore(db_path, request_timeout=5)
    yield made
    made.close()


def test_jobs_table_has_the_contract_columns_and_unique_dedupe_key(
    store: SqliteCheckpointStore, db_path: str
) -> None:
    db = sqlite_utils.Database(db_path)
    jobs = db.table("jobs")
    assert [c.name for c in jobs.columns] == JOBS_COLUMNS
    assert jobs.pks == ["job_id"]
    assert ["dedupe_key"] in [ix.columns for ix in jobs.indexes if ix.unique]
    assert list(db.query("SELECT value FROM store_meta")) == [{"value": str(SCHEMA_VERSION)}]
    db.close()


def test_store_is_queryable_with_the_sqlite_utils_cli(
    store: SqliteCheckpointStore, db_path: str
) -> None:
    store.claim("j1", "orders", "amqp:orders", "m-1")
    cli = Path(sys.executable).with_name("sqlite-utils")
    out = subprocess.run(
        [str(cli), "query", db_path, "select job_id, status from jobs"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"job_id": "j1"' in out.stdout and '"status": "pending"' in out.stdout


@pytest.mark.parametrize(("mode", "value"), [("normal", 1), ("full", 2)])
def test_synchronous_mode_comes_from_config(tmp_path: Path, mode: str, value: int) -> None:
    with SqliteCheckpointStore(str(tmp_path / "s.db"), synchronous=mode) as store:
        assert store.pragmas() == {
            "journal_mode": "wal",
            "synchronous": value,
            "busy_timeout": 5000,
        }


def test_unknown_synchronous_mode_is_refused_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointStoreError, match=r"s\.db: synchronous must be one of"):
        SqliteCheckpointStore(str(tmp_path / "s.db"), synchronous="off")


def test_reader_sees_committed_rows_while_the_writer_is_busy(
    store: SqliteCheckpointStore, db_path: str
) -> None:
    stop = threading.Event()

    def write() -> None:
        seq = 0
        while not stop.is_set():
            seq += 1
            store.save(snap(f"j{seq % 50}", seq))

    writer = threading.Thread(target=write)
    writer.start()
    try:
        reader = sqlite3.connect(db_path, timeout=0.01)  # WAL: readers never wait for a lock
        counts = [reader.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] for _ in range(200)]
        reader.close()
        assert counts == sorted(counts) and counts[-1] <= 50
        assert len(store.list_jobs(limit=None)) <= 50
    finally:
        stop.set()
        writer.join()


def test_writer_groups_many_jobs_into_one_commit_under_load(store: SqliteCheckpointStore) -> None:
    def burst(t: int) -> None:
        for i in range(500):
            store.save(snap(f"t{t}-{i % 100}", i))

    threads = [threading.Thread(target=burst, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(store.wait_durable(f"t{t}-99", seq=499, timeout=10) for t in range(8))
    stats = store.stats()
    assert stats.snapshots_received == 4000
    assert stats.snapshots_per_commit > 1
    assert stats.snapshots_committed + stats.snapshots_coalesced == 4000


def test_close_flushes_everything_queued(db_path: str) -> None:
    store = SqliteCheckpointStore(db_path)
    for i in range(2000):
        store.save(snap(f"j{i}", 1, status="completed"))
    assert store.close(timeout=10) is True
    with SqliteCheckpointStore(db_path) as reopened:
        assert len(reopened.list_jobs(limit=None)) == 2000


def test_snapshot_that_is_not_json_is_never_reported_durable(store: SqliteCheckpointStore) -> None:
    circular: dict[str, Any] = {}
    circular["self"] = circular
    store.save(snap("bad", 1, shared_data={"x": object()}))
    store.save(snap("loop", 1, shared_data=circular))
    store.save(snap("good", 1))
    assert store.wait_durable("good", timeout=5)
    assert store.wait_durable("bad", timeout=0.2) is False
    assert store.wait_durable("loop", timeout=0.2) is False
    assert store.get_job("bad") is None and store.get_job("loop") is None
    assert store.healthy


def test_corrupt_file_gives_a_one_line_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(StoreCorruptError) as info:
        SqliteCheckpointStore(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, StoreError)


def test_directory_in_place_of_the_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(StoreReadOnlyError, match="unable to open"):
        SqliteCheckpointStore(str(tmp_path))


def test_newer_schema_is_refused(db_path: str) -> None:
    SqliteCheckpointStore(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE store_meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(CheckpointStoreError, match="schema version 99 is newer"):
        SqliteCheckpointStore(db_path)


def test_read_only_database_makes_the_store_unhealthy(db_path: str) -> None:
    SqliteCheckpointStore(db_path).close()
    store = SqliteCheckpointStore(db_path, pragmas={"query_only": 1}, request_timeout=2)
    with pytest.raises(StoreReadOnlyError, match=r"jobs\.db"):
        store.claim("j1", "flow")
    store.save(snap("j1", 1))
    assert store.wait_durable("j1", timeout=0.3) is False
    assert not store.healthy
    assert isinstance(store.last_error, StoreReadOnlyError)
    # close() retries until its timeout, then reports that a snapshot was lost.
    assert store.close(timeout=0.3) is False


def test_locked_database_fails_requests_then_recovers(db_path: str) -> None:
    with SqliteCheckpointStore(db_path, busy_timeout_ms=50, request_timeout=5) as store:
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreLockedError, match="locked"):
            store.claim("j1", "flow")
        store.save(snap("j1", 1))
        assert store.wait_durable("j1", timeout=0.2) is False
        assert not store.healthy
        other.execute("ROLLBACK")
        other.close()
        assert store.wait_durable("j1", timeout=10)
        assert store.healthy and store.last_error is None
        assert store.claim("j2", "flow").created


def test_queued_claims_outlive_a_failed_transaction_and_keep_their_place(db_path: str) -> None:
    with SqliteCheckpointStore(db_path, busy_timeout_ms=50, request_timeout=5) as store:
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        queued = store.queue_claims([ClaimRequest("j1", "flow", "amqp:q", "k1", {"n": 1})])
        store.save(snap("j1", 1))
        plain = store.submit_claims([ClaimRequest("j2", "flow", "amqp:q", "k2")])
        with pytest.raises(StoreLockedError):  # a plain request fails with its transaction
            plain.result(timeout=10)
        assert not queued.done()  # ...a queued claim waits for the next one
        other.execute("ROLLBACK")
        other.close()
        assert [tuple(c) for c in queued.result(timeout=10)] == [("j1", True)]
        assert store.wait_durable("j1", timeout=10)
        row = store.get_job("j1")
        assert row is not None and (row.trigger, row.dedupe_key) == ("amqp:q", "k1")
        assert store.key_owners(["k1", "k2"]) == {"k1": "j1"}


def test_queued_claims_fail_only_when_the_store_closes_first(db_path: str) -> None:
    store = SqliteCheckpointStore(db_path, busy_timeout_ms=50)
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    queued = store.queue_claims([ClaimRequest("j1", "flow", None, "k1")])
    deadline = time.monotonic() + 10
    while store.healthy:  # the writer has tried and failed at least once
        assert time.monotonic() < deadline, "the writer never failed"
        time.sleep(0.01)
    assert not queued.done()
    assert store.close(timeout=0.3) is False
    with pytest.raises(StoreClosedError):
        queued.result(timeout=5)
    other.close()


def test_full_disk_keeps_snapshots_in_memory_until_space_returns(db_path: str) -> None:
    filler = "x" * 3000
    with SqliteCheckpointStore(db_path) as store:
        for i in range(40):
            store.save(snap(f"old{i}", 1, status="completed", blob=filler))
        assert store.wait_durable("old39", timeout=5)
    probe = sqlite3.connect(db_path)
    pages = probe.execute("PRAGMA page_count").fetchone()[0]
    probe.close()
    store = SqliteCheckpointStore(db_path, pragmas={"max_page_count": pages + 2}, request_timeout=2)
    try:
        for i in range(20):
            store.save(snap(f"new{i}", 1, blob=filler))
        assert store.wait_durable("new19", timeout=0.5) is False
        assert isinstance(store.last_error, StoreFullError) and not store.healthy
        with pytest.raises(StoreFullError, match=r"jobs\.db: database or disk is full"):
            store.claim("c1", "flow")
        # Space returns: another connection frees pages that the writer can reuse.
        admin = sqlite3.connect(db_path)
        admin.execute("DELETE FROM jobs WHERE job_id LIKE 'old%'")
        admin.commit()
        admin.close()
        assert store.wait_durable("new19", timeout=15)
        assert store.healthy
        assert len(store.list_jobs(status="running", limit=None)) == 20
    finally:
        assert store.close()


def test_retention_runs_in_the_background(db_path: str) -> None:
    with SqliteCheckpointStore(db_path) as store:
        store.save(snap("ancient", 1, status="completed", completed_at="2000-01-01T00:00:00Z"))
        assert store.wait_durable("ancient", timeout=5)
    with SqliteCheckpointStore(db_path, retention_days=1, prune_interval=0.05) as store:
        store.save(snap("fresh", 1, status="completed"))
        assert store.wait_durable("fresh", timeout=5)
        # The first maintenance pass runs right after open, in the writer's first transaction.
        store.claim("marker", "flow")
        assert store.get_job("ancient") is None
        assert store.get_job("fresh") is not None


def test_stored_state_round_trips_exactly(store: SqliteCheckpointStore) -> None:
    shared = {"f": 1795655414.0487344, "big": 2**70, "text": 'héllo ☃ "q"\n', "n": [None, True]}
    store.save(snap("j1", 1, shared_data=shared))
    assert store.wait_durable("j1", timeout=5)
    row = store.get_job("j1")
    assert row is not None and row.state == snap("j1", 1, shared_data=shared)


class _Job:
    """Stands in for a running job: the newest snapshot, and how often it was taken."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.seq = 0
        self.taken = 0

    def change(self, store: SqliteCheckpointStore) -> None:
        self.seq += 1
        store.save_deferred(self, self.seq)

    def to_dict(self) -> dict[str, Any]:
        self.taken += 1
        return snap(self.job_id, self.seq, status="completed" if self.seq >= 50 else "running")


def test_deferred_snapshots_are_taken_only_when_written(store: SqliteCheckpointStore) -> None:
    jobs = [_Job(f"d{i}") for i in range(20)]
    for _ in range(50):
        for job in jobs:
            job.change(store)
    assert all(store.wait_durable(job.job_id, seq=50, timeout=10) for job in jobs)
    stats = store.stats()
    taken = sum(job.taken for job in jobs)
    assert stats.snapshots_received == 1000
    assert taken == stats.snapshots_committed < 1000  # coalesced marks cost nothing
    for job in jobs:
        row = store.get_job(job.job_id)
        assert row is not None and row.status == "completed" and row.state["checkpoint_seq"] == 50


def test_a_deferred_snapshot_that_cannot_be_taken_is_never_reported_durable(
    store: SqliteCheckpointStore,
) -> None:
    class Vanished(_Job):
        def to_dict(self) -> dict[str, Any]:
            raise RuntimeError("job vanished")

    Vanished("broken").change(store)
    _Job("fine").change(store)
    assert store.wait_durable("fine", timeout=5)
    assert store.wait_durable("broken", timeout=0.2) is False
    assert store.get_job("broken") is None
    assert store.healthy


@pytest.mark.parametrize("count", [1, 255, 256, 257, 1000])
def test_a_group_is_written_with_few_statements(tmp_path: Path, count: int) -> None:
    # One statement per row would hand the GIL back and forth per row (see upsert_snapshots).
    path = str(tmp_path / "chunks.db")
    conn = open_write_connection(path, synchronous="normal", busy_timeout_ms=1000)
    migrate(conn, path)
    inserts: list[str] = []
    conn.set_trace_callback(lambda sql: inserts.append(sql) if "INSERT" in sql else None)
    rows = [snapshot_row(snap(f"c{i}", 1), "2026-11-26T00:00:00+00:00") for i in range(count)]
    conn.execute("BEGIN IMMEDIATE")
    upsert_snapshots(conn, rows)
    conn.execute("COMMIT")
    assert len(inserts) <= count // MAX_ROWS_PER_STATEMENT + MAX_ROWS_PER_STATEMENT.bit_length()
    stored = {r[0] for r in conn.execute("SELECT job_id FROM jobs")}
    assert stored == {f"c{i}" for i in range(count)}
    conn.close()


def test_items_queued_ahead_by_several_callers_are_written_at_once_and_answered_apart(
    db_path: str,
) -> None:
    conn = open_write_connection(db_path, synchronous="normal", busy_timeout_ms=5000)
    migrate(conn, db_path)
    writer = SnapshotWriter(conn, db_path, DurabilityTracker())
    writer.start()
    inside, release = threading.Event(), threading.Event()
    writes: list[list[str]] = []

    def write(_conn: sqlite3.Connection, items: list[str]) -> list[str]:
        writes.append(list(items))
        return [item.upper() for item in items]

    def hold(_conn: sqlite3.Connection) -> bool:
        inside.set()
        return release.wait(10)

    try:
        busy = writer.submit_call(hold)
        assert inside.wait(10)  # the writer is inside a transaction: both wait for the next
        first = writer.submit_ahead(["a", "b"], write)
        second = writer.submit_ahead(["c"], write)
        release.set()
        assert busy.result(timeout=10)
        assert first.result(timeout=10) == ["A", "B"] and second.result(timeout=10) == ["C"]
        assert writes == [["a", "b", "c"]]
    finally:
        release.set()
        writer.close(timeout=5)


def test_entry_params_of_every_claimed_job_stay_for_a_rerun(
    store: SqliteCheckpointStore, db_path: str
) -> None:
    # docs/upgrading-flows.md: a job that cannot resume is run again from its entry
    # params, read from job_entries. Snapshots replace the input, so keep it even
    # when the claim commits with the job's first snapshot.
    inside, release = threading.Event(), threading.Event()

    def hold(_conn: sqlite3.Connection) -> bool:
        inside.set()
        return release.wait(10)

    try:
        busy = store._writer.submit_call(hold)  # the next transaction gets all of the below
        assert inside.wait(10)
        claimed = store.queue_claims([ClaimRequest("a", "flow", None, None, {"order": 7})])
        store.save(snap("a", 1))
        release.set()
        assert busy.result(timeout=10)
        assert claimed.result(timeout=10)[0].created
    finally:
        release.set()
    assert store.wait_durable("a", timeout=5)
    query = "select entry_params from job_entries where job_id = 'a'"
    assert sqlite_utils.Database(db_path).execute(query).fetchall() == [('{"order":7}',)]


def test_a_writer_bug_fails_the_requests_it_had_taken_instead_of_leaving_them_hanging(
    db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(conn: sqlite3.Connection, rows: Any) -> None:
        raise RuntimeError("bug")

    store = SqliteCheckpointStore(db_path)
    deadline = time.monotonic() + 10
    while store.stats().commits < 1:  # the start-up maintenance transaction is done
        assert time.monotonic() < deadline
        time.sleep(0.01)
    monkeypatch.setattr("daemon.checkpoints.writer.upsert_snapshots", broken)
    queued = store.queue_claims([ClaimRequest("j1", "flow", None, "k1")])
    with pytest.raises(StoreClosedError):
        queued.result(timeout=10)
    assert not store.healthy
    assert store.close(timeout=1) is False
