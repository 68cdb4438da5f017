"""AmqpConsumer in-process against the real broker: raw deliveries, kept across reconnects."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import aio_pika
import aiormq
import pytest
from aiormq.abc import DeliveredMessage

from daemon.amqp import direct_delivery
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


class Received(list[Delivery]):
    """Deliveries in arrival order, and the task each was handed over in."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks: list[asyncio.Task[Any] | None] = []
        #: Every on_state call: a drop and the reconnect can both happen between polls.
        self.states: list[bool] = []

    def on_message(self, _queue: str, delivery: Delivery) -> None:
        self.append(delivery)
        self.tasks.append(asyncio.current_task())

    def handed_over_by_one_reader(self) -> bool:
        """True if every delivery came in the channel reader's own task (no task each)."""
        return len({id(task) for task in self.tasks}) == 1 and self.tasks[0] is not None


def run_consumer(
    amqp_url: str, prefix: str, scenario: Callable[[AmqpConsumer, Received], Any]
) -> None:
    async def main() -> None:
        received = Received()
        consumer = AmqpConsumer(
            amqp_url,
            [QueueBinding(queue=f"{prefix}.q", flow="f", trigger=f"amqp:{prefix}.q")],
            f"{prefix}.dlx",
            prefetch=10,
            on_message=received.on_message,
            on_state=received.states.append,
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

    async def scenario(consumer: AmqpConsumer, received: Received) -> None:
        await publish(amqp_url, f"{prefix}.q", 3, "m")
        await until(lambda: len(received) == 3)
        assert all(isinstance(d, RawDelivery) for d in received)
        assert received.handed_over_by_one_reader()
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

    async def scenario(consumer: AmqpConsumer, received: Received) -> None:
        await asyncio.to_thread(
            subprocess.run,
            ["rabbitmqctl", "close_all_connections", "test: drop consumers"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        await until(lambda: False in received.states, timeout=10)
        dropped = received.states.index(False)
        await until(lambda: True in received.states[dropped:], timeout=30)  # reconnected
        await until(lambda: consumer.consuming, timeout=30)
        await publish(amqp_url, f"{prefix}.q", 2, "after")
        await until(lambda: len(received) == 2, timeout=30)
        assert all(isinstance(d, RawDelivery) for d in received)
        assert received.handed_over_by_one_reader()  # the new channel is hooked too
        for delivery in received:
            await delivery.ack()

    run_consumer(amqp_url, prefix, scenario)


def test_raw_reading_comes_back_after_a_broker_sent_cancel(
    amqp_url: str, prefix: str, broker: Broker
) -> None:
    # Deleting the queue makes the broker cancel the consumer; aio-pika declares the
    # queue again and consumes with its own callback, and the raw reader follows.
    broker.created += [f"{prefix}.q", f"{prefix}.q.dlq"]

    async def scenario(consumer: AmqpConsumer, received: Received) -> None:
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


def test_a_hooked_channel_serves_other_consumers_through_aiormqs_own_path(
    amqp_url: str, prefix: str, broker: Broker
) -> None:
    broker.created += [f"{prefix}.direct", f"{prefix}.plain"]

    async def main() -> None:
        connection = await aiormq.connect(amqp_url)
        try:
            channel = await connection.channel()
            assert direct_delivery.install(channel) and direct_delivery.install(channel)
            direct: list[asyncio.Task[Any] | None] = []
            plain: list[asyncio.Task[Any] | None] = []

            async def plain_consumer(message: DeliveredMessage) -> None:
                plain.append(asyncio.current_task())
                await channel.basic_ack(message.delivery_tag)

            def direct_handler(message: DeliveredMessage) -> None:
                direct.append(asyncio.current_task())
                asyncio.get_running_loop().create_task(channel.basic_ack(message.delivery_tag))

            for name, consumer in (
                ("direct", direct_delivery.direct_consumer(direct_handler)),
                ("plain", plain_consumer),
            ):
                await channel.queue_declare(f"{prefix}.{name}", durable=True)
                await channel.basic_consume(f"{prefix}.{name}", consumer)
            for _ in range(6):
                for name in ("direct", "plain"):
                    await channel.basic_publish(b"{}", routing_key=f"{prefix}.{name}")
            await until(lambda: len(direct) == 6 and len(plain) == 6)
            assert len({id(t) for t in direct}) == 1  # the reader's turn, every time
            assert len({id(t) for t in plain}) == 6  # aiormq's task per delivery
            assert not direct_delivery.is_direct(plain_consumer)
        finally:
            await connection.close()

    asyncio.run(main())


def test_a_channel_without_the_needed_internals_is_left_alone() -> None:
    class Bare:
        consumers: dict[str, Any] = {}

    assert direct_delivery.install(Bare()) is False  # type: ignore[arg-type]
    assert not hasattr(Bare, "_on_deliver_frame")

    class Slotted:  # has what the hook reads, but no room for the hook itself
        __slots__ = ("consumers",)

        async def _on_deliver_frame(self, frame: Any) -> None: ...

        async def _Channel__get_content_header(self) -> None: ...

        async def _read_content(self, frame: Any, header: Any) -> None: ...

    assert direct_delivery.install(Slotted()) is False  # type: ignore[arg-type]
