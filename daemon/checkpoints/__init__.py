"""Durable job checkpoints: the CheckpointStore protocol and its two implementations.

``SqliteCheckpointStore`` (``daemon.checkpoints.sqlite``) is the real one;
``MemoryCheckpointStore`` (``daemon.checkpoints.memory``) is its in-process twin.
Either works as a Runtime checkpointer on its own::

    store = SqliteCheckpointStore("var/routilux.db")
    runtime = Runtime(checkpointer=store)
    store.resume_all(runtime)        # continue what a crash interrupted

The careful path for one message: ``claim(job_id, flow, trigger, dedupe_key=message_id,
entry_params=body)``; if created, ``runtime.exec(flow, body, job_id=job_id)``; then
``await asyncio.wrap_future(store.durable_future(job_id))`` and ack. The daemon's
faster path checks ``key_owners`` first, starts the job, and queues its claim with
``queue_claims`` (written ahead of the job's snapshots); see ``daemon.launcher``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from daemon.checkpoints.errors import (
    CheckpointStoreError,
    StoreClosedError,
    StoreCorruptError,
    StoreError,
    StoreFullError,
    StoreLockedError,
    StoreReadOnlyError,
    StoreUnavailableError,
)
from daemon.checkpoints.records import (
    Claim,
    ClaimRequest,
    JobRow,
    OutboxEntry,
    ResumeSummary,
    UnfinishedJob,
    WriterStats,
)

__all__ = [
    "CheckpointStore",
    "CheckpointStoreError",
    "Claim",
    "ClaimRequest",
    "JobRow",
    "OutboxEntry",
    "ResumeSummary",
    "StoreClosedError",
    "StoreCorruptError",
    "StoreError",
    "StoreFullError",
    "StoreLockedError",
    "StoreReadOnlyError",
    "StoreUnavailableError",
    "UnfinishedJob",
    "WriterStats",
]


@runtime_checkable
class CheckpointStore(Protocol):
    """What the daemon and the CLI use of a job store. All methods are thread-safe.

    ``save`` is the Runtime's checkpointer hook and never blocks on disk. The other
    writes block until committed and raise StoreError subclasses. Reads see only
    committed data.
    """

    path: str

    def save(self, snapshot: dict[str, Any]) -> None:
        """Queue a ``JobState.to_dict()`` snapshot (newest checkpoint_seq per job wins)."""

    def save_deferred(self, job_state: Any, seq: int) -> None:
        """The Runtime's deferred form of ``save``: ``job_state.to_dict()`` is taken later."""

    def wait_durable(
        self, job_id: str, seq: int | None = None, timeout: float | None = None
    ) -> bool:
        """Block until the job is durable up to ``seq`` (default: newest saved)."""

    def wait_durable_many(self, job_ids: Collection[str], timeout: float | None) -> set[str]:
        """Block until each job is durable (newest saved); returns the durable ones."""

    def durable_future(self, job_id: str, seq: int | None = None) -> Future[bool]:
        """A Future resolved True when durable, False if the store closes first."""

    def claim(
        self,
        job_id: str,
        flow_id: str,
        trigger: str | None = None,
        dedupe_key: str | None = None,
        entry_params: dict[str, Any] | None = None,
    ) -> Claim:
        """Durably insert a pending job unless its id or dedupe_key exists."""

    def claim_many(self, claims: Sequence[ClaimRequest]) -> list[Claim]:
        """``claim`` for many jobs at once (one transaction), results in order."""

    def submit_claims(self, claims: Sequence[ClaimRequest]) -> Future[list[Claim]]:
        """``claim_many`` without blocking; the future resolves once committed."""

    def durable_future_many(self, job_ids: Collection[str]) -> Future[set[str]]:
        """A future of the jobs that are durable, once all are (fewer if closing)."""

    def reset_job(self, job_id: str) -> None:
        """Forget an earlier job with this id before a new one starts under it."""

    def queue_claims(self, claims: Sequence[ClaimRequest]) -> Future[list[Claim]]:
        """Claims of jobs started before they commit: written ahead of their snapshots."""

    def key_owners(self, keys: Collection[str]) -> dict[str, str]:
        """Committed owners of dedupe keys (key -> job_id); one thread at a time."""

    def mark_failed(self, job_id: str, reason: str) -> bool:
        """Fail an unfinished job with a reason."""

    def record_resumes(
        self, jobs: Sequence[tuple[str, int]], charge: Collection[str] | None = None
    ) -> dict[str, int]:
        """Record resumes per (job_id, checkpoint_seq); stalled resumes charged so far."""

    def stalled_jobs(self, jobs: Sequence[tuple[str, int]]) -> set[str]:
        """Which of ``jobs`` were resumed before and made no progress since."""

    def set_probe(self, job_id: str | None) -> None:
        """Durably record (or clear) the job being resumed on probation."""

    def probe(self) -> str | None:
        """The job that was on probation when the store was last written, if any."""

    def prune(self, now: datetime | None = None) -> int:
        """Delete finished jobs older than the retention period."""

    def claim_schedule_run(self, trigger_id: str, scheduled_at: str) -> bool:
        """Record one timer run; False if that (trigger, time) already ran."""

    def last_schedule_run(self, trigger_id: str) -> str | None:
        """The latest recorded scheduled time of a trigger."""

    def add_outbox(
        self, job_id: str, reply_to: str, correlation_id: str | None, body: dict[str, Any]
    ) -> bool:
        """Durably queue a reply_to result."""

    def finish_outbox(self, job_id: str) -> bool:
        """Mark a queued reply published."""

    def pending_outbox(self, limit: int = 100) -> list[OutboxEntry]:
        """Replies not yet published."""

    def get_job(self, job_id: str) -> JobRow | None:
        """One job, or None."""

    def list_jobs(
        self, status: str | None = None, flow: str | None = None, limit: int | None = 100
    ) -> list[JobRow]:
        """Jobs, newest first."""

    def oldest_pending_age(self, now: datetime | None = None) -> float | None:
        """Age in seconds of the oldest pending/running job."""

    def unfinished_jobs(self) -> list[UnfinishedJob]:
        """Every pending/running job."""

    def resume_all(self, runtime: Any, registry: Any = None) -> ResumeSummary:
        """Resume (or fail with a reason) every unfinished job on ``runtime``."""

    @property
    def max_resumes(self) -> int:
        """Quarantine threshold."""

    @property
    def healthy(self) -> bool:
        """False while writes fail (the daemon reports unready and stops acking)."""

    @property
    def last_error(self) -> Exception | None:
        """The current write failure, or None."""

    def stats(self) -> WriterStats:
        """Writer counters."""

    def close(self, timeout: float | None = 30.0) -> bool:
        """Flush and close; True if nothing was lost."""
