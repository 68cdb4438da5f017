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

from daemon.checkpoints.sqlite import SqliteCheckpointStore
from daemon.checkpoints.wal_checkpointer import BACKSTOP_PAGES, WalCheckpointer


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        threading.Event().wait(0.01)


def snap(job_id: str) -> dict[str, Any]:
    return {"job_id": job_id, "flow_id": "flow", "status": "running", "checkpoint_seq": 1}


def test_the_writer_leaves_checkpoints_to_the_thread_and_the_wal_stays_bounded(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    with SqliteCheckpointStore(str(path)) as store:
        writer_setting = store._call(
            lambda conn: conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        )
        assert writer_setting == BACKSTOP_PAGES
        page_size = store._call(lambda conn: conn.execute("PRAGMA page_size").fetchone()[0])
        largest_wal = 0
        for i in range(1500):  # one transaction each
            store.save(snap(f"job-{i}") | {"blob": "x" * 2000})
            assert store.wait_durable(f"job-{i}", timeout=5)
            largest_wal = max(largest_wal, (tmp_path / "jobs.db-wal").stat().st_size)
        wait_for(lambda: store._wal.progressed > 0)
        assert largest_wal <= (BACKSTOP_PAGES + 100) * page_size
        # The database file itself holds the rows: the checkpoints really copied pages.
        wait_for(lambda: path.stat().st_size > 1500 * 2000)
    assert not (tmp_path / "jobs.db-wal").exists()  # the last connection removed it


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
