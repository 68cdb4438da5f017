"""Coalesce acks into ``multiple`` acks, one write for many deliveries.

Every ack is a socket write on the loop, and each write hands the GIL to a busy
Runtime thread that the loop then waits behind. Deliveries on one channel carry
increasing delivery tags, so once a contiguous prefix of them is settled, one
``basic.ack(multiple=True)`` with the prefix's last tag settles them all.

``multiple`` covers every unsettled tag up to it, so it is used only where every
lower tag of the channel is known to be settled. Deliveries may reach the batcher
slightly out of tag order (while aio-pika's consumer and the direct hand-over both
deliver, after a reconnect), and a delivery the client dropped is never seen at
all; a tag above such a gap is acked on its own. Deliveries are settled in tag
order: one still in progress holds back the acks of later ones until it settles;
nacks are sent one by one. With ``ack = "on_complete"`` deliveries settle far apart
in time, and the intake acks them directly instead.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any

from daemon.amqp.delivery import Delivery

logger = logging.getLogger(__name__)


class Settle(Enum):
    """What to do with one delivery."""

    PENDING = "pending"
    ACK = "ack"
    REQUEUE = "requeue"


@dataclass
class _Entry:
    message: Delivery
    #: Its delivery tag; 0 if it has none (RabbitMQ always sends one; such a delivery
    #: cannot be settled and is left to the broker).
    tag: int
    outcome: Settle = Settle.PENDING


class SettledTags:
    """Which delivery tags of one channel have been settled: every tag up to
    :attr:`through`, and runs of tags above it (settled while a lower tag was
    still unknown)."""

    def __init__(self) -> None:
        self.through = 0
        self._runs: list[list[int]] = []  # sorted, disjoint [first, last] above `through`

    def add(self, tag: int) -> None:
        """Mark ``tag`` settled."""
        if tag <= self.through:
            return
        if tag == self.through + 1:
            self.through = tag
            while self._runs and self._runs[0][0] == self.through + 1:
                self.through = self._runs.pop(0)[1]
            return
        index = bisect.bisect_left(self._runs, [tag])
        before = self._runs[index - 1] if index else None
        after = self._runs[index] if index < len(self._runs) else None
        if (before is not None and before[1] >= tag) or (after is not None and after[0] == tag):
            return  # settled before
        if before is not None and before[1] == tag - 1:
            before[1] = tag
            if after is not None and after[0] == tag + 1:
                before[1] = after[1]
                del self._runs[index]
        elif after is not None and after[0] == tag + 1:
            after[0] = tag
        else:
            self._runs.insert(index, [tag, tag])

    @property
    def gaps(self) -> int:
        """Runs above :attr:`through`: how many gaps of unknown tags there are."""
        return len(self._runs)


class _ChannelAcks:
    """One channel's tracked deliveries, in tag order, and its settled tags."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.queue: deque[_Entry] = deque()
        self.settled = SettledTags()

    def insert(self, entry: _Entry) -> None:
        queue = self.queue
        if not queue or queue[-1].tag <= entry.tag or not entry.tag:
            queue.append(entry)  # the usual case: tags arrive in order
            return
        index = len(queue)
        while index and queue[index - 1].tag > entry.tag:
            index -= 1
        queue.insert(index, entry)


class AckBatcher:
    """Tracks deliveries per channel and settles them in tag order. Loop-only."""

    def __init__(self) -> None:
        self._channels: dict[int, _ChannelAcks] = {}
        self._entries: dict[int, _Entry] = {}
        self._flush: asyncio.Task[None] | None = None
        self._again = False

    def track(self, message: Delivery) -> None:
        """Register a delivery as it arrives."""
        entry = _Entry(message, message.delivery_tag or 0)
        self._entries[id(message)] = entry
        channel = _channel_of(message)
        acks = self._channels.get(id(channel))
        if acks is None or acks.channel is not channel:
            self._forget_closed_channels()
            acks = self._channels[id(channel)] = _ChannelAcks(channel)
        acks.insert(entry)

    def _forget_closed_channels(self) -> None:
        for key, acks in list(self._channels.items()):
            if not acks.queue and _is_closed(acks.channel):
                del self._channels[key]

    def settle(self, message: Delivery, outcome: Settle) -> None:
        """Ack or requeue ``message`` with the next flush."""
        entry = self._entries.pop(id(message), None)
        if entry is None:
            return
        entry.outcome = outcome
        if self._flush is None or self._flush.done():
            self._flush = asyncio.get_running_loop().create_task(self._flush_all())
            self._flush.add_done_callback(_log_flush_failure)
        else:
            self._again = True

    async def drain(self) -> None:
        """Wait for the flush in progress (used before closing the channel)."""
        while self._flush is not None and not self._flush.done():
            await asyncio.gather(self._flush, return_exceptions=True)

    async def _flush_all(self) -> None:
        while True:
            self._again = False
            for key in list(self._channels):
                await self._flush_channel(key)
            if not self._again:
                return

    async def _flush_channel(self, key: int) -> None:
        acks = self._channels.get(key)
        if acks is None:
            return
        try:
            await _send_settled(acks)
        except Exception as exc:
            if not _is_closed(acks.channel):  # a bug, not a lost channel: keep the rest
                logger.exception("settling a delivery on a live channel failed")
                return
            # The broker requeues everything unacked on a channel it closed.
            logger.info("acks on a closed channel dropped (%s); they will be redelivered", exc)
            for entry in acks.queue:
                self._entries.pop(id(entry.message), None)
            acks.queue.clear()
        # The settled tags must outlive an empty queue while the channel lives: its next
        # delivery continues the numbering. (A track() during a send above may already
        # have dropped this record, and a new channel may have taken its key since.)
        if not acks.queue and _is_closed(acks.channel) and self._channels.get(key) is acks:
            del self._channels[key]


async def _send_settled(acks: _ChannelAcks) -> None:
    """Ack or nack the settled deliveries at the front of the channel's queue, in order."""
    queue, settled = acks.queue, acks.settled
    last_ack: Delivery | None = None  # acked with `multiple`: every lower tag is settled
    while queue and queue[0].outcome is not Settle.PENDING:
        entry = queue.popleft()
        if entry.tag:
            settled.add(entry.tag)
        if entry.outcome is Settle.ACK and 0 < entry.tag <= settled.through:
            last_ack = entry.message
            continue
        if last_ack is not None:
            await last_ack.ack(multiple=True)
            last_ack = None
        if not entry.tag:  # RabbitMQ always sends one; without it nothing can be settled
            logger.warning("delivery %s has no delivery tag; left unsettled", entry.message)
        elif entry.outcome is Settle.ACK:  # a lower tag is unknown yet: this one alone
            await entry.message.ack()
        else:
            await entry.message.nack(requeue=True)
    if last_ack is not None:
        await last_ack.ack(multiple=True)


def _channel_of(message: Delivery) -> Any:
    """The (underlying) channel a delivery came on; tags are per channel."""
    try:
        return message.channel
    except Exception:  # already closed: any key works, its acks will be dropped
        return None


def _log_flush_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("ack flush failed", exc_info=task.exception())


def _is_closed(channel: Any) -> bool:
    return channel is None or bool(getattr(channel, "is_closed", False))
