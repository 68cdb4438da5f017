"""Coalesce acks into ``multiple`` acks, one write for many deliveries.

Every ack is a socket write on the loop, and each write hands the GIL to a busy
Runtime thread that the loop then waits behind. Deliveries on one channel carry
increasing delivery tags, so once a contiguous prefix of them is settled, one
``basic.ack(multiple=True)`` with the prefix's last tag settles them all.

Only a *contiguous* prefix may be acked that way (``multiple`` covers every
unsettled tag up to it), so a delivery still in progress holds back the acks of
later ones until it settles; nacks are sent one by one, in order. With
``ack = "on_complete"`` deliveries settle far apart in time, and the intake acks
them directly instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from enum import Enum

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
    outcome: Settle = Settle.PENDING


class AckBatcher:
    """Tracks deliveries per channel and settles them in tag order. Loop-only."""

    def __init__(self) -> None:
        self._channels: dict[int, deque[_Entry]] = {}
        self._entries: dict[int, _Entry] = {}
        self._flush: asyncio.Task[None] | None = None
        self._again = False

    def track(self, message: Delivery) -> None:
        """Register a delivery as it arrives (tags arrive in increasing order)."""
        entry = _Entry(message)
        self._entries[id(message)] = entry
        self._channels.setdefault(_channel_key(message), deque()).append(entry)

    def settle(self, message: Delivery, outcome: Settle) -> None:
        """Ack or requeue ``message`` with the next flush."""
        entry = self._entries.pop(id(message), None)
        if entry is None:
            return
        entry.outcome = outcome
        if self._flush is None or self._flush.done():
            self._flush = asyncio.get_running_loop().create_task(self._flush_all())
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
        queue = self._channels[key]
        last_ack: Delivery | None = None
        try:
            while queue and queue[0].outcome is not Settle.PENDING:
                entry = queue.popleft()
                if entry.outcome is Settle.ACK:
                    last_ack = entry.message
                    continue
                if last_ack is not None:
                    await last_ack.ack(multiple=True)
                    last_ack = None
                await entry.message.nack(requeue=True)
            if last_ack is not None:
                await last_ack.ack(multiple=True)
        except Exception as exc:  # channel gone: the broker requeues everything unacked
            logger.info("acks on a closed channel dropped (%s); they will be redelivered", exc)
            for entry in queue:
                self._entries.pop(id(entry.message), None)
            queue.clear()
        if not queue:
            del self._channels[key]


def _channel_key(message: Delivery) -> int:
    """Identity of the (underlying) channel a delivery came on; tags are per channel."""
    try:
        return id(message.channel)
    except Exception:  # already closed: any key works, its acks will be dropped
        return -1
