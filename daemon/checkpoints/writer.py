"""The writer thread: the only user of the write connection.

It takes whatever accumulated since its last transaction (the newest snapshot of
each job, plus synchronous requests such as claims) and writes it all in one
``BEGIN IMMEDIATE … COMMIT``, so under load one commit carries many jobs. Only after
COMMIT returns are the snapshots reported durable. If a transaction fails (disk
full, locked, read-only…) the snapshots stay queued in memory (still newest per
job), the store reports unhealthy, requests fail with the error, and the writer
retries with exponential backoff until it succeeds or the store is closed.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from typing import Any, TypeVar

from daemon.checkpoints.durability import DurabilityTracker
from daemon.checkpoints.errors import (
    CheckpointStoreError,
    StoreClosedError,
    StoreUnavailableError,
    translate_sqlite_error,
)
from daemon.checkpoints.records import TERMINAL_STATUSES, WriterStats, utc_now_iso
from daemon.checkpoints.statements import snapshot_row, upsert_snapshots

__all__ = ["SnapshotWriter"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: First retry delay after a failed transaction, in seconds; doubles up to BACKOFF_MAX.
BACKOFF_MIN = 0.05
#: Longest pause between retries of a failing transaction, in seconds.
BACKOFF_MAX = 2.0


@dataclass
class _Call:
    fn: Callable[[sqlite3.Connection], Any]
    future: Future[Any]


@dataclass
class _Ahead:
    """Items written before the snapshots of a transaction (see ``submit_ahead``)."""

    items: list[Any]
    write: Callable[[sqlite3.Connection, list[Any]], list[Any]]
    future: Future[list[Any]]
    #: The future is running (set once: a failed transaction's items are written again).
    taken: bool = False


class _Deferred:
    """A job changed to ``seq``; its snapshot is taken only when the group is written."""

    __slots__ = ("seq", "take_snapshot")

    def __init__(self, seq: int, take_snapshot: Callable[[], dict[str, Any]]) -> None:
        self.seq = seq
        self.take_snapshot = take_snapshot


#: What waits to be written for a job: its newest snapshot, or the means to take it.
_Entry = dict[str, Any] | _Deferred


def _seq(entry: _Entry) -> int:
    if isinstance(entry, _Deferred):
        return entry.seq
    return int(entry.get("checkpoint_seq", 0))


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite may already have rolled back by itself (e.g. on SQLITE_FULL).
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            logger.exception("rollback failed")


class SnapshotWriter:
    """Owns the write connection and the thread that commits snapshot groups.

    ``submit`` and ``call`` are thread-safe. ``maintenance(conn)`` (e.g. retention)
    runs inside a transaction at start and then every ``maintenance_interval`` seconds.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: str,
        tracker: DurabilityTracker,
        *,
        maintenance: Callable[[sqlite3.Connection], None] | None = None,
        maintenance_interval: float = 3600.0,
    ) -> None:
        self._conn = conn
        self._path = path
        self._tracker = tracker
        self._maintenance = maintenance
        self._maintenance_interval = maintenance_interval
        self._next_maintenance = time.monotonic() if maintenance else float("inf")
        # Held via the bare lock (a C call) on the hot path; the condition wraps the same lock.
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._pending: dict[str, _Entry] = {}
        self._calls: list[_Call] = []
        self._ahead: list[_Ahead] = []
        self._stopping = False
        self._idle = False  # the writer waits for work (only then does submit() notify)
        self._deadline: float | None = None
        self._wake_gen = 0
        self._backoff = BACKOFF_MIN
        self._last_error: CheckpointStoreError | None = None
        self._counts = {"commits": 0, "received": 0, "committed": 0, "coalesced": 0, "failed": 0}
        self._thread = threading.Thread(target=self._run, name="checkpoint-writer", daemon=True)

    # -- public -------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    @property
    def last_error(self) -> CheckpointStoreError | None:
        """The error of the last failed transaction, or None once one succeeds again."""
        return self._last_error

    def submit(self, snapshot: dict[str, Any]) -> bool:
        """Queue a snapshot, replacing an older queued one of the same job; never blocks on I/O.

        Returns False (and drops it) if the writer is stopping.
        """
        return self._queue(snapshot["job_id"], _seq(snapshot), snapshot)

    def submit_deferred(
        self, job_id: str, seq: int, take_snapshot: Callable[[], dict[str, Any]]
    ) -> bool:
        """Like submit, but the snapshot is taken by the writer when it writes the group.

        ``take_snapshot()`` must be thread-safe and return a snapshot with a
        ``checkpoint_seq`` of at least ``seq``. Returns False if the writer is stopping.
        """
        return self._queue(job_id, seq, _Deferred(seq, take_snapshot))

    def _queue(self, job_id: str, seq: int, entry: _Entry) -> bool:
        with self._lock:
            if self._stopping:
                return False
            self._counts["received"] += 1
            previous = self._pending.get(job_id)
            if previous is not None:
                self._counts["coalesced"] += 1
                if _seq(previous) > seq:
                    return True
                if isinstance(previous, _Deferred) and isinstance(entry, _Deferred):
                    previous.seq = seq  # it takes the newest snapshot anyway
                    return True
            self._pending[job_id] = entry
            if self._idle:  # a busy writer picks it up with its next group anyway
                self._cv.notify()
        return True

    def submit_call(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        """Queue ``fn(conn)`` for the writer's next transaction; never blocks.

        The future gets fn's result once the transaction commits (or its error).
        Cancelling it before the transaction starts withdraws the request. Raises
        StoreClosedError if the store is closing.
        """
        fut: Future[T] = Future()
        with self._lock:
            if self._stopping:
                raise StoreClosedError(self._path, "store is closed")
            self._calls.append(_Call(fn, fut))
            self._cv.notify()
        return fut

    def submit_ahead(
        self,
        items: list[Any],
        write: Callable[[sqlite3.Connection, list[Any]], list[Any]],
    ) -> Future[list[Any]]:
        """Queue ``items`` to be written before the snapshots of the next transaction.

        So they precede every snapshot submitted after this call (e.g. the claims of
        jobs that are already running). One ``write(conn, items)`` per transaction
        writes everything queued with that ``write``, and must return one result per
        item, in order; the future gets this call's share once committed. A failed
        transaction keeps the items for the next one: the future fails only if the
        store closes first (or ``write`` itself has a bug). Never blocks; raises
        StoreClosedError if the store is closing.
        """
        fut: Future[list[Any]] = Future()
        with self._lock:
            if self._stopping:
                raise StoreClosedError(self._path, "store is closed")
            self._ahead.append(_Ahead(list(items), write, fut))
            self._cv.notify()
        return fut

    def call(self, fn: Callable[[sqlite3.Connection], T], timeout: float | None) -> T:
        """Run ``fn(conn)`` inside the writer's next transaction and return its result.

        Blocks until that transaction commits. Raises the CheckpointStoreError of a failed
        transaction, StoreUnavailableError after ``timeout`` seconds (the request is
        then withdrawn and never runs), StoreClosedError if the store is closing.
        """
        fut = self.submit_call(fn)
        try:
            return fut.result(timeout)
        except FutureTimeoutError:
            if not fut.cancel():
                return fut.result()  # already inside a transaction: it finishes soon
            reason = f": {self._last_error.detail}" if self._last_error else ""
            raise StoreUnavailableError(
                self._path, f"request timed out after {timeout}s{reason}"
            ) from None

    def stats(self) -> WriterStats:
        """A consistent copy of the writer's counters."""
        with self._lock:
            c = dict(self._counts)
        return WriterStats(c["commits"], c["received"], c["committed"], c["coalesced"], c["failed"])

    def close(self, timeout: float | None) -> bool:
        """Flush what is queued (retrying until ``timeout``), stop and close the connection.

        Returns True if everything queued was committed. Idempotent.
        """
        with self._lock:
            if not self._stopping:
                self._stopping = True
                self._deadline = None if timeout is None else time.monotonic() + timeout
            self._wake_gen += 1
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(None if timeout is None else timeout + 1.0)
        with self._lock:
            return not self._thread.is_alive() and not self._has_work()

    def _has_work(self) -> bool:
        return bool(self._pending or self._calls or self._ahead)

    # -- writer thread ------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._step():
                pass
        except Exception as exc:  # a bug: stay unhealthy for good rather than die silently
            logger.exception("checkpoint writer for %s crashed", self._path)
            with self._lock:
                self._stopping = True
                self._last_error = CheckpointStoreError(self._path, f"writer crashed: {exc!r}")
        finally:
            self._finish()

    def _finish(self) -> None:
        with self._lock:
            lost, calls, ahead = len(self._pending), self._calls, list(self._ahead)
            self._calls = []  # items queued ahead stay listed: close() reports them lost
        if lost:
            logger.error(
                "checkpoint store %s closed with %d uncommitted snapshots", self._path, lost
            )
        closed = StoreClosedError(self._path, "store is closed")
        for future in [c.future for c in calls] + [a.future for a in ahead]:
            # A request a crashed transaction had taken is running (or even answered);
            # one not taken yet may have been withdrawn (cancelled) meanwhile.
            if future.done():
                continue
            if future.running() or future.set_running_or_notify_cancel():
                future.set_exception(closed)
        self._tracker.close()
        self._conn.close()

    def _step(self) -> bool:
        """One transaction; returns False when the thread should end."""
        with self._lock:
            self._wait_for_work()
            batch, self._pending = self._pending, {}
            calls, self._calls = self._calls, []
            ahead, self._ahead = self._ahead, []
        maintenance = time.monotonic() >= self._next_maintenance
        if batch or calls or ahead or maintenance:
            try:
                committed = self._commit(batch, ahead, calls, maintenance)
            except BaseException:  # a bug: put the requests back, so _finish() fails them
                with self._lock:
                    self._ahead[:0] = ahead
                    self._calls[:0] = calls
                raise
            if not committed:
                self._requeue(batch, ahead)
                return self._pause_after_failure()
            self._backoff = BACKOFF_MIN
        with self._lock:
            return not (self._stopping and not self._has_work())

    def _wait_for_work(self) -> None:
        while not (self._has_work() or self._stopping):
            remaining = self._next_maintenance - time.monotonic()
            if remaining <= 0:
                return
            self._idle = True
            self._cv.wait(min(remaining, 3600.0))
            self._idle = False

    def _pause_after_failure(self) -> bool:
        delay, self._backoff = self._backoff, min(self._backoff * 2, BACKOFF_MAX)
        with self._lock:
            if self._stopping and self._deadline is not None:
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    return False
                delay = min(delay, remaining)
            gen = self._wake_gen
            # New requests or close() end the pause; new snapshots do not (they just queue).
            self._cv.wait_for(lambda: bool(self._calls) or self._wake_gen != gen, delay)
        return True

    def _requeue(self, batch: dict[str, _Entry], ahead: list[_Ahead]) -> None:
        with self._lock:
            self._ahead[:0] = [c for c in ahead if not c.future.done()]
            for job_id, entry in batch.items():
                newer = self._pending.get(job_id)
                if newer is None or _seq(newer) < _seq(entry):
                    self._pending[job_id] = entry

    def _encode(
        self, batch: dict[str, _Entry], now: str
    ) -> tuple[list[tuple[Any, ...]], list[tuple[str, int, bool]]]:
        rows: list[tuple[Any, ...]] = []
        done: list[tuple[str, int, bool]] = []
        for job_id, entry in batch.items():
            try:
                snapshot = entry.take_snapshot() if isinstance(entry, _Deferred) else entry
                rows.append(snapshot_row(snapshot, now))
            except Exception:
                # Not plain JSON, (against the checkpointer contract) mutated while being
                # encoded, or the job could not be snapshotted. Never reported durable;
                # the job stays at its last commit.
                logger.exception("job %s: snapshot cannot be encoded; dropped", job_id)
                continue
            done.append((job_id, _seq(snapshot), snapshot.get("status") in TERMINAL_STATUSES))
        return rows, done

    def _commit(
        self, batch: dict[str, _Entry], ahead: list[_Ahead], calls: list[_Call], maintenance: bool
    ) -> bool:
        rows, done = self._encode(batch, utc_now_iso())
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                outcomes = self._write_ahead(ahead)
                # Then snapshots, so requests in the same group read what was saved before them.
                upsert_snapshots(self._conn, rows)
                outcomes += [o for c in calls if (o := self._run_call(c)) is not None]
                if maintenance:
                    self._run_maintenance()
                self._conn.execute("COMMIT")
            except BaseException:
                _rollback(self._conn)
                raise
        except sqlite3.Error as exc:
            self._failed(translate_sqlite_error(self._path, exc), [c.future for c in calls])
            return False
        self._succeeded(len(rows), maintenance)
        for fut, ok, value in outcomes:
            fut.set_result(value) if ok else fut.set_exception(value)
        self._tracker.note_committed(done)
        return True

    def _run_maintenance(self) -> None:
        if self._maintenance is None:
            return
        try:
            self._maintenance(self._conn)
        except sqlite3.Error:
            raise
        except Exception:  # a maintenance bug must not stop checkpointing
            logger.exception("checkpoint store maintenance failed on %s", self._path)

    def _write_ahead(self, ahead: list[_Ahead]) -> list[tuple[Future[Any], bool, Any]]:
        """One ``write`` per kind for all items queued ahead; each future's outcome."""
        by_write: dict[Any, list[_Ahead]] = {}
        for entry in ahead:
            if entry.taken or entry.future.set_running_or_notify_cancel():
                entry.taken = True
                by_write.setdefault(entry.write, []).append(entry)
        outcomes: list[tuple[Future[Any], bool, Any]] = []
        for write, entries in by_write.items():
            try:
                results = write(self._conn, [item for e in entries for item in e.items])
            except sqlite3.Error:
                raise  # the transaction fails; the items stay queued for the next one
            except Exception as exc:  # a bug in write: its requests fail, not the others
                outcomes += [(e.future, False, exc) for e in entries]
                continue
            start = 0
            for e in entries:
                outcomes.append((e.future, True, results[start : start + len(e.items)]))
                start += len(e.items)
        return outcomes

    def _run_call(self, call: _Call) -> tuple[Future[Any], bool, Any] | None:
        if not call.future.set_running_or_notify_cancel():
            return None
        try:
            return call.future, True, call.fn(self._conn)
        except sqlite3.IntegrityError as exc:
            return call.future, False, translate_sqlite_error(self._path, exc)
        except sqlite3.Error:
            call.future.set_exception(CheckpointStoreError(self._path, "transaction aborted"))
            raise
        except Exception as exc:  # a request's own bug fails that request only
            return call.future, False, exc

    def _failed(self, error: CheckpointStoreError, futures: list[Future[Any]]) -> None:
        with self._lock:
            self._counts["failed"] += 1
            first = self._last_error is None
            self._last_error = error
        if first:
            logger.warning("checkpoint writes failing, will retry: %s", error)
        for fut in futures:
            # Requests of the failed transaction fail with it (withdrawn ones stay cancelled).
            if not fut.done():
                fut.set_exception(error)

    def _succeeded(self, committed: int, maintenance: bool) -> None:
        with self._lock:
            self._counts["commits"] += 1
            self._counts["committed"] += committed
            recovered = self._last_error is not None
            self._last_error = None
        if maintenance:
            self._next_maintenance = time.monotonic() + self._maintenance_interval
        if recovered:
            logger.warning("checkpoint writes recovered on %s", self._path)
