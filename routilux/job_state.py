"""JobState: the record of one job (one run of a flow).

It holds the status, per-routine state, data shared between routines, the error
record and a bounded execution history, and it can be saved and loaded as plain JSON
to resume the job later::

    job_state = runtime.exec("my_flow", entry_params={"n": 1})
    job_state.wait_for_completion(timeout=10)
    job_state.save("state.json")            # atomic: temp file + rename
    again = JobState.load("state.json")

Two views of the data exist while a job runs. What logic reads and writes
(``routine_states``, ``shared_data``, ``shared_log``) is live. What ``to_dict()`` and
checkpoints show is *committed*: the writes of activations that have finished (a
failed attempt has finished too: its writes count, its emits do not). An activation
interrupted by a crash therefore never leaves half its writes in a snapshot, and once
a job has ended the two views are the same. All methods are thread-safe.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import tempfile
import threading
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from routilux.context import current_activation
from routilux.errors import SerializationError
from routilux.records import ErrorInfo, from_iso, iso, utc_now
from routilux.shared_containers import SharedData, SharedLog
from routilux.status import ExecutionStatus, check_transition

if TYPE_CHECKING:
    from routilux.runtime.job_run import JobRun

#: Snapshot layout version written by ``to_dict``.
SCHEMA_VERSION = 1
#: Most execution records kept per job (oldest are dropped).
HISTORY_LIMIT = 200
#: Most error records kept per job.
ERROR_LIMIT = 100


def empty_pending() -> dict[str, Any]:
    """The ``pending`` section of a snapshot with no work in it."""
    return {
        "slots": {},
        "activations": [],
        "timers": [],
        "skipped_routines": [],
        "policy_state": {},
    }


class JobState:
    """State of one job; created by ``Runtime.exec`` (or ``JobState.load`` to resume)."""

    def __init__(self, flow_id: str = "", job_id: str | None = None) -> None:
        self.job_id: str = job_id or os.urandom(16).hex()
        self.flow_id: str = flow_id
        self.flow_fingerprint: str = ""
        self._status = ExecutionStatus.PENDING
        self._times: dict[str, tuple[datetime | None, str | None]] = {}
        self.created_at: datetime = utc_now()
        self.started_at: datetime | None = None
        self.completed_at: datetime | None = None
        self.error: ErrorInfo | None = None
        self._lock = threading.Lock()
        self._finished = False
        self._done: threading.Event | None = None  # made on first wait: most jobs never wait
        self._errors: deque[ErrorInfo] = deque(maxlen=ERROR_LIMIT)
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY_LIMIT)
        self._routine_states: dict[str, dict[str, Any]] = {}
        self._shared_data = SharedData(self)
        self._shared_log = SharedLog(self)
        self._committed_states: dict[str, dict[str, Any]] = {}
        self._committed_shared: dict[str, Any] = {}
        self._committed_log: list[Any] = []
        self.checkpoint_seq = 0
        #: Activations committed so far, never bounded (the history is).
        self.activation_count = 0
        self._pending: dict[str, Any] | None = None  # set by from_dict / at the job's end
        self._run: JobRun | None = None

    def __repr__(self) -> str:
        return f"JobState(job_id={self.job_id!r}, flow_id={self.flow_id!r}, status={self.status})"

    # -- timestamps: ISO text cached, as every checkpoint carries it ---------------------
    def _set_time(self, name: str, moment: datetime | None) -> None:
        self._times[name] = (moment, iso(moment))

    @property
    def created_at(self) -> datetime:
        moment = self._times["created_at"][0]
        assert moment is not None
        return moment

    @created_at.setter
    def created_at(self, moment: datetime) -> None:
        self._set_time("created_at", moment)

    @property
    def started_at(self) -> datetime | None:
        return self._times["started_at"][0]

    @started_at.setter
    def started_at(self, moment: datetime | None) -> None:
        self._set_time("started_at", moment)

    @property
    def completed_at(self) -> datetime | None:
        return self._times["completed_at"][0]

    @completed_at.setter
    def completed_at(self, moment: datetime | None) -> None:
        self._set_time("completed_at", moment)

    # -- status ------------------------------------------------------------------------
    @property
    def status(self) -> ExecutionStatus:
        return self._status

    def _transition(self, new: ExecutionStatus) -> None:
        """Change status; only the runtime calls this. Raises on an illegal change."""
        with self._lock:
            check_transition(self._status, new)
            self._status = new
            if new is ExecutionStatus.RUNNING and self.started_at is None:
                self.started_at = utc_now()
            if new.is_terminal:
                self.completed_at = utc_now()
                self._mark_finished()

    def _mark_finished(self) -> None:
        self._finished = True
        if self._done is not None:
            self._done.set()

    def wait_for_completion(self, timeout: float | None = None) -> bool:
        """Block until the job is completed, failed or cancelled; False on timeout."""
        with self._lock:
            if self._finished:
                return True
            if self._done is None:
                self._done = threading.Event()
            done = self._done
        return done.wait(timeout)

    wait = wait_for_completion

    @property
    def is_finished(self) -> bool:
        return self._finished

    # -- routine state -----------------------------------------------------------------
    @property
    def routine_states(self) -> dict[str, dict[str, Any]]:
        """Live per-routine state (read it; write through ``update_routine_state``)."""
        return self._routine_states

    def update_routine_state(self, routine_id: str, updates: dict[str, Any]) -> None:
        """Merge ``updates`` into ``routine_id``'s state."""
        ctx = self._own_activation()
        with self._lock:
            self._routine_states.setdefault(routine_id, {}).update(updates)
            if ctx is None:
                self._committed_states.setdefault(routine_id, {}).update(copy.deepcopy(updates))
        if ctx is not None:
            ctx.routine_writes.append((routine_id, dict(updates)))

    def get_routine_state(self, routine_id: str, default: Any = None) -> Any:
        """``routine_id``'s state dict, or ``default`` if it has none."""
        with self._lock:
            state = self._routine_states.get(routine_id)
            return default if state is None else state

    @property
    def current_routine_id(self) -> str | None:
        """The routine whose logic the calling thread is running for this job, else None."""
        ctx = self._own_activation()
        return ctx.routine_id if ctx is not None else None

    # -- shared data -------------------------------------------------------------------
    @property
    def shared_data(self) -> SharedData:
        return self._shared_data

    @property
    def shared_log(self) -> SharedLog:
        return self._shared_log

    def _own_activation(self) -> Any:
        ctx = current_activation.get()
        if ctx is not None and ctx.run.job_state is self:
            return ctx
        return None

    def _shared_written(self, key: Any) -> None:
        ctx = self._own_activation()
        if ctx is not None:
            ctx.shared_keys.add(key)
            return
        with self._lock:
            self._copy_shared_key(key)

    def _copy_shared_key(self, key: Any) -> None:
        if key in self._shared_data:
            self._committed_shared[key] = copy.deepcopy(dict.__getitem__(self._shared_data, key))
        else:
            self._committed_shared.pop(key, None)

    def _log_appended(self, items: list[Any]) -> None:
        ctx = self._own_activation()
        if ctx is not None:
            ctx.log_items.extend(items)
            return
        with self._lock:
            self._committed_log.extend(copy.deepcopy(items))

    def _log_rewritten(self) -> None:
        ctx = self._own_activation()
        if ctx is not None:
            ctx.log_items.append(_REWRITE)
            return
        with self._lock:
            self._committed_log = copy.deepcopy(list(self._shared_log))

    # -- errors and history ------------------------------------------------------------
    @property
    def errors(self) -> list[ErrorInfo]:
        with self._lock:
            return list(self._errors)

    @property
    def execution_history(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._history)

    def recent_history(self, count: int) -> list[dict[str, Any]]:
        """The newest ``count`` entries of :attr:`execution_history`, oldest first.

        Cheaper than the whole history when only the last few entries are wanted
        (``job_state.recent_history(1)`` is the last committed activation).
        """
        if count <= 0:
            return []
        with self._lock:
            newest = list(itertools.islice(reversed(self._history), count))
        newest.reverse()
        return newest

    def _record_error(self, info: ErrorInfo, fatal: bool) -> None:
        with self._lock:
            self._errors.append(info)
            if fatal:
                self.error = info

    def _commit(self, ctx: Any, record: dict[str, Any] | None) -> None:
        """Apply a finished activation's buffered writes to the committed view."""
        with self._lock:
            if record is not None:
                self._history.append(record)
                self.activation_count += 1
            if ctx is None:
                return
            for routine_id, updates in ctx.routine_writes:
                self._committed_states.setdefault(routine_id, {}).update(copy.deepcopy(updates))
            for key in ctx.shared_keys:
                self._copy_shared_key(key)
            if _REWRITE in ctx.log_items:
                self._committed_log = copy.deepcopy(list(self._shared_log))
            elif ctx.log_items:
                self._committed_log.extend(copy.deepcopy(ctx.log_items))

    def _rollback(self, ctx: Any) -> None:
        """Undo, in the live view, the writes of an activation that will never commit."""
        with self._lock:
            for routine_id, _ in ctx.routine_writes:
                committed = self._committed_states.get(routine_id)
                if committed is None:
                    self._routine_states.pop(routine_id, None)
                else:
                    self._routine_states[routine_id] = copy.deepcopy(committed)
            for key in ctx.shared_keys:
                if key in self._committed_shared:
                    value = copy.deepcopy(self._committed_shared[key])
                    dict.__setitem__(self._shared_data, key, value)
                else:
                    dict.pop(self._shared_data, key, None)
            if ctx.log_items:
                list.clear(self._shared_log)
                list.extend(self._shared_log, copy.deepcopy(self._committed_log))

    # -- serialization -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON snapshot of the committed state and, while running, the pending work."""
        run = self._run
        if run is not None:
            return run.snapshot()
        return self._snapshot(self._pending or empty_pending())

    def _snapshot(self, pending: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return {
                "schema": SCHEMA_VERSION,
                "job_id": self.job_id,
                "flow_id": self.flow_id,
                "flow_fingerprint": self.flow_fingerprint,
                "status": self._status.value,
                "created_at": self._times["created_at"][1],
                "started_at": self._times["started_at"][1],
                "completed_at": self._times["completed_at"][1],
                "error": self.error.to_dict() if self.error else None,
                "errors": [e.to_dict() for e in self._errors],
                "routine_states": {k: dict(v) for k, v in self._committed_states.items()},
                "shared_data": dict(self._committed_shared),
                "shared_log": list(self._committed_log),
                "execution_history": list(self._history),
                "checkpoint_seq": self.checkpoint_seq,
                "activation_count": self.activation_count,
                "pending": pending,
            }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobState:
        """Rebuild a JobState from ``to_dict()`` output (for inspection or resumption)."""
        try:
            return cls._from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise SerializationError(f"not a JobState snapshot: {exc!r}") from exc

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> JobState:
        if data.get("schema", SCHEMA_VERSION) > SCHEMA_VERSION:
            raise ValueError(f"snapshot schema {data['schema']} is newer than {SCHEMA_VERSION}")
        state = cls(flow_id=data["flow_id"], job_id=data["job_id"])
        state.flow_fingerprint = data.get("flow_fingerprint", "")
        state._status = ExecutionStatus(data["status"])
        state.created_at = from_iso(data.get("created_at")) or state.created_at
        state.started_at = from_iso(data.get("started_at"))
        state.completed_at = from_iso(data.get("completed_at"))
        state.error = ErrorInfo.from_dict(data["error"]) if data.get("error") else None
        state._errors.extend(ErrorInfo.from_dict(e) for e in data.get("errors", []))
        state._history.extend(data.get("execution_history", []))
        state._committed_states = copy.deepcopy(data.get("routine_states", {}))
        state._committed_shared = copy.deepcopy(data.get("shared_data", {}))
        state._committed_log = copy.deepcopy(data.get("shared_log", []))
        state._routine_states = copy.deepcopy(state._committed_states)
        dict.update(state._shared_data, copy.deepcopy(state._committed_shared))
        list.extend(state._shared_log, copy.deepcopy(state._committed_log))
        state.checkpoint_seq = int(data.get("checkpoint_seq", 0))
        state.activation_count = int(data.get("activation_count", len(state._history)))
        state._pending = {**empty_pending(), **data.get("pending", {})}
        if state._status.is_terminal:
            state._mark_finished()
        return state

    @property
    def pending_work(self) -> dict[str, Any]:
        """The ``pending`` section of ``to_dict()``: unconsumed data, in-flight work, timers."""
        pending: dict[str, Any] = self.to_dict()["pending"]
        return pending

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``to_dict()`` as JSON atomically (temp file in the same folder + rename)."""
        target = Path(path)
        try:
            text = json.dumps(self.to_dict())
        except (TypeError, ValueError) as exc:
            raise SerializationError(
                f"job {self.job_id} holds data that is not JSON: {exc}"
            ) from exc
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> JobState:
        """Read a file written by ``save``."""
        with open(path, encoding="utf-8") as handle:
            try:
                data = json.load(handle)
            except json.JSONDecodeError as exc:
                raise SerializationError(f"{path}: not valid JSON: {exc}") from exc
        return cls.from_dict(data)


#: Marker in an activation's log items: the log was changed other than by appending.
_REWRITE = object()
