"""Start jobs from any trigger: claim them in the store and hand them to the Runtime.

The claim is the idempotency point: a job's row carries its dedupe key, so a
redelivered message or a re-fired timer slot never starts a second job. A batch is
started at once, before its claims commit, when the launcher can tell for sure that
its keys are free: no committed job owns them (one indexed read of the store) and
no claim of its own that could still commit holds them (``_claiming``, which only
the loop touches). Their claims are then queued *ahead* in the store's writer:
written before any snapshot of those jobs and retried, never dropped, if a
transaction fails, so the job's first checkpoint commits with its claim or after
it, and nothing is acked before that. The rest take the careful way: claim, await
the commit on the loop (no thread hop), then start. That is a key some claim still
holds, a job with a blocking ``before_start`` (recording a reply target, done on a
bridge thread), a store that is failing its writes, and a redelivered message
(``claim_first``: if its job killed the process, it must be on record before it
runs again, so that the resume can quarantine it).

Starting only queues a job's first activations (``Runtime.exec``); its logic runs
on Runtime threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import logging
import os
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

from daemon.bridge import Bridge
from daemon.checkpoints.records import Claim, ClaimRequest
from daemon.runtime_hooks import JobTracker

logger = logging.getLogger(__name__)
T = TypeVar("T")


class ClaimingStore(Protocol):
    """What the launcher needs of the checkpoint store (blocking calls)."""

    def submit_claims(
        self, claims: Sequence[ClaimRequest]
    ) -> concurrent.futures.Future[list[Claim]]: ...

    def queue_claims(
        self, claims: Sequence[ClaimRequest]
    ) -> concurrent.futures.Future[list[Claim]]: ...

    def key_owners(self, keys: Collection[str]) -> dict[str, str]: ...

    def reset_job(self, job_id: str) -> None: ...

    @property
    def healthy(self) -> bool: ...

    def durable_future_many(
        self, job_ids: Collection[str]
    ) -> concurrent.futures.Future[set[str]]: ...

    def durable_future(self, job_id: str) -> concurrent.futures.Future[Any]: ...


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


#: Namespace of the name-based (version 5) ids of jobs that have a dedupe key.
_JOB_ID_NAMESPACE = uuid.UUID("5f0c6d1e-3b8a-4c52-9e57-1d2f8a6b9c40")

#: Version and RFC 4122 variant bits of a UUID, as uuid.UUID(version=...) sets them.
_UUID_VERSION_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)
_UUID5_SET = (0x5000 << 64) | (0x8000 << 48)

#: Seconds a launch waits for the store (its claims, its first checkpoints) before
#: giving up: claims that time out fail the launch (the broker keeps the messages),
#: and a first checkpoint that times out leaves the caller's own durability wait
#: (before acking) to decide.
STORE_TIMEOUT = 30.0


class LaunchRequest(NamedTuple):
    """One job to claim and start (see :meth:`Launcher.launch`)."""

    flow: str
    params: dict[str, Any]
    trigger: str
    dedupe_key: str | None
    #: Blocking; runs between the claim and the start of a new job.
    before_start: Callable[[str], None] | None = None
    #: ``"routine.slot"`` overriding the flow's entry.
    entry: str | None = None
    #: Claim durably before starting even with ``start_first``: a redelivered
    #: message may be one whose job killed the process, and only a job that is on
    #: record before it runs can be quarantined when it does so again.
    claim_first: bool = False


class Launched(NamedTuple):
    """The outcome of one launch.

    ``ended`` resolves with the terminal snapshot; it is ``None`` for a duplicate.
    """

    job_id: str
    created: bool
    ended: asyncio.Future[dict[str, Any]] | None
    #: True when the first checkpoint was committed before launch returned.
    durable: bool = False


#: What the blocking half reports per request: (job_id, created, when it started), or
#: the error.
_Outcome = tuple[str, bool, float] | Exception


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
        # Keys of this launcher's claims that may not have committed yet, and those
        # claims in the order they were made (settled ones are dropped as batches come).
        self._claiming: dict[str, concurrent.futures.Future[list[Claim]]] = {}
        self._unsettled: deque[tuple[concurrent.futures.Future[list[Claim]], list[str]]] = deque()

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

        Raises whatever the store or ``Runtime.exec`` raises (the job row then stays
        pending with its entry params and is started by the next resume).
        """
        request = LaunchRequest(flow, params, trigger, dedupe_key, before_start, entry)
        [outcome] = await self.launch_many([request], wait_durable=wait_durable)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def launch_many(
        self,
        requests: Sequence[LaunchRequest],
        *,
        wait_durable: bool = False,
        on_started: Callable[[], None] | None = None,
        start_first: bool = False,
    ) -> list[Launched | Exception]:
        """Launch many jobs with one store transaction for their claims; results in order.

        The loop hands the claims to the store's writer and awaits its commit without
        a thread hop, then starts the new jobs (``Runtime.exec`` only queues their
        first activations). With ``start_first``, jobs whose keys are surely free
        start at once and their claims commit behind them (see the module's
        docstring); their params must be plain JSON, as parsed message bodies are.
        ``on_started()`` runs once they are started and their claims committed, before
        the wait for their first checkpoints (``wait_durable``): the caller can start
        its next batch meanwhile.
        A request that fails (claim or start) gets its exception in its place.
        """
        proposed = [self._job_id(r.dedupe_key) for r in requests]
        # Registered before the jobs can possibly end; dropped again for duplicates.
        waiters = [self._tracker.wait_terminal(job_id) for job_id in proposed]
        try:
            try:
                outcomes = await self._start(proposed, requests, start_first)
            finally:
                if on_started is not None:
                    on_started()
            started = [o for o in outcomes if not isinstance(o, Exception) and o[1]]
            durable = await self._first_checkpoints(started) if wait_durable and started else set()
        except BaseException:  # cancelled (shutdown): no result will pick the waiters up
            for job_id, ended in zip(proposed, waiters, strict=True):
                self._tracker.forget(job_id, ended)
            raise
        results: list[Launched | Exception] = []
        for job_id, request, ended, outcome in zip(
            proposed, requests, waiters, outcomes, strict=True
        ):
            if isinstance(outcome, Exception) or not outcome[1]:
                self._tracker.forget(job_id, ended)
            if isinstance(outcome, Exception):
                results.append(outcome)
            elif not outcome[1]:
                logger.info(
                    "duplicate of job %s (key %s); not started again",
                    outcome[0],
                    request.dedupe_key,
                )
                results.append(Launched(outcome[0], False, None))
            else:
                results.append(Launched(outcome[0], True, ended, outcome[0] in durable))
        return results

    def _job_id(self, dedupe_key: str | None) -> str:
        """The job id for a key: the same for every launch with that key.

        A job may run before its claim commits; if the process dies then, the
        redelivery's job gets the same id, so idempotency keys built from the job id
        (docs/durability.md) still match what the first run did outside.
        """
        if dedupe_key is None:
            return self._new_job_id()
        # uuid.uuid5(_JOB_ID_NAMESPACE, dedupe_key).hex, a third of the cost.
        digest = hashlib.sha1(_JOB_ID_NAMESPACE.bytes + dedupe_key.encode()).digest()
        bits = int.from_bytes(digest[:16], "big") & _UUID_VERSION_CLEAR | _UUID5_SET
        return f"{bits:032x}"

    def _new_job_id(self) -> str:
        """A random (version 4) UUID in hex, without building a UUID object."""
        bits = self._ids.getrandbits(128) & _UUID_VERSION_CLEAR | _UUID4_SET
        return f"{bits:032x}"

    async def _start(
        self, proposed: list[str], requests: Sequence[LaunchRequest], start_first: bool
    ) -> list[_Outcome]:
        if not start_first:
            return await self._claim_and_start(proposed, requests)
        early, committing = self._start_unclaimed(proposed, requests)
        careful = [i for i, outcome in enumerate(early) if outcome is None]
        claimed = (
            await self._claim_and_start(
                [proposed[i] for i in careful], [requests[i] for i in careful]
            )
            if careful
            else []
        )
        if committing is not None:
            # Returning only once the claims behind the jobs commit is what makes the
            # caller's batches grow under load (deliveries gather meanwhile): released
            # at once, batches of 1-2 halved the daemon bench's throughput.
            await _settled(self._bridge.wrap(committing))
        late = iter(claimed)
        return [outcome if outcome is not None else next(late) for outcome in early]

    def _start_unclaimed(
        self, proposed: list[str], requests: Sequence[LaunchRequest]
    ) -> tuple[list[_Outcome | None], concurrent.futures.Future[list[Claim]] | None]:
        """Start the requests whose keys are surely free, queueing their claims ahead;
        answer duplicates of committed jobs. ``None`` marks those left to the careful
        way. Also returns the future of the queued claims, if any.
        """
        outcomes: list[_Outcome | None] = [None] * len(requests)
        owners = self._committed_owners(requests)
        if owners is None:
            return outcomes, None
        starting: list[tuple[int, ClaimRequest]] = []
        held = self._claiming.keys()
        batch_keys: set[str] = set()
        for index, (job_id, r) in enumerate(zip(proposed, requests, strict=True)):
            key = r.dedupe_key
            if key is not None and key in owners:
                outcomes[index] = (owners[key], False, 0.0)
            elif self._may_start_first(r, held, batch_keys):
                starting.append((index, ClaimRequest(job_id, r.flow, r.trigger, key, r.params)))
            if key is not None:  # whichever way it went, a later copy in the batch waits
                batch_keys.add(key)
        if not starting:
            return outcomes, None
        claims = [claim for _, claim in starting]
        try:
            future = self._store.queue_claims(claims)
        except Exception as exc:  # e.g. closing: nothing queued, nothing started
            for index, _ in starting:
                outcomes[index] = exc
            return outcomes, None
        self._hold_keys(claims, future)
        future.add_done_callback(functools.partial(_report_lost_claims, claims))
        for index, claim in starting:
            outcomes[index] = self._try_start(claim.job_id, requests[index])
        return outcomes, future

    @staticmethod
    def _may_start_first(request: LaunchRequest, held: Collection[str], batch: set[str]) -> bool:
        key = request.dedupe_key
        if request.before_start is not None or request.claim_first:
            return False
        return key is None or not (key in held or key in batch)

    def _committed_owners(self, requests: Sequence[LaunchRequest]) -> dict[str, str] | None:
        """Committed owners of the requests' keys; None if the store cannot tell now."""
        if not self._store.healthy:  # claims would only fail: let them fail before starting
            return None
        self._drop_settled_claims()  # committed ones are now visible to the read below
        keys = [r.dedupe_key for r in requests if r.dedupe_key is not None]
        try:
            return self._store.key_owners(keys) if keys else {}
        except Exception as exc:
            logger.warning("dedupe keys could not be read (%s); claiming first", exc)
            return None

    def _hold_keys(
        self, claims: list[ClaimRequest], future: concurrent.futures.Future[list[Claim]]
    ) -> None:
        keys = [c.dedupe_key for c in claims if c.dedupe_key is not None]
        if keys:
            self._claiming.update(dict.fromkeys(keys, future))
            self._unsettled.append((future, keys))

    def _drop_settled_claims(self) -> None:
        """Forget the keys of claims that have committed (or failed) since the last batch."""
        while self._unsettled and self._unsettled[0][0].done():
            future, keys = self._unsettled.popleft()
            for key in keys:
                if self._claiming.get(key) is future:
                    del self._claiming[key]

    async def _claim_and_start(
        self, proposed: list[str], requests: Sequence[LaunchRequest]
    ) -> list[_Outcome]:
        claims_wanted = [
            ClaimRequest(job_id, r.flow, r.trigger, r.dedupe_key, r.params)
            for job_id, r in zip(proposed, requests, strict=True)
        ]
        try:
            future = self._store.submit_claims(claims_wanted)
            self._hold_keys(claims_wanted, future)
            claims = await _bounded(self._bridge.wrap(future), future, STORE_TIMEOUT, "claims")
        except Exception as exc:  # the claims' transaction failed: nothing started
            return [exc] * len(requests)
        outcomes: list[_Outcome] = []
        blocking: list[tuple[int, str, LaunchRequest]] = []
        for request, claim in zip(requests, claims, strict=True):
            if not claim.created:
                outcomes.append((claim.job_id, False, 0.0))
            elif request.before_start is not None:  # blocking: done on a bridge thread
                blocking.append((len(outcomes), claim.job_id, request))
                outcomes.append((claim.job_id, True, 0.0))
            else:
                outcomes.append(self._try_start(claim.job_id, request))
        if blocking:
            started = await self._bridge.run_blocking(
                lambda: [self._try_start(job_id, request) for _, job_id, request in blocking]
            )
            for (index, _, _), outcome in zip(blocking, started, strict=True):
                outcomes[index] = outcome
        return outcomes

    def _try_start(self, job_id: str, request: LaunchRequest) -> _Outcome:
        """Start one claimed job: its outcome, or the error that kept it from starting."""
        try:
            if request.before_start is not None:
                request.before_start(job_id)
            self._store.reset_job(job_id)  # a keyed id may have served a pruned job
            self._tracker.expect(job_id, request.trigger)
            try:
                self._runtime.exec(
                    request.flow, entry_params=request.params, job_id=job_id, entry=request.entry
                )
            except BaseException:
                self._tracker.abandon(job_id)
                raise
        except Exception as exc:
            return exc
        return job_id, True, time.perf_counter()

    async def _first_checkpoints(self, started: list[tuple[str, bool, float]]) -> set[str]:
        """The started jobs whose first checkpoint committed (waits at most STORE_TIMEOUT)."""
        future = self._store.durable_future_many([job_id for job_id, _, _ in started])
        try:
            durable = await _bounded(
                self._bridge.wrap(future), future, STORE_TIMEOUT, "first checkpoints"
            )
        except Exception as exc:  # e.g. asyncio.TimeoutError (not the builtin one before 3.11)
            # The jobs run anyway; the caller's own durability wait decides about acks.
            logger.warning("first checkpoints of %d job(s) not confirmed: %s", len(started), exc)
            return set()
        if self._observe_checkpoint is not None:
            done_at = time.perf_counter()
            try:
                for job_id, _, began in started:
                    if job_id in durable:
                        self._observe_checkpoint(done_at - began)
            except Exception:  # metrics must not undo a launch
                logger.exception("recording checkpoint latency failed")
        return durable

    async def durable(self, job_id: str) -> bool:
        """Wait until the newest snapshot saved so far for ``job_id`` is committed.

        Returns False if the store closed first (the snapshot may not be durable).
        """
        return bool(await self._bridge.wrap(self._store.durable_future(job_id)))


def _report_lost_claims(
    claims: list[ClaimRequest], future: concurrent.futures.Future[list[Claim]]
) -> None:
    """Log claims of started jobs that did not take (runs on the store's writer thread).

    Neither is expected. A claim queued ahead fails only if the store closes first
    (the jobs' rows are then missing too, so their messages stay unacked). A key
    taken after all would mean another writer of this store: every claim of this
    daemon goes through its one launcher, which checks keys before starting. Such a
    job keeps running, without its key on its row.
    """
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:
        logger.error("claims of %d started job(s) were not recorded: %s", len(claims), error)
        return
    for wanted, claim in zip(claims, future.result(), strict=True):
        if not claim.created:
            logger.error(
                "job %s was started under dedupe key %r, which job %s already had",
                wanted.job_id,
                wanted.dedupe_key,
                claim.job_id,
            )


async def _settled(awaitable: Awaitable[Any]) -> None:
    """Wait up to STORE_TIMEOUT for ``awaitable``, whatever its outcome.

    Shielded: a timeout must not withdraw claims of jobs that are running.
    """
    # Errors are reported by _report_lost_claims; acks wait for durability anyway.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.shield(awaitable), STORE_TIMEOUT)


async def _bounded(
    awaitable: Awaitable[T], future: concurrent.futures.Future[T], timeout: float, what: str
) -> T:
    """``awaitable`` (which wraps ``future``) within ``timeout`` seconds.

    On timeout the store request is withdrawn if the writer has not started it; one
    already inside a transaction finishes soon, and its result is still taken (claims
    that committed must not be dropped). Raises ``asyncio.TimeoutError`` otherwise.
    """
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        if future.cancel():
            raise asyncio.TimeoutError(
                f"store did not commit the {what} within {timeout:.0f}s"
            ) from None
    return await asyncio.wrap_future(future)
