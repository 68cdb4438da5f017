"""AckBatcher against a model of the broker's ack rules: nothing is acked that was not
settled as acked, whatever order deliveries arrive and settle in (no broker needed)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from daemon.amqp.acks import AckBatcher, Settle, SettledTags


class UnknownDeliveryTag(Exception):
    """What RabbitMQ answers (PRECONDITION_FAILED, closing the channel) to a stale tag."""


class ModelChannel:
    """One channel's outstanding deliveries, acked and nacked as AMQP 0-9-1 says."""

    def __init__(self, tags: range) -> None:
        self.outstanding = set(tags)
        self.acked: set[int] = set()
        self.requeued: set[int] = set()
        self.calls: list[tuple[str, int, bool]] = []
        self.is_closed = False

    def _take(self, tag: int, multiple: bool) -> set[int]:
        if tag not in self.outstanding:
            raise UnknownDeliveryTag(tag)
        taken = {t for t in self.outstanding if t <= tag} if multiple else {tag}
        self.outstanding -= taken
        return taken

    async def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.calls.append(("ack", tag, multiple))
        self.acked |= self._take(tag, multiple)

    async def basic_nack(self, tag: int, multiple: bool = False, requeue: bool = True) -> None:
        self.calls.append(("nack", tag, multiple))
        self.requeued |= self._take(tag, multiple)


class ModelDelivery:
    def __init__(self, channel: ModelChannel, tag: int) -> None:
        self.channel = channel
        self.delivery_tag = tag
        self.processed = False

    async def ack(self, multiple: bool = False) -> None:
        self.processed = True
        await self.channel.basic_ack(self.delivery_tag, multiple)

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        self.processed = True
        await self.channel.basic_nack(self.delivery_tag, multiple, requeue)


def arrival_order(count: int, rng: random.Random) -> list[int]:
    """Tags 1..count in order, with neighbours swapped now and then (a delivery on
    aio-pika's slower path overtaken by the direct hand-over)."""
    order = list(range(1, count + 1))
    for i in range(len(order) - 1):
        if rng.random() < 0.2:
            order[i], order[i + 1] = order[i + 1], order[i]
    return order


async def play(seed: int) -> tuple[ModelChannel, set[int], set[int], set[int]]:
    rng = random.Random(seed)
    count = rng.randint(1, 60)
    channel = ModelChannel(range(1, count + 1))
    dropped = {t for t in range(1, count + 1) if rng.random() < 0.05}  # never reach us
    arriving = [t for t in arrival_order(count, rng) if t not in dropped]
    batcher = AckBatcher()
    tracked: list[ModelDelivery] = []
    acked: set[int] = set()
    requeued: set[int] = set()
    while arriving or tracked:
        if arriving and (not tracked or rng.random() < 0.5):
            delivery = ModelDelivery(channel, arriving.pop(0))
            batcher.track(delivery)  # type: ignore[arg-type]
            tracked.append(delivery)
        else:
            delivery = tracked.pop(rng.randrange(len(tracked)))
            outcome = Settle.REQUEUE if rng.random() < 0.15 else Settle.ACK
            (requeued if outcome is Settle.REQUEUE else acked).add(delivery.delivery_tag)
            batcher.settle(delivery, outcome)  # type: ignore[arg-type]
        if rng.random() < 0.3:
            await asyncio.sleep(0)  # let a flush run part way
    await batcher.drain()
    return channel, acked, requeued, dropped


@pytest.mark.parametrize("seed", range(300))
def test_only_settled_deliveries_are_acked_in_any_arrival_and_settle_order(seed: int) -> None:
    channel, acked, requeued, dropped = asyncio.run(play(seed))
    assert channel.acked == acked
    assert channel.requeued == requeued
    assert channel.outstanding == dropped  # left for the broker to redeliver


def test_in_order_deliveries_settled_together_take_one_ack() -> None:
    async def main() -> ModelChannel:
        channel = ModelChannel(range(1, 101))
        batcher = AckBatcher()
        deliveries = [ModelDelivery(channel, tag) for tag in range(1, 101)]
        for delivery in deliveries:
            batcher.track(delivery)  # type: ignore[arg-type]
        for delivery in deliveries:
            batcher.settle(delivery, Settle.ACK)  # type: ignore[arg-type]
        await batcher.drain()
        return channel

    channel = asyncio.run(main())
    assert channel.calls == [("ack", 100, True)]


def test_an_overtaken_delivery_is_never_acked_by_a_later_ones_multiple_ack() -> None:
    async def main() -> ModelChannel:
        channel = ModelChannel(range(1, 4))
        batcher = AckBatcher()
        first, second, third = (ModelDelivery(channel, tag) for tag in (1, 2, 3))
        batcher.track(second)  # type: ignore[arg-type]  # overtook the first
        batcher.settle(second, Settle.ACK)  # type: ignore[arg-type]
        await batcher.drain()
        batcher.track(first)  # type: ignore[arg-type]
        batcher.track(third)  # type: ignore[arg-type]
        batcher.settle(third, Settle.ACK)  # type: ignore[arg-type]
        batcher.settle(first, Settle.REQUEUE)  # type: ignore[arg-type]
        await batcher.drain()
        return channel

    channel = asyncio.run(main())
    assert channel.calls == [("ack", 2, False), ("nack", 1, False), ("ack", 3, True)]
    assert channel.requeued == {1} and channel.acked == {2, 3}


def test_settled_tags_merge_runs_above_a_gap() -> None:
    tags = SettledTags()
    for tag in (1, 2, 5, 7, 6, 4):
        tags.add(tag)
    assert tags.through == 2 and tags.gaps == 1  # 3 is unknown; 4-7 wait above it
    tags.add(3)
    assert tags.through == 7 and tags.gaps == 0
    tags.add(9)
    tags.add(9)
    assert tags.through == 7 and tags.gaps == 1


def test_a_closed_channels_record_is_dropped_once_its_queue_is_empty() -> None:
    async def main() -> AckBatcher:
        old, new = ModelChannel(range(1, 3)), ModelChannel(range(1, 3))
        batcher = AckBatcher()
        delivery = ModelDelivery(old, 1)
        batcher.track(delivery)  # type: ignore[arg-type]
        batcher.settle(delivery, Settle.ACK)  # type: ignore[arg-type]
        await batcher.drain()
        old.is_closed = True  # a reconnect: the next delivery comes on a new channel
        batcher.track(ModelDelivery(new, 1))  # type: ignore[arg-type]
        return batcher

    batcher: Any = asyncio.run(main())
    assert len(batcher._channels) == 1
