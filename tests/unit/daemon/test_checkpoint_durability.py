"""DurabilityTracker and the SQLite error translation, without a database."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from daemon.checkpoints.durability import DurabilityTracker
from daemon.checkpoints.errors import (
    CheckpointStoreError,
    StoreCorruptError,
    StoreFullError,
    StoreLockedError,
    StoreReadOnlyError,
    translate_sqlite_error,
)
from daemon.errors import DaemonError, StoreError


def test_waiter_for_newest_saved_seq_ignores_older_commits() -> None:
    tracker = DurabilityTracker()
    tracker.note_saved("j", 1)
    tracker.note_saved("j", 2)
    fut = tracker.future("j")
    tracker.note_committed([("j", 1, False)])
    assert not fut.done()
    tracker.note_committed([("j", 2, False)])
    assert fut.result(timeout=1) is True


def test_waiter_for_a_job_not_saved_yet_takes_its_first_commit() -> None:
    tracker = DurabilityTracker()
    fut = tracker.future("later")
    tracker.note_committed([("later", 1, False)])
    assert fut.result(timeout=1) is True


def test_already_durable_seq_resolves_at_once() -> None:
    tracker = DurabilityTracker()
    tracker.note_committed([("j", 5, False)])
    assert tracker.future("j", seq=3).result(timeout=0) is True
    assert tracker.committed_seq("j") == 5


def test_finished_job_is_remembered_for_late_waiters() -> None:
    tracker = DurabilityTracker()
    tracker.note_saved("j", 4)
    tracker.note_committed([("j", 4, True)])
    assert tracker.wait("j", None, timeout=0) is True
    assert tracker.committed_seq("j") == 4


def test_a_forgotten_job_waits_for_the_commits_of_the_new_job_under_its_id() -> None:
    tracker = DurabilityTracker()
    tracker.note_saved("j", 4)
    tracker.note_committed([("j", 4, True)])
    tracker.forget("j")
    tracker.note_saved("j", 1)  # a new job with the same id: its first snapshot
    assert tracker.committed_seq("j") is None
    waiter = tracker.future("j")
    assert not waiter.done()
    tracker.note_committed([("j", 1, False)])
    assert waiter.result(timeout=0) is True


def test_wait_times_out_and_withdraws_its_waiter() -> None:
    tracker = DurabilityTracker()
    assert tracker.wait("j", 1, timeout=0.01) is False
    tracker.note_committed([("j", 1, False)])  # resolving nothing: no cancelled-future error


def test_cancelled_future_is_skipped_when_the_commit_arrives() -> None:
    tracker = DurabilityTracker()
    fut = tracker.future("j", 1)
    assert fut.cancel()
    tracker.note_committed([("j", 1, False)])
    assert fut.cancelled()


def test_close_resolves_waiters_false_and_later_futures_false() -> None:
    tracker = DurabilityTracker()
    fut = tracker.future("j", 1)
    done = threading.Event()
    fut.add_done_callback(lambda _: done.set())
    tracker.close()
    assert done.wait(1) and fut.result() is False
    assert tracker.future("other").result(timeout=0) is False


def _wait_all_in_thread(
    tracker: DurabilityTracker, jobs: list[str], timeout: float
) -> tuple[threading.Thread, list[set[str]]]:
    result: list[set[str]] = []
    thread = threading.Thread(target=lambda: result.append(tracker.wait_all(jobs, timeout)))
    thread.start()
    return thread, result


def test_wait_all_returns_when_every_job_is_durable() -> None:
    tracker = DurabilityTracker()
    tracker.note_committed([("early", 1, False)])
    tracker.note_saved("a", 2)
    thread, result = _wait_all_in_thread(tracker, ["early", "a", "b"], timeout=5)
    tracker.note_committed([("a", 1, False), ("b", 1, False)])  # a waits for seq 2
    thread.join(0.2)
    assert thread.is_alive()
    tracker.note_committed([("a", 2, True)])
    thread.join(5)
    assert result == [{"early", "a", "b"}]
    assert not tracker._waiters  # nothing left behind


def test_wait_all_times_out_with_the_durable_part_and_withdraws() -> None:
    tracker = DurabilityTracker()
    thread, result = _wait_all_in_thread(tracker, ["a", "b"], timeout=0.2)
    tracker.note_committed([("a", 1, False)])
    thread.join(5)
    assert result == [{"a"}]
    assert not tracker._waiters
    tracker.note_committed([("b", 1, False)])  # a late commit finds no waiter


def test_wait_all_ends_when_the_tracker_closes() -> None:
    tracker = DurabilityTracker()
    thread, result = _wait_all_in_thread(tracker, ["a"], timeout=30)
    tracker.close()
    thread.join(5)
    assert result == [set()]
    assert tracker.wait_all(["a"], timeout=0) == set()


@pytest.mark.parametrize(
    ("message", "code", "kind"),
    [
        ("database is locked", 5, StoreLockedError),
        ("attempt to write a readonly database", 8, StoreReadOnlyError),
        ("database disk image is malformed", 11, StoreCorruptError),
        ("database or disk is full", 13, StoreFullError),
        ("file is not a database", 26, StoreCorruptError),
        ("something else", 1, CheckpointStoreError),
    ],
)
def test_sqlite_errors_become_store_errors_naming_the_path(
    message: str, code: int, kind: type[CheckpointStoreError]
) -> None:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    error = translate_sqlite_error("/var/lib/jobs.db", exc)
    assert type(error) is kind
    assert str(error) == f"checkpoint store /var/lib/jobs.db: {message}"
    assert isinstance(error, StoreError) and isinstance(error, DaemonError)


def test_translation_falls_back_to_the_message_without_an_error_code() -> None:
    error = translate_sqlite_error("x.db", sqlite3.OperationalError("database is locked"))
    assert isinstance(error, StoreLockedError)
