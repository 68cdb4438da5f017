"""One thread that calls callbacks at deadlines (retry delays, policy rechecks).

Waiting is a Condition wait until the earliest deadline, never a polling loop, and no
worker thread ever sleeps for a retry.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class TimerHandle:
    """Returned by ``TimerQueue.call_later``; ``cancel()`` stops the call if not yet made."""

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerQueue:
    """Runs ``callback()`` on its own thread after a delay. Callbacks must be quick."""

    def __init__(self, name: str = "routilux-timers") -> None:
        self._heap: list[tuple[float, int, TimerHandle, Callable[[], None]]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._name = name

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Call ``callback`` in ``delay`` seconds (monotonic clock). Thread-safe."""
        handle = TimerHandle()
        due = time.monotonic() + max(0.0, delay)
        with self._cond:
            if self._stopped:
                raise RuntimeError("timer queue is stopped")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (due, next(self._counter), handle, callback))
            if self._heap[0][2] is handle:
                self._cond.notify()
        return handle

    def stop(self, timeout: float | None = None) -> None:
        """Drop every pending call and stop the thread. Idempotent."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            callback = self._next_due()
            if callback is None:
                return
            try:
                callback()
            except BaseException:
                logger.exception("routilux timer callback %r failed", callback)

    def _next_due(self) -> Callable[[], None] | None:
        with self._cond:
            while not self._stopped:
                if not self._heap:
                    self._cond.wait()
                    continue
                due, _, handle, callback = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                if not handle.cancelled:
                    return callback
            return None
