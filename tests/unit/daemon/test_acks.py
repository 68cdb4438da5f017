"""AckBatcher against a model of the broker's ack rules: nothing is acked that was not
settled as acked, whatever order deliveries arrive and settle in (no broker needed)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.amqp.acks import AckBatcher, Settle, SettledTags


class UnknownDeliveryTag(Exception):
    """What RabbitMQ answers (PRECONDITION_FAILED, closing the channel) to a stale tag."""


class ChannelClosed(Exception):
    """A send on a channel that is gone."""


class ModelChannel:
    """One channel's outstanding deliveries, acked and nacked as AMQP 0-9-1 says.

    Each send first yields to the loop a random number of times, as aiormq's sends
    wait for the connection's writer, so tracks and settles land mid-flush.
    """

    def __init__(self, tags: range, rng: random.Random | None = None) -> None:
        self.outstanding = set(tags)
        self.acked: set[int] = set()
        self.requeued: set[int] = set()
        self.calls: list[tuple[str, int, bool]] = []
        self.errors: list[Exception] = []
        self.is_closed = False
        self._rng = rng

    async def _pause(self) -> None:
        for _ in range(self._rng.randrange(3) if self._rng else 0):
            await asyncio.sleep(0)

    def _take(self, tag: int, multiple: bool) -> set[int]:
        if self.is_closed:
            raise ChannelClosed(tag)
        if tag not in self.outstanding:
            self.errors.append(UnknownDeliveryTag(tag))
            raise self.errors[-1]
        taken = {t for t in self.outstanding if t <= tag} if multiple else {tag}
        self.outstanding -= taken
        return taken

    async def basic_ack(self, tag: int, multiple: bool = False) -> None:
        await self._pause()
        self.calls.append(("ack", tag, multiple))
        self.acked |= self._take(tag, multiple)

    async def basic_nack(self, tag: int, multiple: bool = False, requeue: bool = True) -> None:
        await self._pause()
        self.calls.append(("nack", tag, multiple))
        self.requeued |= self._take(tag, multiple)


class ModelDelivery:
    def __init__(self, channel: ModelChannel, tag: int) -> None:
        self.channel = channel
        self.delivery_tag = tag
        self.processed = False

    async def ack(self, multiple: bool = False) -> None:
        assert not self.processed, "settled twice"
        self.processed = True
        await self.channel.basic_ack(self.delivery_tag, multiple)

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        assert not self.processed, "settled twice"
        self.processed = True
        await self.channel.basic_nack(self.delivery_tag, multiple, requeue)


def arrival_order(count: int, rng: random.Random) -> list[int]:
    """Tags 1..count in order, some moved up to 3 places earlier (deliveries on the
    direct hand-over overtaking ones still on aio-pika's slower path)."""
    order = list(range(1, count + 1))
    for i in range(1, len(order)):
        if rng.random() < 0.2:
            j = max(0, i - rng.randint(1, 3))
            order.insert(j, order.pop(i))
    return order


class Script:
    """What the test did to each channel, to check the broker's view against."""

    def __init__(self) -> None:
        self.acked: dict[ModelChannel, set[int]] = {}
        self.requeued: dict[ModelChannel, set[int]] = {}
        self.dropped: dict[ModelChannel, set[int]] = {}


async def play(seed: int) -> tuple[list[ModelChannel], Script]:
    """Deliveries on a channel that may be replaced (a reconnect) part way."""
    rng = random.Random(seed)
    batcher = AckBatcher()
    script = Script()
    channels: list[ModelChannel] = []
    tracked: list[ModelDelivery] = []
    for _ in range(rng.randint(1, 3)):
        count = rng.randint(1, 40)
        channel = ModelChannel(range(1, count + 1), rng)
        channels.append(channel)
        for side in (script.acked, script.requeued):
            side[channel] = set()
        script.dropped[channel] = {t for t in range(1, count + 1) if rng.random() < 0.05}
        arriving = [t for t in arrival_order(count, rng) if t not in script.dropped[channel]]
        while arriving or (tracked and rng.random() < 0.7):
            if arriving and (not tracked or rng.random() < 0.5):
                delivery = ModelDelivery(channel, arriving.pop(0))
                batcher.track(delivery)  # type: ignore[arg-type]
                tracked.append(delivery)
            else:
                delivery = tracked.pop(rng.randrange(len(tracked)))
                outcome = Settle.REQUEUE if rng.random() < 0.15 else Settle.ACK
                side = script.requeued if outcome is Settle.REQUEUE else script.acked
                side[delivery.channel].add(delivery.delivery_tag)
                batcher.settle(delivery, outcome)  # type: ignore[arg-type]
            if rng.random() < 0.3:
                await asyncio.sleep(0)  # let a flush run part way
        if rng.random() < 0.5:
            await asyncio.sleep(0)
        channel.is_closed = len(channels) < 3 and rng.random() < 0.7  # else it lives on
    for delivery in tracked:  # the rest settles late, some on closed channels
        batcher.settle(delivery, Settle.ACK)  # type: ignore[arg-type]
        script.acked[delivery.channel].add(delivery.delivery_tag)
    await batcher.drain()
    return channels, script


@pytest.mark.parametrize("seed", range(400))
def test_only_settled_deliveries_are_acked_in_any_arrival_and_settle_order(seed: int) -> None:
    channels, script = asyncio.run(play(seed))
    for channel in channels:
        assert not channel.errors  # never a stale or doubled tag
        assert channel.acked <= script.acked[channel]
        assert channel.requeued <= script.requeued[channel]
        if not channel.is_closed:  # an open channel settles exactly what was settled
            assert channel.acked == script.acked[channel]
            assert channel.requeued == script.requeued[channel]
            assert channel.outstanding == script.dropped[channel]


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=60))
def test_settled_tags_agree_with_a_plain_set(tags: list[int]) -> None:
    settled = SettledTags()
    seen: set[int] = set()
    for tag in tags:
        settled.add(tag)
        seen.add(tag)
        through = 0
        while through + 1 in seen:
            through += 1
        assert settled.through == through
        above = sorted(t for t in seen if t > through)
        runs = sum(1 for i, t in enumerate(above) if i == 0 or above[i - 1] != t - 1)
        assert settled.gaps == runs


def test_a_flush_paused_across_a_reconnect_keeps_serving_the_new_channel() -> None:
    # The old channel closes while its last ack is being sent, and the new channel's
    # first delivery (tracked meanwhile) drops the old record: the flush goes on.
    async def main() -> tuple[ModelChannel, ModelChannel]:
        old, new = ModelChannel(range(1, 2)), ModelChannel(range(1, 3))
        sending = asyncio.Event()
        release = asyncio.Event()

        async def slow_ack(tag: int, multiple: bool = False) -> None:
            sending.set()
            await release.wait()
            old.acked.add(tag)

        old.basic_ack = slow_ack  # type: ignore[method-assign]
        batcher = AckBatcher()
        first = ModelDelivery(old, 1)
        batcher.track(first)  # type: ignore[arg-type]
        batcher.settle(first, Settle.ACK)  # type: ignore[arg-type]
        await sending.wait()
        old.is_closed = True
        again = [ModelDelivery(new, 1), ModelDelivery(new, 2)]
        for delivery in again:
            batcher.track(delivery)  # type: ignore[arg-type]
            batcher.settle(delivery, Settle.ACK)  # type: ignore[arg-type]
        release.set()
        await batcher.drain()
        return old, new

    old, new = asyncio.run(main())
    assert old.acked == {1} and new.acked == {1, 2}


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
