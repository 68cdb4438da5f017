"""The one crossing between Runtime threads and the daemon's asyncio loop.

Runtime worker threads (checkpointer calls, job completion) never touch loop
objects directly: they hand work to the loop with :meth:`Bridge.call_soon`, and
loop code waits on thread-side futures with :meth:`Bridge.wrap`. Blocking calls
(SQLite, ``Runtime.wait_until_all_jobs_finished``) run in a worker thread via
:meth:`Bridge.run_blocking` so the loop keeps serving heartbeats.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


#: Threads for blocking calls: reply-outbox writes, drains. (Claims and
#: first-checkpoint waits do not use them: the loop awaits the store's futures.)
BLOCKING_THREADS = 32


class Bridge:
    """Hands calls from any thread to one asyncio loop.

    Thread-safe: every method may be called from any thread except
    :meth:`wrap` and :meth:`run_blocking`, which are coroutines of the loop.
    Owns a thread pool for blocking calls; :meth:`close` shuts it down.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, threads: int = BLOCKING_THREADS) -> None:
        self.loop = loop
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, threads), thread_name_prefix="bridge"
        )

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule ``fn(*args)`` on the loop; never blocks.

        A call arriving after the loop closed is dropped with a debug log: the
        service is stopping and the state it would update is gone anyway.
        """
        try:
            self.loop.call_soon_threadsafe(functools.partial(_guarded, fn, *args))
        except RuntimeError:
            logger.debug("loop closed; dropped call to %r", fn)

    async def wrap(self, future: concurrent.futures.Future[T]) -> T:
        """Await a thread-side future without blocking the loop."""
        return await asyncio.wrap_future(future, loop=self.loop)

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call in the bridge's thread pool and await its result."""
        return await self.loop.run_in_executor(self._pool, functools.partial(fn, *args))

    def close(self) -> None:
        """Stop the blocking-call threads once their current calls return."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def _guarded(fn: Callable[..., Any], *args: Any) -> None:
    """Run a bridged call; a failure is logged instead of killing the loop."""
    try:
        fn(*args)
    except Exception:
        logger.exception("bridged call %r failed", fn)
