"""SqliteCheckpointStore: durable jobs in one SQLite file (WAL), through sqlite-utils.

Writes go through one writer thread (see ``writer.py``); reads open short-lived
read-only connections, so the CLI, metrics and resume can query while jobs run.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any, Protocol, TypeVar

from daemon.checkpoints import queries, statements
from daemon.checkpoints.durability import DurabilityTracker
from daemon.checkpoints.errors import StoreClosedError, translate_sqlite_error
from daemon.checkpoints.records import (
    Claim,
    ClaimRequest,
    JobRow,
    OutboxEntry,
    ResumeSummary,
    UnfinishedJob,
    WriterStats,
)
from daemon.checkpoints.resume import FlowLookup, Probation, default_registry, resume_with_probation
from daemon.checkpoints.schema import migrate, open_read_connection, open_write_connection
from daemon.checkpoints.wal_checkpointer import BACKSTOP_PAGES, WalCheckpointer
from daemon.checkpoints.writer import SnapshotWriter

__all__ = ["SqliteCheckpointStore"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Snapshottable(Protocol):
    """What ``save_deferred`` needs of a ``routilux.JobState``."""

    job_id: str

    def to_dict(self) -> dict[str, Any]: ...


class SqliteCheckpointStore:
    """Checkpointer and job store backed by SQLite.

    Opening creates or migrates the file and starts the writer thread; ``close()``
    (or the context manager) flushes and stops it. Every method is thread-safe.
    ``save`` never blocks on disk; ``claim``, ``mark_failed``, ``prune`` and the
    other writes block until their transaction commits (``request_timeout``).
    Raises CheckpointStoreError subclasses (locked, read-only, corrupt, full), each
    naming ``path``.
    """

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "normal",
        retention_days: float = 30.0,
        max_resumes: int = 5,
        busy_timeout_ms: int = 5000,
        prune_interval: float = 3600.0,
        request_timeout: float = 30.0,
        pragmas: Mapping[str, int | str] | None = None,
    ) -> None:
        self.path = str(path)
        self._probation: Probation | None = None
        self.synchronous = synchronous
        self.retention_days = retention_days
        self._max_resumes = max_resumes
        self._busy_timeout_ms = busy_timeout_ms
        self._request_timeout = request_timeout
        self._tracker = DurabilityTracker()
        conn = open_write_connection(
            self.path,
            synchronous=synchronous,
            busy_timeout_ms=busy_timeout_ms,
            # WAL pages go back to the file on a thread of their own (WalCheckpointer);
            # the writer's automatic checkpoint is only the backstop.
            pragmas={"wal_autocheckpoint": BACKSTOP_PAGES, **(pragmas or {})},
        )
        try:
            migrate(conn, self.path)
        except BaseException:
            conn.close()
            raise
        self._writer = SnapshotWriter(
            conn,
            self.path,
            self._tracker,
            maintenance=self._prune_in_transaction,
            maintenance_interval=prune_interval,
        )
        self._writer.start()
        self._wal = WalCheckpointer(
            self.path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms
        )
        self._wal.start()
        self._closed = False
        self._key_reader: sqlite3.Connection | None = None
        self._key_reader_lock = threading.Lock()

    # -- checkpointer -------------------------------------------------------

    def save(self, snapshot: dict[str, Any]) -> None:
        """Queue a ``JobState.to_dict()`` snapshot; returns at once (no disk I/O).

        The dict must not be mutated afterwards. After close() it is dropped with a warning.
        """
        self._tracker.note_saved(snapshot["job_id"], int(snapshot.get("checkpoint_seq", 0)))
        if not self._writer.submit(snapshot):
            logger.warning("job %s: snapshot after close() dropped", snapshot["job_id"])

    def save_deferred(self, job_state: Snapshottable, seq: int) -> None:
        """The Runtime's faster form of ``save`` (docs/architecture.md): the job changed to
        checkpoint ``seq``, and the writer calls ``job_state.to_dict()`` when it writes
        the job's row, so only the snapshots that are committed are ever built.
        """
        job_id = job_state.job_id
        self._tracker.note_saved(job_id, seq)
        if not self._writer.submit_deferred(job_id, seq, job_state.to_dict):
            logger.warning("job %s: snapshot after close() dropped", job_id)

    def wait_durable(
        self, job_id: str, seq: int | None = None, timeout: float | None = None
    ) -> bool:
        """Block until the job's snapshot ``seq`` (default: newest saved) is committed.

        Returns False on timeout or if the store closes first.
        """
        return self._tracker.wait(job_id, seq, timeout)

    def durable_future_many(self, job_ids: Collection[str]) -> Future[set[str]]:
        """A future of ``wait_durable_many``'s answer, resolved once all are durable
        (or with fewer if the store closes first); cancel it to stop waiting."""
        return self._tracker.future_all(job_ids)

    def wait_durable_many(self, job_ids: Collection[str], timeout: float | None) -> set[str]:
        """Block until each job's newest saved snapshot is committed, or ``timeout`` passes.

        Returns the jobs that are durable. One wait for a batch of jobs started together.
        """
        return self._tracker.wait_all(job_ids, timeout)

    def reset_job(self, job_id: str) -> None:
        """Forget what the store remembers of an earlier job with this id; call it
        before starting a new job. A keyed job's id repeats once retention pruned the
        earlier row, and the new job's durability must wait for its own commits.
        """
        self._tracker.forget(job_id)

    def durable_future(self, job_id: str, seq: int | None = None) -> Future[bool]:
        """Like wait_durable but returns a Future (``await asyncio.wrap_future(f)``)."""
        return self._tracker.future(job_id, seq)

    # -- synchronous writes ---------------------------------------------------

    def claim(
        self,
        job_id: str,
        flow_id: str,
        trigger: str | None = None,
        dedupe_key: str | None = None,
        entry_params: dict[str, Any] | None = None,
    ) -> Claim:
        """Durably record a new pending job before it starts, unless it already exists.

        Returns ``Claim(job_id, created=True)`` for a new job, or the existing job's id
        with ``created=False`` when ``job_id`` or ``dedupe_key`` is already stored. A
        claimed job that never gets a snapshot is started from ``entry_params`` by
        resume_all(). Blocks until committed.
        """
        job, created = self._call(
            lambda c: statements.claim_job(c, job_id, flow_id, trigger, dedupe_key, entry_params)
        )
        return Claim(job, created)

    def claim_many(self, claims: Sequence[ClaimRequest]) -> list[Claim]:
        """``claim`` for many jobs in one transaction; results in the order of ``claims``.

        A later claim with the key (or id) of an earlier one in the same call is a
        duplicate of it. Blocks until committed; cheaper than claim() per job.
        """
        if not claims:
            return []
        return self._call(lambda c: _claims(c, claims))

    def submit_claims(self, claims: Sequence[ClaimRequest]) -> Future[list[Claim]]:
        """``claim_many`` without blocking: the future resolves once committed.

        The daemon's loop awaits it (``asyncio.wrap_future``) instead of blocking a
        thread. Cancelling it before the writer's next transaction withdraws it.
        """
        if self._closed:
            raise StoreClosedError(self.path, "store is closed")
        return self._writer.submit_call(lambda c: _claims(c, claims))

    def queue_claims(self, claims: Sequence[ClaimRequest]) -> Future[list[Claim]]:
        """Claims for jobs that start before their claims commit; the future resolves
        at the commit.

        For a caller that already knows the keys are free (``key_owners`` plus its own
        record of claims not yet committed): each claim is written before any
        snapshot saved after this call, in the same transaction or an earlier one,
        and a failed transaction keeps it for the next (it fails only if the store
        closes first). ``created`` is False for an id or key that was taken after all.
        """
        if self._closed:
            raise StoreClosedError(self.path, "store is closed")
        return self._writer.submit_ahead(list(claims), _claims)

    def key_owners(self, keys: Collection[str]) -> dict[str, str]:
        """The committed jobs owning these dedupe keys: key -> job_id.

        Uses one read connection kept open for it: call from one thread at a time
        (the daemon's loop, before starting jobs for deliveries).
        """
        with self._key_reader_lock:  # uncontended but for close()
            if self._closed:
                raise StoreClosedError(self.path, "store is closed")
            if self._key_reader is None:
                self._key_reader = open_read_connection(self.path, self._busy_timeout_ms)
            try:
                return statements.key_owners(self._key_reader, keys)
            except sqlite3.Error as exc:
                raise translate_sqlite_error(self.path, exc) from exc

    def mark_failed(self, job_id: str, reason: str) -> bool:
        """Fail an unfinished job with ``reason``; False if it is unknown or already final."""
        return self._call(lambda c: statements.mark_failed(c, job_id, reason))

    def record_resumes(
        self, jobs: Sequence[tuple[str, int]], charge: Collection[str] | None = None
    ) -> dict[str, int]:
        """Record a resume per ``(job_id, seq)``; return stalled resumes charged so far.

        A stalled job is charged only if it is in ``charge`` (None: every stalled job);
        see ``records.next_resume_counts``.
        """
        return self._call(lambda c: statements.record_resumes(c, jobs, charge))

    def stalled_jobs(self, jobs: Sequence[tuple[str, int]]) -> set[str]:
        """Which of ``jobs`` were resumed before and made no progress since."""
        return self._call(lambda c: statements.stalled(c, jobs))

    def set_probe(self, job_id: str | None) -> None:
        """Durably record (or clear) the job being resumed on probation."""
        self._call(lambda c: statements.set_probe(c, job_id))

    def probe(self) -> str | None:
        """The job that was on probation when the store was last written, if any."""
        return self._call(statements.get_probe)

    def prune(self, now: datetime | None = None) -> int:
        """Delete finished jobs older than retention_days (relative to ``now``); returns count.

        ``retention_days = 0`` keeps every job forever.
        """
        if self.retention_days <= 0:
            return 0
        return self._call(lambda c: statements.prune_finished(c, self._cutoff(now)))

    def claim_schedule_run(self, trigger_id: str, scheduled_at: str) -> bool:
        """Record a timer run (trigger id + scheduled ISO time); False if it already ran."""
        return self._call(lambda c: statements.claim_schedule_run(c, trigger_id, scheduled_at))

    def add_outbox(
        self, job_id: str, reply_to: str, correlation_id: str | None, body: dict[str, Any]
    ) -> bool:
        """Durably queue the reply of ``job_id``; False if one was already queued."""
        return self._call(
            lambda c: statements.add_outbox(c, job_id, reply_to, correlation_id, body)
        )

    def finish_outbox(self, job_id: str) -> bool:
        """Mark the reply of ``job_id`` published."""
        return self._call(lambda c: statements.finish_outbox(c, job_id))

    # -- reads ----------------------------------------------------------------

    def get_job(self, job_id: str) -> JobRow | None:
        """The committed row of ``job_id``, or None."""
        with self._reader() as conn:
            return queries.get_job(conn, job_id)

    def list_jobs(
        self, status: str | None = None, flow: str | None = None, limit: int | None = 100
    ) -> list[JobRow]:
        """Committed jobs, newest first, optionally filtered by status and flow."""
        with self._reader() as conn:
            return queries.list_jobs(conn, status, flow, limit)

    def oldest_pending_age(self, now: datetime | None = None) -> float | None:
        """Seconds since the oldest pending/running job was created, or None if there is none."""
        with self._reader() as conn:
            created = queries.oldest_unfinished_created_at(conn)
        if created is None:
            return None
        now = now or datetime.now(timezone.utc)
        return max(0.0, (now - datetime.fromisoformat(created)).total_seconds())

    def unfinished_jobs(self) -> list[UnfinishedJob]:
        """Every pending/running job, oldest first, including snapshots saved but still queued.

        Runs inside the writer's next transaction, which also commits what was queued.
        """
        return self._call(queries.unfinished_jobs)

    def last_schedule_run(self, trigger_id: str) -> str | None:
        """The latest scheduled time recorded by claim_schedule_run for ``trigger_id``."""
        with self._reader() as conn:
            return queries.last_schedule_run(conn, trigger_id)

    def pending_outbox(self, limit: int = 100) -> list[OutboxEntry]:
        """Replies queued by add_outbox and not yet marked published, oldest first."""
        with self._reader() as conn:
            return queries.pending_outbox(conn, limit)

    # -- lifecycle and health -------------------------------------------------

    def resume_all(self, runtime: Any, registry: FlowLookup | None = None) -> ResumeSummary:
        """Resume every pending/running job on ``runtime`` (see ``resume.resume_jobs``)."""
        summary, self._probation = resume_with_probation(
            self, runtime, registry if registry is not None else default_registry(), self._probation
        )
        return summary

    @property
    def max_resumes(self) -> int:
        """Consecutive resumes without progress after which a job is quarantined."""
        return self._max_resumes

    @property
    def healthy(self) -> bool:
        """False while the last write transaction failed (the writer keeps retrying)."""
        return self._writer.last_error is None and not self._closed

    @property
    def last_error(self) -> Exception | None:
        """Why the store is unhealthy, or None."""
        return self._writer.last_error

    def stats(self) -> WriterStats:
        """Writer counters: commits, snapshots committed, snapshots per commit…"""
        return self._writer.stats()

    def pragmas(self) -> dict[str, Any]:
        """journal_mode, synchronous, busy_timeout as the write connection sees them."""
        names = ("journal_mode", "synchronous", "busy_timeout")
        return self._call(lambda c: {n: c.execute(f"PRAGMA {n}").fetchone()[0] for n in names})

    def close(self, timeout: float | None = 30.0) -> bool:
        """Commit everything queued (retrying up to ``timeout``), then close; idempotent.

        Returns True if nothing was lost.
        """
        with self._key_reader_lock:
            self._closed = True
            if self._key_reader is not None:
                # Before the writer: the last connection to close checkpoints the WAL
                # and removes it, which a read-only one cannot do.
                self._key_reader.close()
                self._key_reader = None
        self._wal.close(timeout)
        if self._probation is not None:
            self._probation.stop(timeout)
        return self._writer.close(timeout)

    def __enter__(self) -> SqliteCheckpointStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ----------------------------------------------------------

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreClosedError(self.path, "store is closed")
        return self._writer.call(fn, self._request_timeout)

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        conn = open_read_connection(self.path, self._busy_timeout_ms)
        try:
            yield conn
        except sqlite3.Error as exc:
            raise translate_sqlite_error(self.path, exc) from exc
        finally:
            conn.close()

    def _cutoff(self, now: datetime | None) -> str:
        now = now or datetime.now(timezone.utc)
        try:
            return (now - timedelta(days=self.retention_days)).isoformat()
        except OverflowError:  # retention longer than the calendar: keep everything
            return datetime.min.replace(tzinfo=timezone.utc).isoformat()

    def _prune_in_transaction(self, conn: sqlite3.Connection) -> None:
        if self.retention_days <= 0:
            return
        removed = statements.prune_finished(conn, self._cutoff(None))
        if removed:
            logger.info(
                "retention: pruned %d finished jobs older than %s days",
                removed,
                self.retention_days,
            )


def _claims(conn: sqlite3.Connection, claims: Sequence[ClaimRequest]) -> list[Claim]:
    return [Claim(job, created) for job, created in statements.claim_jobs(conn, claims)]
