"""MemoryCheckpointStore: the in-process twin of SqliteCheckpointStore, for tests.

Same API and semantics (dedupe, terminal rows never overwritten, retention, resume,
quarantine), with "durable" meaning "stored in this dict". Snapshots are JSON
round-tripped on save so that a non-JSON snapshot fails here as it would on disk.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any

from daemon.checkpoints.durability import DurabilityTracker
from daemon.checkpoints.errors import StoreClosedError
from daemon.checkpoints.records import (
    TERMINAL_STATUSES,
    UNFINISHED_STATUSES,
    Claim,
    ClaimRequest,
    JobRow,
    OutboxEntry,
    ResumeSummary,
    UnfinishedJob,
    WriterStats,
    error_text,
    next_resume_counts,
    stalled_jobs,
    utc_now_iso,
)
from daemon.checkpoints.resume import FlowLookup, Probation, default_registry, resume_with_probation
from daemon.json_text import dumps

__all__ = ["MemoryCheckpointStore"]


@dataclass
class _Outbox:
    entry: OutboxEntry
    created_at: str
    published: bool = False


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


class MemoryCheckpointStore:
    """Thread-safe in-memory CheckpointStore; every method mirrors SqliteCheckpointStore."""

    def __init__(self, *, retention_days: float = 30.0, max_resumes: int = 5) -> None:
        self.path = ":memory:"
        self.retention_days = retention_days
        self._max_resumes = max_resumes
        self._lock = threading.Lock()
        self._tracker = DurabilityTracker()
        self._jobs: dict[str, JobRow] = {}
        self._dedupe: dict[str, str] = {}
        self._entries: dict[str, dict[str, Any]] = {}
        self._resumes: dict[str, tuple[int, int]] = {}
        self._probe: str | None = None
        self._probation: Probation | None = None
        self._runs: dict[str, set[str]] = {}
        self._outbox: dict[str, _Outbox] = {}
        self._saved = 0
        self._closed = False

    # -- checkpointer -------------------------------------------------------

    def save_deferred(self, job_state: Any, seq: int) -> None:
        """See SqliteCheckpointStore.save_deferred; the twin takes the snapshot at once."""
        del seq  # the snapshot carries it
        self.save(job_state.to_dict())

    def save(self, snapshot: dict[str, Any]) -> None:
        """Store the snapshot (JSON round-tripped); it is durable on return."""
        state = json.loads(dumps(snapshot))
        job_id, seq = state["job_id"], int(state.get("checkpoint_seq", 0))
        self._tracker.note_saved(job_id, seq)
        now = utc_now_iso()
        status = str(state.get("status", "pending"))
        with self._lock:
            if self._closed:
                return
            old = self._jobs.get(job_id)
            ignored = old is not None and old.status in TERMINAL_STATUSES
            if not ignored:
                self._put(job_id, old, state, now)
        # Like the SQLite upsert, a snapshot after the terminal one is settled, not written.
        self._tracker.note_committed([(job_id, seq, status in TERMINAL_STATUSES)])

    def _put(self, job_id: str, old: JobRow | None, state: dict[str, Any], now: str) -> None:
        status = str(state.get("status", "pending"))
        completed = state.get("completed_at") or (now if status in TERMINAL_STATUSES else None)
        # Caller holds self._lock.
        self._jobs[job_id] = JobRow(
            job_id=job_id,
            flow_id=state.get("flow_id") or "",
            status=status,
            trigger=old.trigger if old else None,
            dedupe_key=old.dedupe_key if old else None,
            created_at=old.created_at if old else (state.get("created_at") or now),
            updated_at=now,
            completed_at=completed,
            error=error_text(state.get("error")),
            state=state,
        )
        self._saved += 1

    def wait_durable(
        self, job_id: str, seq: int | None = None, timeout: float | None = None
    ) -> bool:
        """See SqliteCheckpointStore.wait_durable."""
        return self._tracker.wait(job_id, seq, timeout)

    def durable_future_many(self, job_ids: Collection[str]) -> Future[set[str]]:
        """See SqliteCheckpointStore.durable_future_many."""
        return self._tracker.future_all(job_ids)

    def wait_durable_many(self, job_ids: Collection[str], timeout: float | None) -> set[str]:
        """See SqliteCheckpointStore.wait_durable_many."""
        return self._tracker.wait_all(job_ids, timeout)

    def reset_job(self, job_id: str) -> None:
        """See SqliteCheckpointStore.reset_job."""
        self._tracker.forget(job_id)

    def durable_future(self, job_id: str, seq: int | None = None) -> Future[bool]:
        """See SqliteCheckpointStore.durable_future."""
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
        """See SqliteCheckpointStore.claim."""
        params = json.loads(dumps(entry_params if entry_params is not None else {}))
        with self._lock:
            self._check_open()
            if dedupe_key is not None and dedupe_key in self._dedupe:
                return Claim(self._dedupe[dedupe_key], False)
            if job_id in self._jobs:
                return Claim(job_id, False)
            now = utc_now_iso()
            self._jobs[job_id] = JobRow(
                job_id, flow_id, "pending", trigger, dedupe_key, now, now, None, None, None
            )
            self._entries[job_id] = params
            if dedupe_key is not None:
                self._dedupe[dedupe_key] = job_id
            return Claim(job_id, True)

    def claim_many(self, claims: Sequence[ClaimRequest]) -> list[Claim]:
        """See SqliteCheckpointStore.claim_many."""
        return [self.claim(*request) for request in claims]

    def submit_claims(self, claims: Sequence[ClaimRequest]) -> Future[list[Claim]]:
        """See SqliteCheckpointStore.submit_claims (the twin answers at once)."""
        future: Future[list[Claim]] = Future()
        try:
            future.set_result(self.claim_many(claims))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def queue_claims(self, claims: Sequence[ClaimRequest]) -> Future[list[Claim]]:
        """See SqliteCheckpointStore.queue_claims (the twin answers at once)."""
        return self.submit_claims(claims)

    def key_owners(self, keys: Collection[str]) -> dict[str, str]:
        """See SqliteCheckpointStore.key_owners."""
        with self._lock:
            self._check_open()
            return {key: self._dedupe[key] for key in keys if key in self._dedupe}

    def mark_failed(self, job_id: str, reason: str) -> bool:
        """See SqliteCheckpointStore.mark_failed."""
        with self._lock:
            self._check_open()
            row = self._jobs.get(job_id)
            if row is None or row.status not in UNFINISHED_STATUSES:
                return False
            now = utc_now_iso()
            state = None
            if row.state is not None:
                error = {"type": "StoreError", "message": reason}
                state = {**row.state, "status": "failed", "completed_at": now, "error": error}
            self._jobs[job_id] = replace(
                row, status="failed", error=reason, updated_at=now, completed_at=now, state=state
            )
            return True

    def record_resumes(
        self, jobs: Sequence[tuple[str, int]], charge: Collection[str] | None = None
    ) -> dict[str, int]:
        """See SqliteCheckpointStore.record_resumes."""
        with self._lock:
            self._check_open()
            counts = next_resume_counts(jobs, self._resumes, charge)
            self._resumes.update(counts)
        return {job_id: count for job_id, (count, _) in counts.items()}

    def stalled_jobs(self, jobs: Sequence[tuple[str, int]]) -> set[str]:
        """See SqliteCheckpointStore.stalled_jobs."""
        with self._lock:
            return stalled_jobs(jobs, self._resumes)

    def set_probe(self, job_id: str | None) -> None:
        """See SqliteCheckpointStore.set_probe."""
        with self._lock:
            self._check_open()
            self._probe = job_id

    def probe(self) -> str | None:
        """See SqliteCheckpointStore.probe."""
        with self._lock:
            return self._probe

    def prune(self, now: datetime | None = None) -> int:
        """See SqliteCheckpointStore.prune."""
        if self.retention_days <= 0:
            return 0
        try:
            cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=self.retention_days)
        except OverflowError:
            cutoff = datetime.min.replace(tzinfo=timezone.utc)
        with self._lock:
            self._check_open()
            old = [
                r.job_id
                for r in self._jobs.values()
                if r.status in TERMINAL_STATUSES and _parse(r.completed_at or r.updated_at) < cutoff
            ]
            for job_id in old:
                row = self._jobs.pop(job_id)
                self._entries.pop(job_id, None)
                self._resumes.pop(job_id, None)
                if row.dedupe_key is not None:
                    self._dedupe.pop(row.dedupe_key, None)
                if job_id in self._outbox and self._outbox[job_id].published:
                    del self._outbox[job_id]
            for runs in self._runs.values():
                runs.difference_update({t for t in runs if _parse(t) < cutoff})
            return len(old)

    def claim_schedule_run(self, trigger_id: str, scheduled_at: str) -> bool:
        """See SqliteCheckpointStore.claim_schedule_run."""
        with self._lock:
            self._check_open()
            runs = self._runs.setdefault(trigger_id, set())
            if scheduled_at in runs:
                return False
            runs.add(scheduled_at)
            return True

    def add_outbox(
        self, job_id: str, reply_to: str, correlation_id: str | None, body: dict[str, Any]
    ) -> bool:
        """See SqliteCheckpointStore.add_outbox."""
        entry = OutboxEntry(job_id, reply_to, correlation_id, json.loads(dumps(body)))
        with self._lock:
            self._check_open()
            if job_id in self._outbox:
                return False
            self._outbox[job_id] = _Outbox(entry, utc_now_iso())
            return True

    def finish_outbox(self, job_id: str) -> bool:
        """See SqliteCheckpointStore.finish_outbox."""
        with self._lock:
            self._check_open()
            item = self._outbox.get(job_id)
            if item is None or item.published:
                return False
            item.published = True
            return True

    # -- reads ----------------------------------------------------------------

    def get_job(self, job_id: str) -> JobRow | None:
        """See SqliteCheckpointStore.get_job."""
        with self._lock:
            return self._jobs.get(job_id)

    def list_jobs(
        self, status: str | None = None, flow: str | None = None, limit: int | None = 100
    ) -> list[JobRow]:
        """See SqliteCheckpointStore.list_jobs."""
        with self._lock:
            rows = [
                r
                for r in self._jobs.values()
                if (status is None or r.status == status) and (flow is None or r.flow_id == flow)
            ]
        rows.sort(key=lambda r: r.job_id)
        rows.sort(key=lambda r: r.created_at, reverse=True)
        return rows if limit is None else rows[:limit]

    def oldest_pending_age(self, now: datetime | None = None) -> float | None:
        """See SqliteCheckpointStore.oldest_pending_age."""
        with self._lock:
            created = [r.created_at for r in self._jobs.values() if r.status in UNFINISHED_STATUSES]
        if not created:
            return None
        now = now or datetime.now(timezone.utc)
        return max(0.0, (now - min(_parse(c) for c in created)).total_seconds())

    def unfinished_jobs(self) -> list[UnfinishedJob]:
        """See SqliteCheckpointStore.unfinished_jobs."""
        with self._lock:
            rows = [r for r in self._jobs.values() if r.status in UNFINISHED_STATUSES]
            rows.sort(key=lambda r: (r.created_at, r.job_id))
            return [
                UnfinishedJob(r.job_id, r.flow_id, r.state, self._entries.get(r.job_id))
                for r in rows
            ]

    def last_schedule_run(self, trigger_id: str) -> str | None:
        """See SqliteCheckpointStore.last_schedule_run."""
        with self._lock:
            runs = self._runs.get(trigger_id)
            return max(runs, key=_parse) if runs else None

    def pending_outbox(self, limit: int = 100) -> list[OutboxEntry]:
        """See SqliteCheckpointStore.pending_outbox."""
        with self._lock:
            items = [o for o in self._outbox.values() if not o.published]
        items.sort(key=lambda o: o.created_at)
        return [o.entry for o in items[:limit]]

    # -- lifecycle and health -------------------------------------------------

    def resume_all(self, runtime: Any, registry: FlowLookup | None = None) -> ResumeSummary:
        """See SqliteCheckpointStore.resume_all."""
        summary, self._probation = resume_with_probation(
            self, runtime, registry if registry is not None else default_registry(), self._probation
        )
        return summary

    @property
    def max_resumes(self) -> int:
        """See SqliteCheckpointStore.max_resumes."""
        return self._max_resumes

    @property
    def healthy(self) -> bool:
        """True until close()."""
        return not self._closed

    @property
    def last_error(self) -> Exception | None:
        """Always None: memory never fails."""
        return None

    def stats(self) -> WriterStats:
        """One "commit" per snapshot."""
        with self._lock:
            return WriterStats(self._saved, self._saved, self._saved, 0, 0)

    def close(self, timeout: float | None = 30.0) -> bool:
        """Stop accepting writes; idempotent. Always True (nothing can be lost)."""
        with self._lock:
            self._closed = True
        if self._probation is not None:
            self._probation.stop(timeout)
        self._tracker.close()
        return True

    def __enter__(self) -> MemoryCheckpointStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(self.path, "store is closed")
