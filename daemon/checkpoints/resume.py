"""Resume every unfinished job of a store on a Runtime, failing the ones that cannot run.

A job is resumed from its newest snapshot (``runtime.exec(flow, job_state=…)``), or
started from its claimed entry params if it was claimed but never checkpointed. It
is marked failed instead, with a one-line reason, when its flow is not registered,
when the engine rejects the snapshot (the flow changed incompatibly), or when it is
quarantined as a poison job.

Finding the poison job. A job is *stalled* when it was resumed before and has not
checkpointed real work since (its checkpoint_seq never moved past the one checkpoint
the engine writes on resume). Stalled jobs are suspects, so they are not started
together: a :class:`Probation` thread starts them one at a time, durably recording
the one it is starting (the *probe*) and waiting until it checkpoints real work
before starting the next. If the process dies meanwhile, the next start knows the
culprit exactly: only the probe is charged a stalled resume, and a probe charged more
than ``max_resumes`` times is quarantined (failed, reason says so). Jobs that were
merely queued beside it are never charged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any, Protocol

from daemon.checkpoints.records import ResumeSummary, UnfinishedJob
from routilux.job_state import JobState
from routilux.monitoring.flow_registry import FlowRegistry

__all__ = [
    "FlowLookup",
    "Probation",
    "ResumableStore",
    "default_registry",
    "resume_jobs",
    "resume_with_probation",
]

logger = logging.getLogger(__name__)

#: Seconds a job on probation may take to checkpoint real work before the next
#: stalled job is started anyway.
PROBATION_TIMEOUT = 120.0
#: A resumed job's first activation commits at its stored seq + this (the engine
#: checkpoints once on resume, then once per activation).
_FIRST_WORK_SEQ = 2


class FlowLookup(Protocol):
    """The part of FlowRegistry that resume uses."""

    def get_by_name(self, name: str) -> Any: ...


class ResumableStore(Protocol):
    """The store primitives resume is built on (both stores provide them)."""

    @property
    def max_resumes(self) -> int: ...

    def unfinished_jobs(self) -> list[UnfinishedJob]: ...

    def stalled_jobs(self, jobs: Sequence[tuple[str, int]]) -> set[str]: ...

    def record_resumes(
        self, jobs: Sequence[tuple[str, int]], charge: Collection[str] | None = None
    ) -> dict[str, int]: ...

    def set_probe(self, job_id: str | None) -> None: ...

    def probe(self) -> str | None: ...

    def durable_future(self, job_id: str, seq: int | None = None) -> Future[bool]: ...

    def mark_failed(self, job_id: str, reason: str) -> bool: ...


def default_registry() -> FlowLookup:
    """The process-wide FlowRegistry, where the daemon's flows are registered."""
    registry: FlowLookup = FlowRegistry.get_instance()
    return registry


def resume_jobs(
    store: ResumableStore, runtime: Any, registry: FlowLookup
) -> tuple[ResumeSummary, list[tuple[UnfinishedJob, Any]]]:
    """Resume or fail every pending/running job of ``store`` on ``runtime``.

    Returns the summary and the stalled jobs held for :class:`Probation` (listed as
    resumed: they start one at a time). Failures and resume counts are written before
    any job starts, so a job that kills the process cannot hide its own quarantine.
    Raises what ``runtime.exec`` raises other than ValueError/KeyError/TypeError.
    """
    summary = ResumeSummary()
    runnable: list[tuple[UnfinishedJob, Any]] = []
    for job in store.unfinished_jobs():
        flow = registry.get_by_name(job.flow_id)
        if flow is None:
            summary.failed[job.job_id] = f"flow {job.flow_id!r} is not registered"
        else:
            runnable.append((job, flow))
    culprit = store.probe()
    pairs = [(job.job_id, job.seq) for job, _ in runnable]
    stalled = store.stalled_jobs(pairs)
    counts = store.record_resumes(pairs, charge={culprit} if culprit else set())
    start_now: list[tuple[UnfinishedJob, Any]] = []
    held: list[tuple[UnfinishedJob, Any]] = []
    for job, flow in runnable:
        attempts = counts.get(job.job_id, 1)
        if attempts > store.max_resumes:
            summary.failed[job.job_id] = (
                f"quarantined: resumed {attempts - 1} times without progress"
                f" (checkpoint_seq {job.seq})"
            )
        else:
            (held if job.job_id in stalled else start_now).append((job, flow))
    for job_id, reason in summary.failed.items():
        store.mark_failed(job_id, reason)
        logger.warning("job %s not resumed: %s", job_id, reason)
    if not held:
        store.set_probe(None)
    for job, flow in start_now:
        refused = _start(runtime, job, flow)
        if refused is None:
            summary.resumed.append(job.job_id)
        else:
            summary.failed[job.job_id] = refused
            store.mark_failed(job.job_id, refused)
            logger.warning("job %s not resumed: %s", job.job_id, refused)
    summary.resumed.extend(job.job_id for job, _ in held)
    if summary.resumed:
        logger.info(
            "resumed %d unfinished jobs (%d stalled ones one at a time)",
            len(summary.resumed),
            len(held),
        )
    return summary, held


def resume_with_probation(
    store: ResumableStore, runtime: Any, registry: FlowLookup, previous: Probation | None
) -> tuple[ResumeSummary, Probation | None]:
    """``resume_jobs``, then a Probation for the held jobs (replacing ``previous``).

    The store keeps the returned Probation and stops it when it closes.
    """
    summary, held = resume_jobs(store, runtime, registry)
    if previous is not None:
        previous.stop()
    return summary, Probation(store, runtime, held) if held else None


class Probation:
    """Starts stalled jobs one at a time, each durably recorded as the probe first.

    Owned by the store that resumed them; ``stop`` ends it (the jobs not yet started
    stay unfinished in the store and are resumed by the next start).
    """

    def __init__(
        self,
        store: ResumableStore,
        runtime: Any,
        jobs: list[tuple[UnfinishedJob, Any]],
        timeout: float = PROBATION_TIMEOUT,
    ) -> None:
        self._store = store
        self._runtime = runtime
        self._jobs = jobs
        self._timeout = timeout
        self._cancel: Future[bool] = Future()
        self._thread = threading.Thread(target=self._run, name="routilux-probation", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Start no further job; wait up to ``timeout`` for the thread. Idempotent."""
        if not self._cancel.done():
            self._cancel.set_result(True)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            for job, flow in self._jobs:
                if self._cancel.done():
                    return
                self._probe(job, flow)
            if not self._cancel.done():
                self._store.set_probe(None)
        except Exception:  # store closed or runtime stopped: the rest resume next start
            logger.warning("probation ended early", exc_info=True)

    def _probe(self, job: UnfinishedJob, flow: Any) -> None:
        self._store.set_probe(job.job_id)
        reason = _start(self._runtime, job, flow)
        if reason is not None:
            self._store.mark_failed(job.job_id, reason)
            logger.warning("job %s not resumed: %s", job.job_id, reason)
            return
        progress = self._store.durable_future(job.job_id, job.seq + _FIRST_WORK_SEQ)
        wait([progress, self._cancel], self._timeout, return_when=FIRST_COMPLETED)


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
