"""One robust RabbitMQ connection and one consumer per bound queue.

:class:`AmqpConsumer` connects with ``connect_robust`` in the background and keeps
retrying while the broker is unreachable (the daemon starts anyway; timers run).
Once connected it declares the topology — the dead-letter exchange (direct,
durable), each bound queue (durable, dead-lettering to ``<queue>.dlq``) and each
``<queue>.dlq`` — and starts one consumer per queue. aio-pika's robust channel
re-declares and re-consumes after a reconnect or a broker-sent ``basic.cancel``.

A queue that already exists with other arguments makes the broker answer
PRECONDITION_FAILED; that is a configuration problem, reported through
``fatal`` as :class:`~daemon.errors.BrokerUnavailable` naming the queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustQueue,
)
from aiormq.abc import DeliveredMessage

from daemon.amqp import direct_delivery
from daemon.amqp.delivery import Delivery, RawDelivery
from daemon.errors import BrokerUnavailable

logger = logging.getLogger(__name__)

#: Seconds between reconnection attempts (aio-pika's robust connection loop).
RECONNECT_INTERVAL = 1.0

#: How often to look (every RECONNECT_INTERVAL / 10 s) for aio-pika's consumer recovery
#: after a broker-sent cancel before raw reading is resumed.
RAW_RESTORE_CHECKS = 300

#: Called for each delivery on the loop; must return quickly (spawn work).
OnMessage = Callable[[str, Delivery], None]


@dataclass(frozen=True)
class QueueBinding:
    """A queue the daemon consumes, and the flow it feeds."""

    queue: str
    flow: str
    trigger: str
    #: ``"routine.slot"`` receiving the body; ``None``: the flow's entry.
    entry: str | None = None


def queue_arguments(queue: str, dead_letter_exchange: str) -> dict[str, Any]:
    """The arguments every bound queue is declared with."""
    return {
        "x-dead-letter-exchange": dead_letter_exchange,
        "x-dead-letter-routing-key": f"{queue}.dlq",
    }


class AmqpConsumer:
    """Owns the connection, the channel and the consumers.

    Lifecycle (all on the loop): :meth:`start` -> :meth:`cancel` (stop intake) ->
    :meth:`close`. ``on_state(connected)`` is called on every connect/disconnect;
    ``fatal`` is set to the error if the topology cannot be declared.
    """

    def __init__(
        self,
        url: str,
        bindings: list[QueueBinding],
        dead_letter_exchange: str,
        prefetch: int,
        on_message: OnMessage,
        on_state: Callable[[bool], None],
    ) -> None:
        self._url = url
        self._bindings = bindings
        self._dlx = dead_letter_exchange
        self._prefetch = prefetch
        self._on_message = on_message
        self._on_state = on_state
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._queues: dict[str, tuple[AbstractRobustQueue, str]] = {}
        self._task: asyncio.Task[None] | None = None
        self._cancelled = False
        self.fatal: asyncio.Future[BaseException] | None = None

    @property
    def channel(self) -> AbstractRobustChannel | None:
        """The consuming channel (publisher confirms on), once connected."""
        return self._channel

    @property
    def consuming(self) -> bool:
        """True while connected with every bound queue's consumer active."""
        conn, channel = self._connection, self._channel
        if conn is None or channel is None or self._cancelled:
            return False
        return (
            conn.connected.is_set()
            and not channel.is_closed
            and len(self._queues) == len(self._bindings)
        )

    def start(self) -> None:
        """Connect and consume in the background; returns at once."""
        loop = asyncio.get_running_loop()
        self.fatal = loop.create_future()
        self._task = loop.create_task(self._run(), name="amqp-connect")

    async def _run(self) -> None:
        # fail_fast=False: the first connection attempt retries like reconnects do,
        # so a broker that is down at startup does not stop the daemon.
        connection = await aio_pika.connect_robust(
            self._url, reconnect_interval=RECONNECT_INTERVAL, fail_fast=False
        )
        self._connection = connection
        connection.close_callbacks.add(self._on_close)
        connection.reconnect_callbacks.add(self._on_reconnect)
        while True:
            try:
                await self._declare_and_consume(connection)
                break
            except BrokerUnavailable as exc:
                if self.fatal is not None and not self.fatal.done():
                    self.fatal.set_result(exc)
                return
            except Exception as exc:  # the connection dropped mid-declare: start over
                logger.warning("amqp setup interrupted (%s); retrying", exc)
                await self._discard_channel()
                await asyncio.sleep(RECONNECT_INTERVAL)  # back-off, not a condition wait
                await connection.connected.wait()
        self._on_state(True)
        logger.info("amqp consuming %d queue(s)", len(self._queues))

    async def _discard_channel(self) -> None:
        channel, self._channel = self._channel, None
        self._queues.clear()
        if channel is not None and not channel.is_closed:
            try:
                await channel.close()
            except Exception as exc:
                logger.debug("closing a half-set-up channel failed: %s", exc)

    async def _declare_and_consume(self, connection: AbstractRobustConnection) -> None:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=self._prefetch)
        self._channel = channel
        channel.reopen_callbacks.add(self._restore_raw_reading)
        await channel.declare_exchange(self._dlx, aio_pika.ExchangeType.DIRECT, durable=True)
        for binding in self._bindings:
            queue = await self._declare_queue(connection, channel, binding.queue)
            tag = await queue.consume(self._callback(binding.queue), no_ack=False)
            self._queues[binding.queue] = (queue, tag)
            await self._read_raw(channel, binding.queue, tag)

    async def _declare_queue(
        self,
        connection: AbstractRobustConnection,
        channel: AbstractRobustChannel,
        name: str,
    ) -> AbstractRobustQueue:
        # Check on a throwaway channel first: a mismatch closes the channel it
        # happens on, and the consuming channel must stay usable.
        probe = await connection.channel(publisher_confirms=False)
        try:
            await probe.declare_queue(
                name, durable=True, arguments=queue_arguments(name, self._dlx)
            )
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise BrokerUnavailable(
                f"queue {name!r} exists with different arguments than the daemon needs "
                f"(durable, x-dead-letter-exchange={self._dlx!r}, "
                f"x-dead-letter-routing-key={name + '.dlq'!r}); delete or fix it: {exc}"
            ) from None
        finally:
            if not probe.is_closed:
                await probe.close()
        dlq = await channel.declare_queue(f"{name}.dlq", durable=True)
        await dlq.bind(self._dlx, routing_key=f"{name}.dlq")
        return await channel.declare_queue(
            name, durable=True, arguments=queue_arguments(name, self._dlx)
        )

    def _callback(self, queue: str) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        # aio-pika's own path, used until _read_raw takes over (and again briefly
        # after each reconnect).
        async def deliver(message: AbstractIncomingMessage) -> None:
            self._on_message(queue, message)

        return deliver

    async def _read_raw(self, channel: AbstractRobustChannel, queue: str, tag: str) -> None:
        """Take ``tag``'s deliveries straight from aiormq, as :class:`RawDelivery`.

        aio-pika stays the owner of the consumer: after a reconnect or a broker-sent
        cancel it consumes again with its own callback (correct, only slower), and
        :meth:`_restore_raw_reading` / :meth:`_on_broker_cancel` swap the raw reader
        back in.
        """
        underlay = cast(aiormq.Channel, await channel.get_underlay_channel())
        # a set: added once; aiormq 6 (the newest for Python 3.10) has no such hook, and
        # there aio-pika's own consumer keeps serving after a broker-sent cancel
        cancel_callbacks = getattr(underlay, "on_consumer_cancel_callbacks", None)
        if cancel_callbacks is not None:
            cancel_callbacks.add(self._on_broker_cancel)
        if tag not in underlay.consumers:
            return

        def read_raw(message: DeliveredMessage) -> None:
            self._on_message(queue, RawDelivery(message))

        direct_delivery.install(underlay)
        underlay.consumers[tag] = direct_delivery.direct_consumer(read_raw)

    def _on_broker_cancel(self, frame: Any) -> None:
        """The broker cancelled a consumer (e.g. its queue was deleted): aio-pika
        consumes again with its own callback; read raw again once it has."""
        tag = getattr(frame, "consumer_tag", None)
        for name, (_, known) in list(self._queues.items()):
            if known == tag and self._channel is not None:
                task = asyncio.get_running_loop().create_task(
                    self._read_raw_when_restored(self._channel, name, known)
                )
                task.add_done_callback(_log_failure)

    async def _read_raw_when_restored(
        self, channel: AbstractRobustChannel, queue: str, tag: str
    ) -> None:
        # aio-pika signals nothing when its consumer recovery is done: look, a bounded while.
        for _ in range(RAW_RESTORE_CHECKS):
            await asyncio.sleep(RECONNECT_INTERVAL / 10)  # polling for aio-pika's recovery
            if self._cancelled or channel.is_closed:
                return
            underlay = cast(aiormq.Channel, await channel.get_underlay_channel())
            current = underlay.consumers.get(tag)
            if current is not None and not direct_delivery.is_direct(current):
                await self._read_raw(channel, queue, tag)
                return

    def _restore_raw_reading(self, _sender: Any = None) -> None:
        channel = self._channel
        if channel is None or self._cancelled:
            return
        for name, (_, tag) in list(self._queues.items()):
            task = asyncio.get_running_loop().create_task(self._read_raw(channel, name, tag))
            task.add_done_callback(_log_failure)

    def _on_close(self, _sender: Any, exc: BaseException | None = None) -> None:
        if not self._cancelled:
            logger.warning("amqp connection lost: %s", exc)
        self._on_state(False)

    def _on_reconnect(self, _sender: Any) -> None:
        logger.info("amqp reconnected; consumers restored")
        self._restore_raw_reading()
        self._on_state(True)

    async def cancel(self) -> None:
        """Stop receiving new deliveries; unacked ones stay with us to ack or nack."""
        self._cancelled = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for queue, tag in list(self._queues.values()):
            try:
                await queue.cancel(tag, timeout=5)
            except Exception as exc:  # the connection may be down; nothing to stop then
                logger.debug("cancel of consumer %s failed: %s", tag, exc)

    async def close(self) -> None:
        """Close the connection (unacked deliveries go back to the broker)."""
        self._cancelled = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()
        self._on_state(False)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("raw delivery reading not restored: %s", task.exception())
