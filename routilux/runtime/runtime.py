"""Runtime: runs jobs of registered flows on one shared pool of threads.

Example::

    runtime = Runtime(thread_pool_size=8)
    job_state = runtime.exec("data_pipeline", entry_params={"data": "Hello"})
    runtime.wait_until_all_jobs_finished(timeout=5.0)
    runtime.shutdown(wait=True)

or as a context manager (``with Runtime() as runtime: ...``), which shuts down and
waits on exit. Every method is thread-safe.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from enum import Enum
from typing import Any

from routilux.errors import FlowNotFoundError, RuntimeStoppedError
from routilux.flow import Flow
from routilux.job_state import JobState
from routilux.monitoring.flow_registry import FlowRegistry
from routilux.runtime.job_run import Checkpointer, JobRun, RunServices
from routilux.runtime.timer_queue import TimerQueue
from routilux.runtime.worker_pool import WorkerPool
from routilux.status import ExecutionStatus

logger = logging.getLogger(__name__)


class RuntimeState(str, Enum):
    """Lifecycle of a Runtime: RUNNING -> STOPPING -> STOPPED."""

    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Runtime:
    """Executes jobs; see the module docstring.

    Args:
        thread_pool_size: worker threads shared by all jobs.
        checkpointer: optional object whose ``save(snapshot)`` receives a consistent
            snapshot of a job at its start, after every activation and at its end
            (see docs/architecture.md). It is called with the job's lock held: hand
            the dict to another thread, don't write to disk inline. A checkpointer
            that also has ``save_deferred(job_state, seq)`` gets that
            instead, and builds only the snapshots it keeps (docs/architecture.md).
        registry: where flows are looked up (default: ``FlowRegistry.get_instance()``).
        max_finished_jobs: finished jobs kept for ``get_job``/``list_jobs``; the oldest
            are forgotten first (their JobState objects stay valid for their holders).
    """

    def __init__(
        self,
        thread_pool_size: int = 10,
        checkpointer: Checkpointer | None = None,
        *,
        registry: FlowRegistry | None = None,
        max_finished_jobs: int = 10_000,
    ) -> None:
        self.thread_pool_size = thread_pool_size
        self.checkpointer = checkpointer
        self._registry = registry or FlowRegistry.get_instance()
        self._max_finished = max_finished_jobs
        self._pool = WorkerPool(thread_pool_size)
        self._timers = TimerQueue()
        self._services = RunServices(
            self._pool.submit,
            self._timers.call_later,
            checkpointer,
            self._job_finished,
            getattr(checkpointer, "save_deferred", None),
            self._pool.submit_next,
        )
        self._cond = threading.Condition()
        self._state = RuntimeState.RUNNING
        self._jobs: OrderedDict[str, JobState] = OrderedDict()
        self._runs: dict[str, JobRun] = {}
        self._finished_ids: deque[str] = deque()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown(wait=True)

    @property
    def state(self) -> RuntimeState:
        return self._state

    # -- jobs --------------------------------------------------------------------------
    def exec(
        self,
        flow_name: str,
        entry_params: dict[str, Any] | None = None,
        job_state: JobState | None = None,
        *,
        job_id: str | None = None,
        entry: str | None = None,
    ) -> JobState:
        """Start a job of ``flow_name`` (or resume ``job_state``); returns at once.

        ``entry_params`` is the data point delivered to the entry slot (``entry`` as
        ``"routine.slot"`` overrides the flow's entry). A ``job_state`` that has started
        before (loaded from a save or checkpoint) is resumed instead, and
        ``entry_params`` is ignored.

        Raises:
            FlowNotFoundError: no flow registered under ``flow_name`` (a ValueError).
            InvalidFlowError: the flow has no single entry routine (a ValueError).
            ResumeError: the saved job does not fit the flow any more (a ValueError).
            ValueError: ``job_state`` has already finished.
            RuntimeStoppedError: after ``shutdown()``.
        """
        flow = self._find_flow(flow_name)
        plan = flow.plan()
        if job_state is not None and _has_started(job_state):
            run = JobRun(plan, job_state, self._services)
            self._register(run)
            try:
                run.resume()
            except Exception:
                self._unregister(run)
                raise
            return job_state
        resolved = plan.default_entry if entry is None else None
        routine_id, slot = resolved or flow.resolve_entry(entry)
        state = job_state or JobState(flow_id=flow_name, job_id=job_id)
        state.flow_id = flow_name
        state.flow_fingerprint = plan.fingerprint
        run = JobRun(plan, state, self._services)
        self._register(run)
        run.start(routine_id, slot, dict(entry_params or {}))
        return state

    def _find_flow(self, flow_name: str) -> Flow:
        flow = self._registry.get_by_name(flow_name) or self._registry.get(flow_name)
        if flow is None:
            known = ", ".join(self._registry.list_names()) or "(none)"
            raise FlowNotFoundError(f"no flow registered as {flow_name!r}; registered: {known}")
        return flow

    def _register(self, run: JobRun) -> None:
        job_id = run.job_state.job_id
        with self._cond:
            if self._state is not RuntimeState.RUNNING:
                raise RuntimeStoppedError(f"runtime is {self._state.value}; cannot start jobs")
            if job_id in self._runs:
                raise ValueError(f"job {job_id} is already running in this runtime")
            self._runs[job_id] = run
            self._jobs[job_id] = run.job_state
            self._jobs.move_to_end(job_id)
            run.job_state._run = run

    def _unregister(self, run: JobRun) -> None:
        with self._cond:
            self._runs.pop(run.job_state.job_id, None)
            self._jobs.pop(run.job_state.job_id, None)
            run.job_state._run = None
            self._cond.notify_all()

    def _job_finished(self, run: JobRun) -> None:
        job_id = run.job_state.job_id
        with self._cond:
            self._runs.pop(job_id, None)
            finished = self._finished_ids
            finished.append(job_id)
            while len(finished) > self._max_finished:
                forgotten = finished.popleft()
                if forgotten not in self._runs:
                    self._jobs.pop(forgotten, None)
            if not self._runs:
                self._cond.notify_all()  # the only waiters wait for "no job running"

    def get_job(self, job_id: str) -> JobState | None:
        """The JobState of a running or recently finished job, else None."""
        with self._cond:
            return self._jobs.get(job_id)

    def list_jobs(self, status: ExecutionStatus | str | None = None) -> list[JobState]:
        """Known jobs, oldest first, optionally only those with ``status``."""
        with self._cond:
            jobs = list(self._jobs.values())
        if status is None:
            return jobs
        wanted = ExecutionStatus(status)
        return [job for job in jobs if job.status is wanted]

    def cancel_job(self, job_id: str) -> bool:
        """Cancel a running job; False if it is unknown or already finished."""
        with self._cond:
            run = self._runs.get(job_id)
        return run.cancel() if run is not None else False

    @property
    def active_job_count(self) -> int:
        with self._cond:
            return len(self._runs)

    def wait_until_all_jobs_finished(self, timeout: float | None = None) -> bool:
        """Block until no job is running; False if ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._runs, timeout)

    # -- lifecycle ---------------------------------------------------------------------
    def shutdown(self, wait: bool = True, timeout: float | None = None) -> bool:
        """Stop accepting jobs, optionally wait for running ones, then stop the threads.

        Jobs still running when the threads stop keep their last checkpoint and can be
        resumed by a later runtime. Returns True if no job was left unfinished.
        Idempotent.
        """
        with self._cond:
            if self._state is RuntimeState.STOPPED:
                return not self._runs
            self._state = RuntimeState.STOPPING
        drained = self.wait_until_all_jobs_finished(timeout) if wait else not self._runs
        self._timers.stop(timeout=1.0)
        self._pool.stop(timeout=(timeout if wait else 0.0))
        with self._cond:
            self._state = RuntimeState.STOPPED
            if self._runs:
                logger.warning("runtime stopped with %d unfinished job(s)", len(self._runs))
        return drained


def _has_started(job_state: JobState) -> bool:
    if job_state.status.is_terminal:
        raise ValueError(
            f"job {job_state.job_id} is already {job_state.status.value}; nothing to resume"
        )
    return job_state.started_at is not None or job_state.status is ExecutionStatus.RUNNING
