"""A fixed set of worker threads fed by one queue.

Cheaper per task than ``ThreadPoolExecutor`` (no Future per task), which matters
because every activation is one task. ``submit_next`` lets a task name what its
thread runs right after it: the next activation of a chain then starts without a
queue round trip, a thread wake-up and a GIL hand-off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

logger = logging.getLogger(__name__)

_STOP = object()


class WorkerPool:
    """``size`` daemon threads running submitted ``fn(arg)`` calls in FIFO order.

    Exceptions escaping a task are logged and the thread lives on. ``stop`` lets the
    threads finish their current task; tasks still queued are dropped.
    """

    def __init__(self, size: int, name: str = "routilux-worker") -> None:
        if size < 1:
            raise ValueError("thread_pool_size must be >= 1")
        self._tasks: SimpleQueue[Any] = SimpleQueue()
        self._stopping = False
        # Per worker thread: the task it submitted itself and runs next (see submit).
        self._own = threading.local()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def size(self) -> int:
        return len(self._threads)

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> None:
        """Queue ``fn(arg)``; returns at once. Thread-safe."""
        self._tasks.put((fn, arg))

    def submit_next(self, fn: Callable[[Any], Any], arg: Any) -> None:
        """Like :meth:`submit`, but from a task of this pool the first such call runs
        ``fn(arg)`` on the same thread as soon as that task returns, unless other work
        is waiting; later ones are queued, so fan-out still runs in parallel.

        Only while nothing waits in the queue: otherwise a chain that loops would keep
        its thread while other jobs, timers and the other branches of a fan-out wait.
        And only for work submitted at the very end of a task: a task that goes on to
        wait for it would wait for good.
        """
        own = self._own
        if getattr(own, "free", False) and self._tasks.empty():
            own.free = False
            own.next = (fn, arg)
            return
        self._tasks.put((fn, arg))

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the threads; True if all exited within ``timeout``. Idempotent."""
        self._stopping = True
        for _ in self._threads:
            self._tasks.put(_STOP)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            if thread is threading.current_thread():
                continue
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        return not any(thread.is_alive() for thread in self._threads)

    def _work(self) -> None:
        get = self._tasks.get
        own = self._own
        while True:
            task = get()
            while task is not None:
                if task is _STOP or self._stopping:
                    return
                fn, arg = task
                own.next, own.free = None, True
                try:
                    fn(arg)
                except BaseException:
                    logger.exception("routilux worker task %r failed", fn)
                task, own.free = own.next, False
