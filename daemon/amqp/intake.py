"""What happens to one AMQP delivery (DESIGN.md §4 "Messages").

1. Not accepting any more (draining)? -> nack with requeue.
2. Body not a JSON object? -> copy to ``<queue>.dlq`` with ``x-routilux-error``
   (confirmed), then ack; outcome ``rejected``.
3. Wait for a free capacity slot (bounded by Runtime threads), so unacked
   deliveries — and with them the broker's prefetch window — apply back-pressure.
4. Start the job and claim it by ``message_id`` (see :mod:`daemon.launcher` for
   which comes first); a known key is a ``duplicate`` (acked, nothing started),
   else ``accepted``. Deliveries that arrive while earlier batches' claims commit
   are started and claimed together (one store transaction): per-delivery
   overhead on the loop is what bounds throughput.
5. Ack when the first checkpoint is durable (``on_checkpoint``, acks batched by
   :mod:`daemon.amqp.acks`) or when the terminal snapshot is durable (``on_complete``).
6. With ``reply_to``, the result goes out through the outbox when the job ends.

A delivery whose channel died meanwhile is never acked on the new channel: the
broker redelivers it and the claim turns it into a duplicate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import deque
from collections.abc import Callable, Collection, Coroutine
from typing import Any, Literal, Protocol

import orjson

from daemon.amqp.acks import AckBatcher, Settle
from daemon.amqp.consumer import QueueBinding
from daemon.amqp.delivery import Delivery
from daemon.amqp.publisher import Publisher, ReplyOutbox, ReplyTarget
from daemon.bridge import Bridge
from daemon.launcher import Launched, Launcher, LaunchRequest

logger = logging.getLogger(__name__)

AckMode = Literal["on_checkpoint", "on_complete"]


class IntakeMetrics(Protocol):
    def message(self, queue: str, outcome: str) -> None: ...

    def dead_lettered(self, queue: str) -> None: ...


#: Batches whose claims may be committing at once. Deliveries arriving meanwhile wait
#: in the inbox and form the next batch, so batches grow with the load: measured with
#: the daemon bench, batches of ~30 and twice the throughput of launching each
#: delivery on its own (per-batch work dominated the loop's time). Paired runs of 3
#: against 2 and 4: p99 at 1,000 msgs/s 6.8-7.7 ms against 7.4-9.9 (2) at the same
#: throughput; 4 lost 10-15% of it.
LAUNCHES_IN_FLIGHT = 3

#: Deepest nesting accepted in a body: deeper data could not be checkpointed quickly
#: (orjson stops at 255 levels, and a snapshot wraps entry params in a few more).
MAX_BODY_DEPTH = 200


def parse_body(body: bytes) -> dict[str, Any]:
    """The entry params of a message; raises ``ValueError`` with the reason otherwise.

    Rejected: bytes that are not UTF-8 JSON, anything but an object, NaN/Infinity
    (not JSON, and no checkpoint could hold them), nesting deeper than
    ``MAX_BODY_DEPTH``.
    """
    value = _fast_loads(body)
    if value is None:
        value = _strict_loads(body)
    if not isinstance(value, dict):
        raise ValueError(f"body must be a JSON object, got {type(value).__name__}")
    # Each level takes at least one byte, so only a longer body can nest too deep.
    if len(body) > MAX_BODY_DEPTH and _depth_exceeds(value, MAX_BODY_DEPTH):
        raise ValueError(f"body is nested deeper than {MAX_BODY_DEPTH} levels")
    return value


#: A run of 20+ digits: an integer orjson would turn into a float (beyond 64 bits).
_LONG_DIGITS = re.compile(rb"[0-9]{20}")


def _fast_loads(body: bytes) -> Any:
    """orjson's parse of a valid body, or None to let the stdlib decide (and explain).

    orjson is several times faster on the loop's hot path, but it reads integers
    beyond 64 bits as floats; such bodies go to the stdlib parser, which keeps them.
    """
    if _LONG_DIGITS.search(body) is not None:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _strict_loads(body: bytes) -> Any:
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError(f"body is nested deeper than {MAX_BODY_DEPTH} levels") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"body is not valid JSON: {name} is not a JSON number")


def _depth_exceeds(value: Any, limit: int) -> bool:
    """True if containers nest deeper than ``limit`` (iterative: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


class Intake:
    """Turns deliveries into jobs. Runs on the loop; owns one task per delivery."""

    def __init__(
        self,
        *,
        bindings: list[QueueBinding],
        launcher: Launcher,
        publisher: Publisher,
        outbox: ReplyOutbox,
        metrics: IntakeMetrics,
        bridge: Bridge,
        ack_mode: AckMode,
        capacity: int,
    ) -> None:
        self._bindings = {b.queue: b for b in bindings}
        self._launcher = launcher
        self._publisher = publisher
        self._outbox = outbox
        self._metrics = metrics
        self._bridge = bridge
        self._ack_mode = ack_mode
        self._capacity = _Capacity(capacity)
        self._accepting = True
        self._tasks: dict[asyncio.Task[None], Collection[Delivery]] = {}
        self._inbox: list[tuple[str, Delivery]] = []
        self._launching = 0
        self._reply_tasks: set[asyncio.Task[None]] = set()
        self._outbox_lock = asyncio.Lock()
        self._live_replies: set[str] = set()
        self._flush_waiting = False
        # on_complete settles deliveries far apart: a slow job would hold back the
        # batched acks of every later delivery, so those are acked one by one.
        self._acks = AckBatcher() if ack_mode == "on_checkpoint" else None

    def on_message(self, queue: str, message: Delivery) -> None:
        """Consumer callback: queue the delivery for this iteration's batch; never blocks."""
        if self._acks is not None:
            self._acks.track(message)
        self._inbox.append((queue, message))
        if len(self._inbox) == 1 and self._launching < LAUNCHES_IN_FLIGHT:
            asyncio.get_running_loop().call_soon(self._start_batch)

    def _start_batch(self) -> None:
        if self._launching >= LAUNCHES_IN_FLIGHT:
            return  # the next launch to finish starts it, with whatever arrived meanwhile
        batch, self._inbox = self._inbox, []
        if not batch:
            return
        owned = {id(message): message for _, message in batch}
        # settle() requeues, at shutdown, only what the batch still owns (a live view).
        self._track(self._handle_safely(batch, owned), owned.values())

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    async def _handle_safely(
        self, batch: list[tuple[str, Delivery]], owned: dict[int, Delivery]
    ) -> None:
        try:
            await self._handle(batch, owned)
        except Exception:  # a bug must not leave deliveries unsettled (they would block acks)
            logger.exception("handling %d message(s) failed; requeued", len(owned))
            for message in list(owned.values()):
                await self._requeue(message)

    async def _ack(self, message: Delivery) -> None:
        if self._acks is not None:
            self._acks.settle(message, Settle.ACK)
        else:
            await _ack(message)

    async def _requeue(self, message: Delivery) -> None:
        if self._acks is not None:
            self._acks.settle(message, Settle.REQUEUE)
        else:
            await _settle(message, requeue=True)

    def stop(self) -> None:
        """Accept nothing more; deliveries not yet started will be requeued."""
        self._accepting = False

    async def settle(self, timeout: float) -> None:
        """Let delivery tasks finish their acks for up to ``timeout``, then nack the rest.

        Jobs whose deliveries are nacked here are checkpointed in the store and
        resume on the next start; their redelivery is then a duplicate.
        """
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        for task, messages in list(self._tasks.items()):
            task.cancel()
            for message in list(messages):
                await self._requeue(message)
        leftovers, self._inbox = self._inbox, []
        for _, message in leftovers:
            await self._requeue(message)
        if self._acks is not None:
            await self._acks.drain()
        if self._reply_tasks:
            await asyncio.wait(list(self._reply_tasks), timeout=timeout)

    async def _handle(
        self,
        batch: list[tuple[str, Delivery]],
        owned: dict[int, Delivery],
    ) -> None:
        """Start a batch; ``owned`` holds the deliveries this call has yet to settle or
        hand on (to a dead-letter task, back to the inbox)."""
        valid: list[tuple[str, Delivery, dict[str, Any]]] = []
        for queue, message in batch:
            if not self._accepting:
                del owned[id(message)]
                await self._requeue(message)
                continue
            try:
                valid.append((queue, message, parse_body(message.body)))
            except ValueError as exc:  # dead-lettering waits for a confirm: not in the batch
                del owned[id(message)]
                self._track(self._reject(queue, message, str(exc)), [message])
        if not valid:
            return
        release_launch = self._launch_slot()
        try:
            taken = await self._capacity.take_some(len(valid))
            if taken < len(valid):  # the rest waits in the inbox, holding no capacity
                for _, message, _ in valid[taken:]:
                    del owned[id(message)]
                self._inbox[:0] = [(queue, message) for queue, message, _ in valid[taken:]]
                valid = valid[:taken]
            await self._start_and_settle(valid, owned, release_launch)
        finally:
            release_launch()  # no-op once the launcher called it

    async def _start_and_settle(
        self,
        valid: list[tuple[str, Delivery, dict[str, Any]]],
        owned: dict[int, Delivery],
        on_started: Callable[[], None],
    ) -> None:
        """Launch ``valid`` (one capacity unit each, already taken) and settle each."""
        if not self._accepting:  # stopped while waiting for capacity
            self._capacity.give(len(valid))
            for _, message, _ in valid:
                del owned[id(message)]
                await self._requeue(message)
            return
        unsettled = len(valid)
        try:
            outcomes = await self._launch(valid, on_started)
            for item, outcome in zip(valid, outcomes, strict=True):
                unsettled -= 1
                del owned[id(item[1])]
                await self._settle_launch(item, outcome)
        finally:
            self._capacity.give(unsettled)  # what a failure left unsettled (owned: requeued)

    async def _launch(
        self,
        valid: list[tuple[str, Delivery, dict[str, Any]]],
        on_started: Callable[[], None],
    ) -> list[Launched | Exception]:
        requests = []
        for queue, message, params in valid:
            binding = self._bindings[queue]
            requests.append(
                LaunchRequest(
                    binding.flow,
                    params,
                    binding.trigger,
                    message.message_id,
                    before_start=self._reply_recorder(message),
                    entry=binding.entry,
                    claim_first=bool(message.redelivered),
                )
            )
        return await self._launcher.launch_many(
            requests,
            wait_durable=self._ack_mode == "on_checkpoint",
            on_started=on_started,
            start_first=True,
        )

    def _launch_slot(self) -> Callable[[], None]:
        """Count a batch in flight; the returned release (idempotent) ends that once the
        batch's jobs are started, and lets the deliveries that arrived meanwhile go."""
        self._launching += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self._launching -= 1
            if self._inbox:
                asyncio.get_running_loop().call_soon(self._start_batch)

        return release

    async def _settle_launch(
        self,
        item: tuple[str, Delivery, dict[str, Any]],
        outcome: Launched | Exception,
    ) -> None:
        """Ack, requeue or wait on one started delivery; its capacity unit goes back now,
        or when its job ends."""
        queue, message, _ = item
        if isinstance(outcome, Exception):  # e.g. store unhealthy: the broker keeps it
            self._capacity.give()
            logger.error(
                "message %s from %s not started (%s); requeued", message.message_id, queue, outcome
            )
            await self._requeue(message)
            return
        if outcome.ended is None:
            self._capacity.give()
        else:
            outcome.ended.add_done_callback(self._capacity.give_back)
            self._after_end(outcome, message)
        if self._acks is not None and (outcome.ended is None or outcome.durable):
            self._acks.settle(message, Settle.ACK)  # the common case, without a task
        else:
            self._track(self._ack_when_due(outcome, message), [message])
        # Counted last: whatever it raises, the delivery and its capacity are settled.
        self._metrics.message(queue, "accepted" if outcome.created else "duplicate")

    def _track(self, work: Coroutine[Any, Any, None], messages: Collection[Delivery]) -> None:
        """Run ``work`` as a task whose unsettled ``messages`` settle() requeues on shutdown."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks[task] = messages
        task.add_done_callback(self._forget)

    async def _ack_when_due(self, launched: Launched, message: Delivery) -> None:
        durable = True
        if launched.ended is not None:
            if self._ack_mode == "on_complete":
                await launched.ended
                durable = await self._launcher.durable(launched.job_id)
            elif not launched.durable:
                durable = await self._launcher.durable(launched.job_id)
        if durable:
            await self._ack(message)
        else:  # never ack what the store did not commit; the claim dedupes the redelivery
            await self._requeue(message)

    async def _reject(self, queue: str, message: Delivery, reason: str) -> None:
        logger.warning("dead-lettering message %s from %s: %s", message.message_id, queue, reason)
        try:
            await self._publisher.dead_letter(queue, message, reason)
        except Exception as exc:  # not confirmed: leave it unacked, it comes back
            logger.warning("dead-letter publish failed (%s); message will be redelivered", exc)
            await self._requeue(message)
            return
        self._metrics.message(queue, "rejected")
        self._metrics.dead_lettered(queue)
        await self._ack(message)

    def _reply_recorder(self, message: Delivery) -> Callable[[str], None] | None:
        """Records the reply target in the outbox (blocking) before the job can end."""
        reply_to, correlation_id = message.reply_to, message.correlation_id
        if not reply_to:
            return None
        outbox = self._outbox
        return lambda job_id: outbox.add_reply(job_id, reply_to, correlation_id)

    def _after_end(self, launched: Launched, message: Delivery) -> None:
        if not message.reply_to or launched.ended is None:
            return
        target = ReplyTarget(launched.job_id, message.reply_to, message.correlation_id)
        task = asyncio.get_running_loop().create_task(self._reply(target, launched.ended))
        self._reply_tasks.add(task)
        task.add_done_callback(self._reply_tasks.discard)

    async def _reply(self, target: ReplyTarget, ended: asyncio.Future[dict[str, Any]]) -> None:
        self._live_replies.add(target.job_id)
        try:
            snapshot = await ended
            if not await self._launcher.durable(target.job_id):
                return  # the outbox keeps it; the job finishes again after a restart
            async with self._outbox_lock:
                await self._publish_reply(target, snapshot)
        finally:
            self._live_replies.discard(target.job_id)

    async def _publish_reply(self, target: ReplyTarget, snapshot: dict[str, Any]) -> bool:
        """Publish one reply and mark it sent; False (left in the outbox) if not confirmed."""
        try:
            await self._publisher.reply(target, snapshot)
        except Exception as exc:  # flushed again after reconnect/restart
            logger.warning("reply for job %s not published yet: %s", target.job_id, exc)
            return False
        await self._bridge.run_blocking(self._outbox.mark_replied, target.job_id)
        return True

    async def flush_outbox(self) -> int:
        """Publish every reply still in the outbox whose job has ended; returns how many.

        Serialised with live replies (one lock), so a reply is published once; a
        flush requested while another one waits is merged into it.
        """
        if self._flush_waiting:
            return 0
        self._flush_waiting = True
        async with self._outbox_lock:
            self._flush_waiting = False
            sent = 0
            for target, snapshot in await self._bridge.run_blocking(self._outbox.pending_replies):
                if snapshot is None or target.job_id in self._live_replies:
                    continue
                if not await self._publish_reply(target, snapshot):
                    break
                sent += 1
        return sent


class _Capacity:
    """Free Runtime capacity, in jobs; loop-only.

    A batch takes what is free (waiting only while nothing is), never holding some
    units while it waits for more: batches that each held part of what they needed
    could otherwise wait on one another for good. Waiters are served in order, each
    handed its units directly, so a newcomer cannot take them first.
    """

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: deque[tuple[int, asyncio.Future[int]]] = deque()

    async def take_some(self, wanted: int) -> int:
        """Wait until a unit is free, then take up to ``wanted`` units; how many."""
        if self._free > 0 and not self._waiters:
            taken = min(wanted, self._free)
            self._free -= taken
            return taken
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append((wanted, waiter))
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give(waiter.result())  # handed over as it was cancelled: give it back
            raise

    def give(self, count: int = 1) -> None:
        """Return ``count`` units, to the first waiters in line if any."""
        if count <= 0:
            return
        self._free += count
        while self._waiters and self._free > 0:
            wanted, waiter = self._waiters.popleft()
            if waiter.done():  # cancelled while waiting
                continue
            taken = min(wanted, self._free)
            self._free -= taken
            waiter.set_result(taken)

    def give_back(self, _ended: asyncio.Future[Any]) -> None:
        """Done-callback form of ``give()`` for a job's end."""
        self.give()


async def _ack(message: Delivery) -> None:
    try:
        await message.ack()
    except Exception as exc:  # channel died: the broker redelivers, the claim dedupes
        logger.info("ack of %s skipped (%s); it will be redelivered", message.message_id, exc)


async def _settle(message: Delivery, *, requeue: bool) -> None:
    if message.processed:
        return
    try:
        await message.nack(requeue=requeue)
    except Exception as exc:
        logger.info("nack of %s skipped (%s)", message.message_id, exc)
