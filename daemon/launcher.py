"""Start one job from any trigger: claim it in the store, then hand it to the Runtime.

The claim is the idempotency point: ``store.claim`` inserts the job row with its
dedupe key durably *before* the job starts and returns the existing job when the
key is known, so a redelivered message or a re-fired timer slot never starts a
second job. The claim, ``Runtime.exec`` (which takes the first snapshot) and the
wait for that snapshot to be durable run together in one bridge thread, so the
loop pays one hop per job; the job's logic runs on Runtime threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from daemon.bridge import Bridge
from daemon.runtime_hooks import JobTracker

logger = logging.getLogger(__name__)


class ClaimingStore(Protocol):
    """What the launcher needs of the checkpoint store (blocking calls)."""

    def claim(
        self,
        job_id: str,
        flow_id: str,
        trigger: str,
        dedupe_key: str | None,
        entry_params: dict[str, Any] | None = None,
    ) -> tuple[str, bool]: ...

    def durable_future(self, job_id: str) -> concurrent.futures.Future[Any]: ...

    def wait_durable(self, job_id: str, seq: int | None, timeout: float | None) -> bool: ...


class JobRunner(Protocol):
    """The part of ``routilux.Runtime`` the launcher uses."""

    def exec(
        self,
        flow_name: str,
        entry_params: dict[str, Any] | None = None,
        job_state: Any = None,
        *,
        job_id: str | None = None,
        entry: str | None = None,
    ) -> Any: ...


#: Seconds a launch waits for the first checkpoint before handing back anyway; the
#: caller's own durability wait (before acking) then decides.
DURABLE_TIMEOUT = 30.0


@dataclass(frozen=True)
class _Start:
    """Everything the blocking half of a launch needs."""

    flow: str
    params: dict[str, Any]
    trigger: str
    dedupe_key: str | None
    before_start: Callable[[str], None] | None
    entry: str | None
    wait_durable: bool


@dataclass(frozen=True)
class Launched:
    """The outcome of :meth:`Launcher.launch`.

    ``ended`` resolves with the terminal snapshot; it is ``None`` for a duplicate.
    """

    job_id: str
    created: bool
    ended: asyncio.Future[dict[str, Any]] | None
    #: True when the first checkpoint was committed before launch returned.
    durable: bool = False


class Launcher:
    """Claims and starts jobs; every method runs on the bridge's loop."""

    def __init__(
        self,
        store: ClaimingStore,
        runtime: JobRunner,
        tracker: JobTracker,
        bridge: Bridge,
        observe_checkpoint: Callable[[float], None] | None = None,
    ) -> None:
        """``observe_checkpoint(seconds)`` gets the wait for each first checkpoint."""
        self._observe_checkpoint = observe_checkpoint
        # uuid4() reads os.urandom: a syscall that releases the GIL, after which the
        # loop waits behind busy Runtime threads to get it back. A seeded PRNG gives
        # the same 122 random bits without leaving the interpreter.
        self._ids = random.Random(os.urandom(32))
        self._store = store
        self._runtime = runtime
        self._tracker = tracker
        self._bridge = bridge

    async def launch(
        self,
        flow: str,
        params: dict[str, Any],
        trigger: str,
        dedupe_key: str | None,
        *,
        before_start: Callable[[str], None] | None = None,
        entry: str | None = None,
        wait_durable: bool = False,
    ) -> Launched:
        """Claim a job for ``dedupe_key`` and start it unless it already exists.

        ``before_start(job_id)`` (blocking) runs between the claim and the start of a
        new job, e.g. to record a reply target durably before the job can end.
        ``entry`` (``"routine.slot"``) overrides the flow's entry. With
        ``wait_durable`` it returns only once the job's first checkpoint is committed.

        The claim, the start and the durability wait happen in one blocking call off
        the loop: the loop pays one hop per job, and ``Runtime.exec`` (which takes
        the first snapshot) does not run on it.

        Raises whatever the store or ``Runtime.exec`` raises (the job row then stays
        pending with its entry params and is started by the next resume).
        """
        proposed = self._new_job_id()
        # Registered before the job can possibly end; dropped again for a duplicate.
        ended = self._tracker.wait_terminal(proposed)
        start = _Start(flow, params, trigger, dedupe_key, before_start, entry, wait_durable)
        try:
            job_id, created, durable = await self._bridge.run_blocking(
                self._claim_and_start, proposed, start
            )
        except BaseException:
            self._tracker.forget(proposed)
            raise
        if not created:
            self._tracker.forget(proposed)
            logger.info("duplicate of job %s (key %s); not started again", job_id, dedupe_key)
            return Launched(job_id, False, None)
        return Launched(job_id, True, ended, durable)

    def _new_job_id(self) -> str:
        return uuid.UUID(int=self._ids.getrandbits(128), version=4).hex

    def _claim_and_start(self, proposed: str, start: _Start) -> tuple[str, bool, bool]:
        """Blocking part of :meth:`launch`, on a bridge thread."""
        job_id, created = self._store.claim(
            proposed, start.flow, start.trigger, start.dedupe_key, start.params
        )
        if not created:
            return job_id, False, False
        if start.before_start is not None:
            start.before_start(job_id)
        self._tracker.expect(job_id, start.trigger)
        try:
            self._runtime.exec(
                start.flow, entry_params=start.params, job_id=job_id, entry=start.entry
            )
        except BaseException:
            self._tracker.abandon(job_id)
            raise
        if not start.wait_durable:
            return job_id, True, False
        began = time.perf_counter()
        durable = self._store.wait_durable(job_id, None, DURABLE_TIMEOUT)
        if durable and self._observe_checkpoint is not None:
            self._observe_checkpoint(time.perf_counter() - began)
        return job_id, True, durable

    async def durable(self, job_id: str) -> bool:
        """Wait until the newest snapshot saved so far for ``job_id`` is committed.

        Returns False if the store closed first (the snapshot may not be durable).
        """
        return bool(await self._bridge.wrap(self._store.durable_future(job_id)))
