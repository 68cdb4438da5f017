"""AckBatcher against a real broker: out-of-order settles, requeues, a dead channel."""

from __future__ import annotations

import asyncio
import json
import random

import aio_pika
import pytest

from daemon.amqp.acks import AckBatcher, Settle

from .daemon_harness import Broker

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq]


async def receive(
    channel: aio_pika.abc.AbstractChannel, queue: str, count: int
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Take ``count`` messages, unacked (they were published with confirms beforehand)."""
    q = await channel.declare_queue(queue, durable=True)
    return [await q.get(timeout=5) for _ in range(count)]


def test_out_of_order_settles_ack_exactly_the_acked_and_requeue_the_rest(
    broker: Broker, prefix: str
) -> None:
    queue = f"{prefix}.acks"
    broker.declare(queue)
    broker.publish(queue, [{"i": i} for i in range(60)])
    requeued = set(random.Random(7).sample(range(60), 12))

    async def main() -> None:
        connection = await aio_pika.connect(broker.url)
        try:
            channel = await connection.channel()
            messages = await receive(channel, queue, 60)
            batcher = AckBatcher()
            for message in messages:
                batcher.track(message)
            order = list(range(60))
            random.Random(3).shuffle(order)
            for i in order:
                outcome = Settle.REQUEUE if i in requeued else Settle.ACK
                batcher.settle(messages[i], outcome)
                if i % 7 == 0:
                    await asyncio.sleep(0)  # let some flushes run mid-way
            await batcher.drain()
        finally:
            await connection.close()

    asyncio.run(main())
    back = sorted(json.loads(m.body)["i"] for m in broker.drain(queue))
    assert back == sorted(requeued)


def test_settles_after_the_channel_died_are_dropped_and_redelivered(
    broker: Broker, prefix: str
) -> None:
    queue = f"{prefix}.dead"
    broker.declare(queue)
    broker.publish(queue, [{"i": i} for i in range(5)])

    async def main() -> None:
        connection = await aio_pika.connect(broker.url)
        channel = await connection.channel()
        messages = await receive(channel, queue, 5)
        batcher = AckBatcher()
        for message in messages:
            batcher.track(message)
        await channel.close()
        for message in messages:
            batcher.settle(message, Settle.ACK)
        await batcher.drain()  # must not raise
        await connection.close()

    asyncio.run(main())
    assert broker.count(queue) == 5
