"""The WAL goes back into the database file on its own thread, never inside a commit."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daemon.checkpoints.schema import open_write_connection
from daemon.checkpoints.sqlite import SqliteCheckpointStore
from daemon.checkpoints.wal_checkpointer import BACKSTOP_PAGES, WalCheckpointer


def reached(condition: Callable[[], bool], timeout: float) -> bool:
    """True once ``condition()`` holds, False if it did not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        threading.Event().wait(0.01)
    return True


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    assert reached(condition, timeout), "condition not met in time"


def snap(job_id: str) -> dict[str, Any]:
    return {"job_id": job_id, "flow_id": "flow", "status": "running", "checkpoint_seq": 1}


def wal_pages(path: Path, page_size: int) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size // page_size if wal.exists() else 0


def test_the_thread_copies_the_wal_back_and_once_idle_the_wal_starts_over(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    with SqliteCheckpointStore(str(path)) as store:
        writer_setting = store._call(
            lambda conn: conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        )
        assert writer_setting == BACKSTOP_PAGES
        page_size = store._call(lambda conn: conn.execute("PRAGMA page_size").fetchone()[0])
        for i in range(200):  # one transaction each, well below the writer's backstop
            store.save(snap(f"job-{i}") | {"blob": "x" * 2000})
            assert store.wait_durable(f"job-{i}", timeout=5)
        assert wal_pages(path, page_size) < BACKSTOP_PAGES / 2
        # Only this thread can have copied the rows into the database file...
        wait_for(lambda: path.stat().st_size > 200 * 2000)
        wait_for(lambda: store._wal.progressed > 0)  # counted once the pragma returns
        # ...and once it caught up (the writer idle), the next transaction starts the
        # WAL over, unless it begins while one of the thread's checkpoints holds a read
        # lock: then a later one does. (Under steady load it rarely catches up: see the
        # next test.)
        frames_before = store._wal._last_seen[0]
        for seq in range(2, 12):
            wait_for(lambda: store._wal._last_seen[1] == store._wal._last_seen[0])
            store.save(snap("one-more") | {"checkpoint_seq": seq})
            assert store.wait_durable("one-more", timeout=5)
            if reached(lambda: store._wal._last_seen[0] < frames_before, timeout=3):
                break
        else:
            pytest.fail("the WAL never started over")
    assert not (tmp_path / "jobs.db-wal").exists()  # the last connection removed it


def test_a_saturated_writer_keeps_the_wal_bounded(tmp_path: Path) -> None:
    """Commits back to back leave the thread's checkpoints no room to catch up; the
    writer's own checkpoint at the backstop still starts the WAL over. (``normal``:
    with ``full`` the writer's fsyncs leave the gaps a checkpoint needs.)"""
    synchronous = "normal"
    path = tmp_path / "jobs.db"
    SqliteCheckpointStore(str(path)).close()  # the schema
    writer = open_write_connection(
        str(path),
        synchronous=synchronous,
        busy_timeout_ms=5000,
        pragmas={"wal_autocheckpoint": BACKSTOP_PAGES},
    )
    page_size = writer.execute("PRAGMA page_size").fetchone()[0]
    checkpointer = WalCheckpointer(str(path), synchronous=synchronous, busy_timeout_ms=5000)
    checkpointer.start()
    largest = 0
    try:
        end = time.monotonic() + 5
        i = 0
        while time.monotonic() < end:  # commits back to back, as fast as SQLite goes
            writer.execute(  # a thousand jobs' rows, rewritten over and over
                "INSERT INTO jobs (job_id, flow_id, status, created_at, updated_at, state)"
                " VALUES (?, 'f', 'running', 'now', 'now', ?)"
                " ON CONFLICT (job_id) DO UPDATE SET state = excluded.state",
                (f"job-{i % 1000}", f"{i}" * 600),
            )
            i += 1
            largest = max(largest, wal_pages(path, page_size))
    finally:
        checkpointer.close()
        writer.close()
    assert checkpointer.progressed > 0
    # Past the backstop, at most what is written while one checkpoint of the thread's
    # runs is added (without the backstop it passed 400,000 pages in 5 s here).
    assert largest <= BACKSTOP_PAGES * 3, f"{largest} pages after {i} commits"


class FailingConnection:
    """Stands in for a connection whose checkpoints fail (an I/O error, say)."""

    def __init__(self) -> None:
        self.calls = 0
        self.closed = threading.Event()

    def execute(self, sql: str) -> Any:
        self.calls += 1
        raise sqlite3.OperationalError("disk I/O error")

    def close(self) -> None:
        self.closed.set()


def test_failing_checkpoints_are_logged_once_a_minute_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = FailingConnection()
    checkpointer = WalCheckpointer(
        "/data/jobs.db",
        synchronous="normal",
        busy_timeout_ms=100,
        connect=lambda: conn,  # type: ignore[arg-type,return-value]
        busy_interval=0.001,
        idle_interval=0.001,
    )
    with caplog.at_level(logging.WARNING, logger="daemon.checkpoints.wal_checkpointer"):
        checkpointer.start()
        wait_for(lambda: conn.calls >= 5)
        checkpointer.close()
    assert conn.closed.is_set()
    assert checkpointer.checkpoints == 0
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["WAL checkpoint of /data/jobs.db failed: disk I/O error"]


def test_a_connection_that_cannot_be_opened_leaves_checkpoints_to_the_writer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse() -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    checkpointer = WalCheckpointer(
        "/data/jobs.db", synchronous="normal", busy_timeout_ms=100, connect=refuse
    )
    with caplog.at_level(logging.WARNING, logger="daemon.checkpoints.wal_checkpointer"):
        checkpointer.start()
        wait_for(lambda: bool(caplog.records))
        checkpointer.close()
    assert caplog.records[0].getMessage() == (
        "WAL checkpoints of /data/jobs.db stay with the writer:"
        " cannot open a connection (unable to open database file)"
    )
