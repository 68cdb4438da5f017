"""AmqpConsumer in-process against the real broker: raw deliveries, kept across reconnects."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import aio_pika
import pytest

from daemon.amqp.consumer import AmqpConsumer, QueueBinding
from daemon.amqp.delivery import Delivery, RawDelivery

from .daemon_harness import Broker


async def until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll ``predicate`` on the loop until it holds; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def publish(url: str, queue: str, n: int, tag: str) -> None:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        for i in range(n):
            body = json.dumps({"i": i}).encode()
            await channel.default_exchange.publish(
                aio_pika.Message(body, message_id=f"{tag}-{i}", reply_to="replies"),
                routing_key=queue,
            )
    finally:
        await connection.close()


def run_consumer(
    amqp_url: str, prefix: str, scenario: Callable[[AmqpConsumer, list[Delivery]], Any]
) -> None:
    async def main() -> None:
        received: list[Delivery] = []
        consumer = AmqpConsumer(
            amqp_url,
            [QueueBinding(queue=f"{prefix}.q", flow="f", trigger=f"amqp:{prefix}.q")],
            f"{prefix}.dlx",
            prefetch=10,
            on_message=lambda _queue, delivery: received.append(delivery),
            on_state=lambda _up: None,
        )
        consumer.start()
        try:
            await until(lambda: consumer.consuming)
            await scenario(consumer, received)
        finally:
            await consumer.close()

    asyncio.run(main())


def test_deliveries_arrive_raw_and_their_acks_settle_them(
    amqp_url: str, prefix: str, broker: Broker
) -> None:
    broker.created += [f"{prefix}.q", f"{prefix}.q.dlq"]

    async def scenario(consumer: AmqpConsumer, received: list[Delivery]) -> None:
        await publish(amqp_url, f"{prefix}.q", 3, "m")
        await until(lambda: len(received) == 3)
        assert all(isinstance(d, RawDelivery) for d in received)
        assert [d.message_id for d in received] == ["m-0", "m-1", "m-2"]
        assert json.loads(received[1].body) == {"i": 1} and received[1].reply_to == "replies"
        await received[2].ack(multiple=True)
        assert all(not d.processed for d in received[:2]) and received[2].processed

    run_consumer(amqp_url, prefix, scenario)
    assert broker.count(f"{prefix}.q") == 0


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl")
def test_raw_reading_comes_back_after_the_broker_drops_the_connection(
    amqp_url: str, prefix: str, broker: Broker
) -> None:
    broker.created += [f"{prefix}.q", f"{prefix}.q.dlq"]

    async def scenario(consumer: AmqpConsumer, received: list[Delivery]) -> None:
        subprocess.run(
            ["rabbitmqctl", "close_all_connections", "test: drop consumers"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        await until(lambda: not consumer.consuming, timeout=10)
        await until(lambda: consumer.consuming, timeout=30)
        await publish(amqp_url, f"{prefix}.q", 2, "after")
        await until(lambda: len(received) == 2, timeout=30)
        assert all(isinstance(d, RawDelivery) for d in received)
        for delivery in received:
            await delivery.ack()

    run_consumer(amqp_url, prefix, scenario)


def test_raw_reading_comes_back_after_a_broker_sent_cancel(
    amqp_url: str, prefix: str, broker: Broker
) -> None:
    # Deleting the queue makes the broker cancel the consumer; aio-pika declares the
    # queue again and consumes with its own callback, and the raw reader follows.
    broker.created += [f"{prefix}.q", f"{prefix}.q.dlq"]

    async def scenario(consumer: AmqpConsumer, received: list[Delivery]) -> None:
        await asyncio.to_thread(broker.delete, f"{prefix}.q")
        deadline = asyncio.get_running_loop().time() + 30
        for attempt in range(10_000):
            assert asyncio.get_running_loop().time() < deadline, "raw reading not restored"
            # Until the queue exists again, a publish is dropped as unroutable: retry.
            await publish(amqp_url, f"{prefix}.q", 1, f"again{attempt}")
            mid = f"again{attempt}-0"
            try:
                await until(lambda m=mid: any(d.message_id == m for d in received), timeout=2)
            except AssertionError:
                continue
            if isinstance(next(d for d in received if d.message_id == mid), RawDelivery):
                break
        for delivery in received:
            await delivery.ack()

    run_consumer(amqp_url, prefix, scenario)
