"""Track which snapshot of each job is durable and wake whoever waits for it.

Both stores share this: the SQLite writer reports a group after its COMMIT, the
memory twin reports each snapshot as it is saved. A waiter is a
``concurrent.futures.Future[bool]`` so that threads block on ``result(timeout)``
and the daemon's event loop awaits ``asyncio.wrap_future(fut)`` without blocking.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError

__all__ = ["DurabilityTracker"]

#: How many finished jobs keep their committed seq so a late waiter still gets True.
FINISHED_MEMORY = 65_536


class _GroupWaiter:
    """Waits for many jobs at once: one future for the lot instead of one per job."""

    __slots__ = ("durable", "future", "remaining")

    def __init__(self, count: int, durable: set[str]) -> None:
        self.remaining = count
        self.durable = durable
        self.future: Future[set[str]] = Future()

    def done(self, job_id: str) -> bool:
        """Count ``job_id`` durable; True when it was the last one awaited."""
        self.durable.add(job_id)
        self.remaining -= 1
        return self.remaining == 0

    def resolve(self) -> None:
        """Hand over the jobs durable so far (all of them, unless the tracker closed)."""
        if self.future.set_running_or_notify_cancel():
            self.future.set_result(set(self.durable))


_Waiter = Future[bool] | _GroupWaiter


def _resolve(fut: Future[bool], value: bool) -> None:
    # A waiter may have been cancelled (asyncio task cancelled, wait timed out).
    if fut.set_running_or_notify_cancel():
        fut.set_result(value)


class DurabilityTracker:
    """Per-job saved/committed checkpoint_seq and the futures waiting on them.

    Thread-safe. Futures are resolved outside the lock because resolving runs their
    callbacks (e.g. ``call_soon_threadsafe``) in the resolving thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._saved: dict[str, int] = {}
        self._committed: dict[str, int] = {}
        self._finished: OrderedDict[str, int] = OrderedDict()
        self._waiters: dict[str, list[tuple[int | None, _Waiter]]] = {}
        self._closed = False

    def note_saved(self, job_id: str, seq: int) -> None:
        """Record that a snapshot with ``seq`` was handed to the store."""
        with self._lock:
            if seq > self._saved.get(job_id, -1):
                self._saved[job_id] = seq

    def note_committed(self, committed: Iterable[tuple[str, int, bool]]) -> None:
        """Record durable snapshots as ``(job_id, seq, terminal)`` and wake their waiters."""
        ready: list[_Waiter] = []
        with self._lock:
            for job_id, seq, terminal in committed:
                self._record(job_id, seq, terminal)
                for waiter in self._take_ready(job_id, seq):
                    if isinstance(waiter, Future) or waiter.done(job_id):
                        ready.append(waiter)
        for waiter in ready:
            if isinstance(waiter, Future):
                _resolve(waiter, True)
            else:
                waiter.resolve()

    def future(self, job_id: str, seq: int | None = None) -> Future[bool]:
        """A future that becomes True once ``job_id`` is durable up to ``seq``.

        ``seq=None`` means the newest snapshot saved for the job so far, or its first
        snapshot if none was saved yet. The future becomes False if the store closes first.
        """
        fut: Future[bool] = Future()
        with self._lock:
            target = seq if seq is not None else self._saved.get(job_id)
            current = self._current(job_id)
            if current is not None and (target is None or current >= target):
                done: bool | None = True
            elif self._closed:
                done = False
            else:
                done = None
                self._waiters.setdefault(job_id, []).append((target, fut))
        if done is not None:
            _resolve(fut, done)
        return fut

    def wait(self, job_id: str, seq: int | None, timeout: float | None) -> bool:
        """Block until durable (True) or ``timeout`` seconds pass / the store closes (False)."""
        fut = self.future(job_id, seq)
        try:
            return fut.result(timeout)
        except FutureTimeoutError:
            fut.cancel()
            self._discard(job_id, fut)
            return False

    def future_all(self, job_ids: Iterable[str]) -> Future[set[str]]:
        """A future of the jobs that are durable up to their newest saved snapshots.

        It resolves once all of them are (or with fewer, if the tracker closes first).
        Cancel it to stop waiting. Cheaper than a future per job for a batch of jobs.
        """
        return self._wait_group(job_ids).future

    def wait_all(self, job_ids: Iterable[str], timeout: float | None) -> set[str]:
        """Block until each job is durable up to its newest saved snapshot, or ``timeout``.

        Returns the jobs that are durable (all of them unless time ran out or the store
        closed).
        """
        waiter = self._wait_group(job_ids)
        try:
            return waiter.future.result(timeout)
        except FutureTimeoutError:
            waiter.future.cancel()
            with self._lock:
                return set(waiter.durable)

    def _wait_group(self, job_ids: Iterable[str]) -> _GroupWaiter:
        pending: list[str] = []
        durable: set[str] = set()
        with self._lock:
            for job_id in job_ids:
                target = self._saved.get(job_id)
                current = self._current(job_id)
                if current is not None and (target is None or current >= target):
                    durable.add(job_id)
                else:
                    pending.append(job_id)
            waiter = _GroupWaiter(len(pending), durable)
            if pending and not self._closed:
                for job_id in pending:
                    self._waiters.setdefault(job_id, []).append((self._saved.get(job_id), waiter))
                waiter.future.add_done_callback(lambda _f: self._withdraw(pending, waiter))
                return waiter
        waiter.resolve()
        return waiter

    def _withdraw(self, job_ids: list[str], waiter: _GroupWaiter) -> None:
        """Drop a finished or cancelled group's remaining registrations."""
        with self._lock:
            for job_id in job_ids:
                self._drop_waiter(job_id, waiter)

    def forget(self, job_id: str) -> None:
        """Forget an earlier job with this id: a new one starts under it, with its own
        commits to wait for (a keyed job's id repeats once the earlier row is pruned)."""
        with self._lock:
            self._saved.pop(job_id, None)
            self._committed.pop(job_id, None)
            self._finished.pop(job_id, None)

    def committed_seq(self, job_id: str) -> int | None:
        """The newest durable checkpoint_seq of the job, if known to this process."""
        with self._lock:
            return self._current(job_id)

    def close(self) -> None:
        """Resolve every remaining waiter with False; later futures resolve False at once."""
        with self._lock:
            self._closed = True
            waiters = [w for items in self._waiters.values() for _, w in items]
            self._waiters.clear()
        for waiter in set(waiters):
            if isinstance(waiter, Future):
                _resolve(waiter, False)
            else:
                waiter.resolve()

    # -- internals (lock held) ------------------------------------------------

    def _current(self, job_id: str) -> int | None:
        seq = self._committed.get(job_id)
        return seq if seq is not None else self._finished.get(job_id)

    def _record(self, job_id: str, seq: int, terminal: bool) -> None:
        if not terminal:
            if job_id in self._finished:
                # A late snapshot after the terminal one is settled without being written.
                self._finished[job_id] = max(self._finished[job_id], seq)
                self._saved.pop(job_id, None)
                return
            if seq > self._committed.get(job_id, -1):
                self._committed[job_id] = seq
            return
        # A finished job no longer needs live tracking; keep a bounded memory of it.
        self._committed.pop(job_id, None)
        if self._saved.get(job_id, -1) <= seq:
            self._saved.pop(job_id, None)
        self._finished[job_id] = seq
        self._finished.move_to_end(job_id)
        while len(self._finished) > FINISHED_MEMORY:
            self._finished.popitem(last=False)

    def _take_ready(self, job_id: str, seq: int) -> list[_Waiter]:
        items = self._waiters.get(job_id)
        if not items:
            return []
        ready = [w for target, w in items if target is None or seq >= target]
        keep: list[tuple[int | None, _Waiter]] = [
            (t, w)
            for t, w in items
            if not (t is None or seq >= t) and not (isinstance(w, Future) and w.cancelled())
        ]
        if keep:
            self._waiters[job_id] = keep
        else:
            del self._waiters[job_id]
        return ready

    def _discard(self, job_id: str, fut: Future[bool]) -> None:
        with self._lock:
            self._drop_waiter(job_id, fut)

    def _drop_waiter(self, job_id: str, waiter: _Waiter) -> None:
        items = self._waiters.get(job_id)
        if items is None:
            return
        items[:] = [(t, w) for t, w in items if w is not waiter]
        if not items:
            del self._waiters[job_id]
