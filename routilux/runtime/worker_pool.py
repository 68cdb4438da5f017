"""A fixed set of worker threads fed by one queue.

Cheaper per task than ``ThreadPoolExecutor`` (no Future per task), which matters
because every activation is one task.
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
        while True:
            task = get()
            if task is _STOP or self._stopping:
                return
            fn, arg = task
            try:
                fn(arg)
            except BaseException:
                logger.exception("routilux worker task %r failed", fn)
