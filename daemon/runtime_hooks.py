"""Observe jobs through the checkpointer seam (docs/architecture.md).

:class:`JobTracker` wraps the store's checkpointer: every snapshot is forwarded
to the store first, then inspected for what the daemon cares about — a job's
start, each committed activation and its terminal status — to feed metrics,
log one line per job start/end, and wake loop code waiting for a job to end
(acks in ``on_complete`` mode, ``reply_to`` results, timer ``max_instances``).

``save`` runs on Runtime threads while the job's lock is held, so it only
updates small in-memory records and hands terminal events to the loop through
the :class:`~daemon.bridge.Bridge`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from daemon.bridge import Bridge
from daemon.job_log import JobEvent, JobLogWriter
from routilux.job_state import JobState

logger = logging.getLogger(__name__)

#: Trigger shown for jobs resumed from the store (their original trigger is in ``jobs``).
RESUMED = "resume"
#: Statuses after which a job never changes again.
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


class Checkpointer(Protocol):
    """What the Runtime calls (docs/architecture.md, checkpointer protocol)."""

    def save(self, snapshot: dict[str, Any]) -> None: ...

    def save_deferred(self, job_state: JobState, seq: int) -> None: ...


class JobMetrics(Protocol):
    """The part of :class:`daemon.metrics.Metrics` the tracker feeds."""

    def job_started(self, flow: str) -> None: ...

    def job_resumed(self, flow: str) -> None: ...

    def job_finished(self, flow: str, status: str, duration: float) -> None: ...

    def activation(self, flow: str, routine: str, outcome: str, duration: float) -> None: ...


@dataclass
class _JobRecord:
    """What the tracker remembers of one live job."""

    flow: str
    trigger: str
    seen: bool = False
    activations: int = 0


@dataclass
class _Waiters:
    """Loop futures waiting for jobs to end; touched only on the loop."""

    futures: dict[str, list[asyncio.Future[dict[str, Any]]]] = field(default_factory=dict)


class JobTracker:
    """A checkpointer that forwards to the store and reports job lifecycle.

    Thread-safe. Loop-side methods (:meth:`wait_terminal`) must be called on the
    bridge's loop.
    """

    def __init__(
        self,
        store: Checkpointer,
        metrics: JobMetrics,
        bridge: Bridge,
        on_resumed_end: Callable[[str], None] | None = None,
    ) -> None:
        """``on_resumed_end(job_id)`` is called on the loop when a resumed job ends."""
        self._on_resumed_end = on_resumed_end
        self._store = store
        self._metrics = metrics
        self._bridge = bridge
        self._lock = threading.Lock()
        self._jobs: dict[str, _JobRecord] = {}
        self._triggers: dict[str, str] = {}
        self._waiters = _Waiters()
        #: Ended jobs for the loop: (job_id, trigger, terminal snapshot).
        self._ends: list[tuple[str, str, dict[str, Any]]] = []
        self._pump_scheduled = False
        self._job_log = JobLogWriter()

    def expect(self, job_id: str, trigger: str) -> None:
        """Record the trigger of a job about to be exec'd (for its log lines)."""
        with self._lock:
            self._triggers[job_id] = trigger

    def abandon(self, job_id: str) -> None:
        """Forget the trigger of a job whose start failed."""
        with self._lock:
            self._triggers.pop(job_id, None)

    def save(self, snapshot: dict[str, Any]) -> None:
        """Forward ``snapshot`` to the store, then observe it. Never blocks on I/O."""
        self._store.save(snapshot)
        history = snapshot.get("execution_history") or []
        try:
            self._observe(
                str(snapshot["job_id"]),
                str(snapshot.get("flow_id")),
                str(snapshot.get("status")),
                int(snapshot.get("activation_count", len(history))),
                lambda count: history[-count:],
                snapshot,
            )
        except Exception:  # metrics must never break checkpointing
            logger.exception("observing snapshot of job %s failed", snapshot.get("job_id"))

    def save_deferred(self, job_state: JobState, seq: int) -> None:
        """The Runtime's faster form of ``save`` (docs/architecture.md, checkpointer protocol).

        Observed straight from the JobState; a snapshot is built only for the terminal
        checkpoint (its waiters need it), and that one is handed to the store as is.
        """
        status = job_state.status.value
        if status in TERMINAL_STATUSES:
            self.save(job_state.to_dict())
            return
        self._store.save_deferred(job_state, seq)
        try:
            self._observe(
                job_state.job_id,
                job_state.flow_id,
                status,
                job_state.activation_count,
                job_state.recent_history,
                None,
            )
        except Exception:  # metrics must never break checkpointing
            logger.exception("observing job %s failed", job_state.job_id)

    def _observe(
        self,
        job_id: str,
        flow: str,
        status: str,
        activation_count: int,
        recent_history: Callable[[int], list[dict[str, Any]]],
        snapshot: dict[str, Any] | None,
    ) -> None:
        """Feed metrics and events from one checkpoint (``snapshot`` given when terminal).

        ``recent_history(n)`` gives the newest ``n`` history entries: only the ones
        committed since the last checkpoint are read.
        """
        with self._lock:
            record = self._jobs.get(job_id)
            if record is None:
                trigger = self._triggers.pop(job_id, None)
                record = _JobRecord(flow=flow, trigger=trigger or RESUMED)
                self._jobs[job_id] = record
                started = True
                resumed = trigger is None
            else:
                started = resumed = False
            new_activations = _new_history(record, activation_count, recent_history)
            if status in TERMINAL_STATUSES:
                self._jobs.pop(job_id, None)
        if resumed:
            self._metrics.job_resumed(record.flow)
        if started:
            self._metrics.job_started(record.flow)
            self._post(JobEvent(job_id, record.flow, record.trigger))
        for entry in new_activations:
            self._metrics.activation(
                record.flow,
                str(entry.get("routine_id")),
                str(entry.get("outcome")),
                _seconds_between(entry.get("started_at"), entry.get("finished_at")),
            )
        if status in TERMINAL_STATUSES and snapshot is not None:
            self._finish(job_id, record, status, snapshot)

    def _finish(self, job_id: str, record: _JobRecord, status: str, snap: dict[str, Any]) -> None:
        duration = _seconds_between(
            snap.get("started_at") or snap.get("created_at"), snap.get("completed_at")
        )
        self._metrics.job_finished(record.flow, status, duration)
        self._post(JobEvent(job_id, record.flow, record.trigger, status, duration, snap))

    def _post(self, event: JobEvent) -> None:
        """Log the event; hand a job's end to the loop, one wakeup for every end queued
        meanwhile.

        The log line goes straight to the job-log thread, which writes lines in
        batches: one thread writing the stream is far cheaper than eight worker
        threads contending for the handler's lock, or the loop waiting in a write.
        """
        self._job_log.post((event,))
        if event.snapshot is None:
            return
        with self._lock:
            self._ends.append((event.job_id, event.trigger, event.snapshot))
            if self._pump_scheduled:
                return
            self._pump_scheduled = True
        self._bridge.call_soon(self._pump)

    def _pump(self) -> None:
        with self._lock:
            ends, self._ends = self._ends, []
            self._pump_scheduled = False
        for job_id, trigger, snapshot in ends:
            self._resolve(job_id, snapshot)
            if trigger == RESUMED and self._on_resumed_end is not None:
                self._on_resumed_end(job_id)

    def close(self) -> None:
        """Write the job log lines still queued and stop the job-log thread.

        Call it once the Runtime has stopped; lines of later events are written on
        the posting thread.
        """
        self._job_log.close()

    def wait_terminal(self, job_id: str) -> asyncio.Future[dict[str, Any]]:
        """A loop future resolved with the job's terminal snapshot.

        Call it *before* the job can end (before ``Runtime.exec``), on the loop.
        """
        future: asyncio.Future[dict[str, Any]] = self._bridge.loop.create_future()
        self._waiters.futures.setdefault(job_id, []).append(future)
        return future

    def forget(self, job_id: str, waiter: asyncio.Future[dict[str, Any]]) -> None:
        """Drop a waiter of a job that will not run (a duplicate, a failed start).

        Only that one: a duplicate may carry the id of the job it duplicates.
        """
        waiters = self._waiters.futures.get(job_id, [])
        if waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiters.futures[job_id]
        waiter.cancel()

    def _resolve(self, job_id: str, snapshot: dict[str, Any]) -> None:
        for future in self._waiters.futures.pop(job_id, []):
            if not future.done():
                future.set_result(snapshot)


def _new_history(
    record: _JobRecord, count: int, recent_history: Callable[[int], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Execution-history entries committed since the job was last observed.

    ``count`` (the job's ``activation_count``) is unbounded while the history keeps
    only the newest entries, so the count says how many of the newest entries are new.
    """
    first_sight = not record.seen  # start or resume: count nothing old
    new = 0 if first_sight else max(0, count - record.activations)
    record.seen = True
    record.activations = count
    return recent_history(new) if new else []


def _seconds_between(start: Any, end: Any) -> float:
    """Seconds from ``start`` to ``end``: epoch seconds or ISO-8601 stamps; 0.0 if unknown."""
    try:
        if isinstance(start, (int, float)) and isinstance(end, (int, float)):
            return max(0.0, float(end) - float(start))
        return max(
            0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
        )
    except (TypeError, ValueError):
        return 0.0
