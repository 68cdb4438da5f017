"""The daemon's one log line per job start and per job end, written by a thread of its own.

Writing a line is a system call that gives up the GIL, and getting it back waits
behind busy Runtime threads; neither the loop nor a worker should pay that. The
job tracker hands its events over as they happen (:meth:`JobLogWriter.post`), and
one long-lived thread formats whatever has piled up and writes it in one go. That
thread lingers a moment after the first event before it writes: a post finding no
waiting reader is only an append, so Runtime threads and the loop stop waking it
once per batch of jobs (about one wakeup every three messages under load).

Usage::

    writer = JobLogWriter()
    writer.post([JobEvent("3f2a...", "orders", "amqp:orders")])  # "job start ..."
    writer.close()  # writes what is queued, then stops the thread
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from typing import Any, NamedTuple

from daemon.logging_setup import grouped_writes

__all__ = ["JobEvent", "JobLogWriter", "log_job_events"]

logger = logging.getLogger("daemon.jobs")

#: Seconds :meth:`JobLogWriter.close` waits for queued lines to be written.
CLOSE_TIMEOUT = 5.0
#: Seconds the thread waits after the first queued event for more to pile up. A line
#: reaches the log at most this much later; the store, not the log, is the record.
LINGER = 0.02


class JobEvent(NamedTuple):
    """A job start (no snapshot) or end, posted by the job tracker.

    A named tuple: two are made per job, and a frozen dataclass costs several times
    more to build.
    """

    job_id: str
    flow: str
    trigger: str
    status: str = ""
    duration: float = 0.0
    snapshot: dict[str, Any] | None = None


def log_job_events(events: Sequence[JobEvent]) -> None:
    """Log one line per event on the calling thread, written together at the end."""
    if not logger.isEnabledFor(logging.INFO):
        return
    with grouped_writes():
        for event in events:
            if event.snapshot is None:
                logger.info(
                    "job start id=%s flow=%s trigger=%s", event.job_id, event.flow, event.trigger
                )
            else:
                logger.info(
                    "job end id=%s flow=%s trigger=%s status=%s duration=%.3fs",
                    event.job_id,
                    event.flow,
                    event.trigger,
                    event.status,
                    event.duration,
                )


class JobLogWriter:
    """Owns the job-log thread; :meth:`post` from any thread, :meth:`close` once."""

    def __init__(self, linger: float = LINGER) -> None:
        self._queue: queue.SimpleQueue[Sequence[JobEvent] | None] = queue.SimpleQueue()
        # Held while deciding between the queue and the caller's thread, so that nothing
        # is queued behind the sentinel that stops the thread.
        self._closing = threading.Lock()
        self._closed = False
        self._linger = linger
        self._stopping = threading.Event()  # cuts a linger short at close()
        self._thread = threading.Thread(target=self._run, name="routilux-job-log", daemon=True)
        self._thread.start()

    def post(self, events: Sequence[JobEvent]) -> None:
        """Queue ``events`` for writing; never blocks. After :meth:`close` they are
        written on the caller's thread instead (nothing is dropped)."""
        with self._closing:
            if not self._closed:
                self._queue.put(events)
                return
        log_job_events(events)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Write what is queued and stop the thread (waits up to ``timeout`` seconds)."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._stopping.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            pending = [self._queue.get()]
            if pending[0] is not None and self._linger > 0:
                self._stopping.wait(self._linger)
            # Whatever piled up meanwhile goes out in this one write.
            while True:
                try:
                    pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            events = [event for batch in pending if batch is not None for event in batch]
            try:
                log_job_events(events)
            except Exception:  # a broken stream must not stop the thread (or later lines)
                logger.exception("writing %d job log line(s) failed", len(events))
            if None in pending:
                return
