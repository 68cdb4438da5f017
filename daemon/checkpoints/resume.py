"""Resume every unfinished job of a store on a Runtime, failing the ones that cannot run.

A job is resumed from its newest snapshot (``runtime.exec(flow, job_state=…)``), or
started from its claimed entry params if it was claimed but never checkpointed. It
is marked failed instead, with a one-line reason, when its flow is not registered,
when the engine rejects the snapshot (the flow changed incompatibly), or when it has
been resumed more than ``max_resumes`` times in a row without progress, i.e. its
checkpoint_seq never moved past the one checkpoint the engine writes on resume (a
poison job that kills the process every time it runs). Only the stalled jobs that
could have been running when the process died are charged, so jobs queued behind a
poison job are not quarantined with it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from daemon.checkpoints.records import ResumeSummary, UnfinishedJob
from routilux.job_state import JobState
from routilux.monitoring.flow_registry import FlowRegistry

__all__ = ["FlowLookup", "ResumableStore", "default_registry", "resume_jobs"]

logger = logging.getLogger(__name__)


class FlowLookup(Protocol):
    """The part of FlowRegistry that resume uses."""

    def get_by_name(self, name: str) -> Any: ...


class ResumableStore(Protocol):
    """The store primitives resume is built on (both stores provide them)."""

    @property
    def max_resumes(self) -> int: ...

    def unfinished_jobs(self) -> list[UnfinishedJob]: ...

    def record_resumes(
        self, jobs: Sequence[tuple[str, int]], charge_first: int | None = None
    ) -> dict[str, int]: ...

    def mark_failed(self, job_id: str, reason: str) -> bool: ...


def default_registry() -> FlowLookup:
    """The process-wide FlowRegistry, where the daemon's flows are registered."""
    registry: FlowLookup = FlowRegistry.get_instance()
    return registry


def resume_jobs(store: ResumableStore, runtime: Any, registry: FlowLookup) -> ResumeSummary:
    """Resume or fail every pending/running job of ``store`` on ``runtime``.

    Resume attempts are recorded durably before any job starts, so a crash during
    the resume itself still counts toward quarantine. Raises what ``runtime.exec``
    raises other than ValueError/KeyError/TypeError (e.g. the runtime is shut down).
    """
    summary = ResumeSummary()
    runnable: list[tuple[UnfinishedJob, Any]] = []
    for job in store.unfinished_jobs():
        flow = registry.get_by_name(job.flow_id)
        if flow is None:
            summary.failed[job.job_id] = f"flow {job.flow_id!r} is not registered"
        else:
            runnable.append((job, flow))
    # Only jobs that could have been running when the process died are charged a stalled
    # resume: the pool starts work FIFO and jobs are resumed oldest first every time.
    pool = int(getattr(runtime, "thread_pool_size", 1))
    counts = store.record_resumes([(job.job_id, job.seq) for job, _ in runnable], pool)
    for job, flow in runnable:
        attempts = counts.get(job.job_id, 1)
        if attempts > store.max_resumes:
            summary.failed[job.job_id] = (
                f"quarantined: resumed {attempts - 1} times without progress"
                f" (checkpoint_seq {job.seq})"
            )
            continue
        reason = _start(runtime, job, flow)
        if reason is None:
            summary.resumed.append(job.job_id)
        else:
            summary.failed[job.job_id] = reason
    for job_id, reason in summary.failed.items():
        store.mark_failed(job_id, reason)
        logger.warning("job %s not resumed: %s", job_id, reason)
    if summary.resumed:
        logger.info("resumed %d unfinished jobs", len(summary.resumed))
    return summary


def _start(runtime: Any, job: UnfinishedJob, flow: Any) -> str | None:
    """Hand one job to the runtime; a one-line reason if the engine refuses it."""
    try:
        if job.state is None:
            runtime.exec(job.flow_id, job.entry_params or {}, job_id=job.job_id)
        else:
            runtime.exec(job.flow_id, job_state=JobState.from_dict(job.state))
    except (ValueError, KeyError, TypeError) as exc:
        return f"cannot resume{_flow_change(job, flow)}: {type(exc).__name__}: {exc}"
    return None


def _flow_change(job: UnfinishedJob, flow: Any) -> str:
    old = (job.state or {}).get("flow_fingerprint") or ""
    new = flow.fingerprint() if hasattr(flow, "fingerprint") else ""
    if old and new and old != new:
        return f" (flow {job.flow_id!r} changed since the snapshot)"
    return ""
