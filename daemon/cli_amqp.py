"""Short-lived AMQP operations for the CLI: ``publish`` and ``dlq replay``.

Each call opens its own connection, uses publisher confirms and ``mandatory``
publishing (a message no queue accepts is an error, not silently dropped), and
closes the connection before returning. aio-pika errors are translated to
:class:`~daemon.errors.BrokerUnavailable` here; callers never see aio-pika types.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import AMQPError, ChannelNotFoundEntity, DeliveryError, PublishError

from daemon.errors import BrokerUnavailable
from daemon.settings import redact_url

__all__ = ["DLQ_SUFFIX", "publish_json", "replay_dead_letters"]

#: Suffix of a queue's dead-letter queue (DESIGN.md §4 "Messages").
DLQ_SUFFIX = ".dlq"
#: Seconds to wait for the broker to answer one operation.
_TIMEOUT = 10.0
#: Headers the broker or daemon added when dead-lettering; a replayed message drops them.
_DEAD_LETTER_HEADERS = ("x-death", "x-first-death-", "x-last-death-", "x-routilux-error")


async def publish_json(
    url: str, queue: str, data: Mapping[str, Any], message_id: str | None = None
) -> str:
    """Publish ``data`` as a persistent JSON message to ``queue``; return its message_id.

    Returns only after the broker confirmed the message.

    Raises:
        BrokerUnavailable: the broker is unreachable, or no queue ``queue`` exists.
    """
    mid = message_id or uuid.uuid4().hex
    message = aio_pika.Message(
        json.dumps(dict(data)).encode(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=mid,
    )
    async with _channel(url) as channel:
        await _publish(channel, message, queue)
    return mid


async def replay_dead_letters(url: str, queue: str, limit: int | None = None) -> int:
    """Move the messages of ``<queue>.dlq`` back to ``queue``; return how many moved.

    Moves at most the number of messages present at the start (or ``limit``), so a
    message that is dead-lettered again at once is not replayed in a loop. Each
    message is acknowledged on the DLQ only after its copy was confirmed.

    Raises:
        BrokerUnavailable: the broker is unreachable, or either queue does not exist.
    """
    dlq_name = queue + DLQ_SUFFIX
    async with _channel(url) as channel:
        await _existing_queue(channel, queue)
        dlq = await _existing_queue(channel, dlq_name)
        available = int(dlq.declaration_result.message_count or 0)
        budget = available if limit is None else min(limit, available)
        moved = 0
        while moved < budget:
            incoming = await dlq.get(no_ack=False, fail=False, timeout=_TIMEOUT)
            if incoming is None:
                break
            await _publish(channel, _replay_copy(incoming), queue)
            await incoming.ack()
            moved += 1
    return moved


def _replay_copy(incoming: AbstractIncomingMessage) -> aio_pika.Message:
    headers = {
        key: value
        for key, value in (incoming.headers or {}).items()
        if not key.startswith(_DEAD_LETTER_HEADERS)
    }
    return aio_pika.Message(
        incoming.body,
        headers=headers,
        content_type=incoming.content_type,
        content_encoding=incoming.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        correlation_id=incoming.correlation_id,
        reply_to=incoming.reply_to,
        message_id=incoming.message_id,
        timestamp=incoming.timestamp,
        type=incoming.type,
        app_id=incoming.app_id,
    )


async def _publish(channel: AbstractChannel, message: aio_pika.Message, queue: str) -> None:
    try:
        await channel.default_exchange.publish(
            message, routing_key=queue, mandatory=True, timeout=_TIMEOUT
        )
    except DeliveryError:
        raise BrokerUnavailable(
            f"queue {queue!r} does not exist (the daemon declares it on start)"
        ) from None
    except (PublishError, AMQPError, TimeoutError) as exc:
        raise BrokerUnavailable(f"publish to {queue!r} failed: {_reason(exc)}") from None


async def _existing_queue(channel: AbstractChannel, name: str) -> AbstractQueue:
    # Passive: never create a queue the daemon would declare with other arguments.
    try:
        return await channel.declare_queue(name, passive=True)
    except ChannelNotFoundEntity:
        raise BrokerUnavailable(f"queue {name!r} does not exist") from None


@asynccontextmanager
async def _channel(url: str) -> AsyncIterator[AbstractChannel]:
    try:
        connection = await aio_pika.connect(url, timeout=_TIMEOUT)
    except (AMQPError, OSError, TimeoutError) as exc:
        raise BrokerUnavailable(f"cannot connect to {redact_url(url)}: {_reason(exc)}") from None
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        yield channel
    finally:
        await connection.close()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
