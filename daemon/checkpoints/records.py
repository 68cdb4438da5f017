"""Plain records the stores return, and the mapping from a snapshot to a ``jobs`` row."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

__all__ = [
    "RESUME_SEQ_SLACK",
    "TERMINAL_STATUSES",
    "UNFINISHED_STATUSES",
    "Claim",
    "JobRow",
    "OutboxEntry",
    "ResumeSummary",
    "UnfinishedJob",
    "WriterStats",
    "error_text",
    "made_progress",
    "next_resume_counts",
    "stalled_jobs",
    "utc_now_iso",
]

#: Statuses after which a job never changes again (prunable by retention).
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
#: Checkpoints the engine writes by itself when it resumes (or starts) a job. A job has
#: made progress since its last resume only if its checkpoint_seq moved further than this.
RESUME_SEQ_SLACK = 1
#: Statuses that resume_all() picks up.
UNFINISHED_STATUSES: frozenset[str] = frozenset({"pending", "running"})


def utc_now_iso() -> str:
    """The current time as ISO-8601 UTC, the format of every timestamp column."""
    return datetime.now(timezone.utc).isoformat()


def error_text(error: Any) -> str | None:
    """One line for the ``jobs.error`` column from a snapshot's ``error`` field."""
    if error is None:
        return None
    if isinstance(error, dict):
        kind = error.get("type") or "Error"
        message = error.get("message") or ""
        return f"{kind}: {message}" if message else str(kind)
    return str(error)


class Claim(NamedTuple):
    """Result of claim(): the job that owns the key, and whether this call created it."""

    job_id: str
    created: bool


class ClaimRequest(NamedTuple):
    """One job to claim with ``claim_many`` (the arguments of ``claim``)."""

    job_id: str
    flow_id: str
    trigger: str | None = None
    dedupe_key: str | None = None
    entry_params: dict[str, Any] | None = None


@dataclass(frozen=True)
class JobRow:
    """One row of the ``jobs`` table.

    ``state`` is the newest committed snapshot (``JobState.to_dict()`` form), or
    ``None`` for a job that was claimed but has not been checkpointed yet.
    """

    job_id: str
    flow_id: str
    status: str
    trigger: str | None
    dedupe_key: str | None
    created_at: str
    updated_at: str
    completed_at: str | None
    error: str | None
    state: dict[str, Any] | None


def made_progress(seq: int, last_resume_seq: int) -> bool:
    """Whether a job checkpointed real work since it was last resumed at ``last_resume_seq``."""
    return seq > last_resume_seq + RESUME_SEQ_SLACK


def next_resume_counts(
    jobs: Sequence[tuple[str, int]],
    previous: Mapping[str, tuple[int, int]],
    charge: Collection[str] | None,
) -> dict[str, tuple[int, int]]:
    """New ``(stalled resumes charged, seq)`` per job, given ``previous`` of the same.

    A job that progressed since its last resume (or was never resumed) starts again at
    1. A stalled job is charged one more resume if it is in ``charge`` (None: every
    stalled job): the daemon charges only the job it was probing when it died.
    """
    counts: dict[str, tuple[int, int]] = {}
    for job_id, seq in jobs:
        prev = previous.get(job_id)
        if prev is None or made_progress(seq, prev[1]):
            counts[job_id] = (1, seq)
        else:
            charged = charge is None or job_id in charge
            counts[job_id] = (prev[0] + 1 if charged else prev[0], seq)
    return counts


def stalled_jobs(
    jobs: Sequence[tuple[str, int]], previous: Mapping[str, tuple[int, int]]
) -> set[str]:
    """Jobs resumed before that have not checkpointed real work since."""
    return {
        job_id
        for job_id, seq in jobs
        if (prev := previous.get(job_id)) is not None and not made_progress(seq, prev[1])
    }


@dataclass(frozen=True)
class UnfinishedJob:
    """What resume needs to know about one pending/running job."""

    job_id: str
    flow_id: str
    state: dict[str, Any] | None
    entry_params: dict[str, Any] | None

    @property
    def seq(self) -> int:
        """The checkpoint_seq of the stored snapshot; 0 before the job's first checkpoint."""
        if self.state is None:
            return 0
        return int(self.state.get("checkpoint_seq", 0))


@dataclass(frozen=True)
class OutboxEntry:
    """A reply_to result waiting to be published; ``body`` is the result dict."""

    job_id: str
    reply_to: str
    correlation_id: str | None
    body: dict[str, Any]


@dataclass
class ResumeSummary:
    """The outcome of resume_all(): resumed job ids, and failed ids with a reason each."""

    resumed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WriterStats:
    """Counters of the writer since the store opened."""

    commits: int
    snapshots_received: int
    snapshots_committed: int
    snapshots_coalesced: int
    failed_attempts: int

    @property
    def snapshots_per_commit(self) -> float:
        """Average number of job snapshots written per transaction."""
        return self.snapshots_committed / self.commits if self.commits else 0.0
