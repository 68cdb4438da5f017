"""Publishing with publisher confirms: dead letters and ``reply_to`` results.

Dead letters: RabbitMQ's own dead-lettering (``reject(requeue=False)``) cannot add
a header, so the daemon publishes a copy of the message to the dead-letter
exchange with routing key ``<queue>.dlq`` and header ``x-routilux-error``, waits
for the broker's confirm, and only then acks the original. A crash in between
redelivers the original, which is dead-lettered again: at-least-once, never lost.

Replies go through an outbox in the store (:class:`ReplyOutbox`): the target is
recorded when the job is claimed, the result published when the job ends, and the
row marked sent only after the confirm, so a crash between job end and publish
still publishes once the daemon is back (:meth:`Publisher.flush_outbox`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aio_pika
from aio_pika.abc import AbstractRobustChannel

from daemon.amqp.delivery import Delivery
from daemon.errors import BrokerUnavailable
from daemon.json_text import dumps

logger = logging.getLogger(__name__)

#: Header carrying the reason a message was dead-lettered.
ERROR_HEADER = "x-routilux-error"


@dataclass(frozen=True)
class ReplyTarget:
    """Where the result of one job goes."""

    job_id: str
    reply_to: str
    correlation_id: str | None


class ReplyOutbox(Protocol):
    """Durable reply targets (blocking calls; run off the loop)."""

    def add_reply(self, job_id: str, reply_to: str, correlation_id: str | None) -> None: ...

    def pending_replies(self) -> list[tuple[ReplyTarget, dict[str, Any] | None]]:
        """Unsent replies whose job has ended, with the job's terminal snapshot."""
        ...

    def mark_replied(self, job_id: str) -> None: ...


def result_body(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The reply of DESIGN.md §4: ``{job_id, flow, status, error, shared_data}``."""
    return {
        "job_id": snapshot.get("job_id"),
        "flow": snapshot.get("flow_id"),
        "status": snapshot.get("status"),
        "error": snapshot.get("error"),
        "shared_data": snapshot.get("shared_data", {}),
    }


class Publisher:
    """Publishes on the consumer's channel; every publish waits for the broker's confirm.

    Raises :class:`BrokerUnavailable` when the channel is down or the publish fails.
    """

    def __init__(self, channel: Callable[[], AbstractRobustChannel | None], dlx: str) -> None:
        self._channel = channel
        self._dlx = dlx

    def _require_channel(self) -> AbstractRobustChannel:
        channel = self._channel()
        if channel is None or channel.is_closed:
            raise BrokerUnavailable("not connected to RabbitMQ")
        return channel

    async def dead_letter(self, queue: str, message: Delivery, reason: str) -> None:
        """Publish a copy of ``message`` to ``<queue>.dlq`` with the reason header."""
        channel = self._require_channel()
        headers = dict(message.headers or {})
        headers[ERROR_HEADER] = reason
        copy = aio_pika.Message(
            body=message.body,
            headers=headers,
            content_type=message.content_type,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            reply_to=message.reply_to,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        exchange = await channel.get_exchange(self._dlx, ensure=False)
        await self._confirm(exchange.publish(copy, routing_key=f"{queue}.dlq"))

    async def reply(self, target: ReplyTarget, snapshot: dict[str, Any]) -> None:
        """Publish the job's result to ``target.reply_to`` via the default exchange."""
        channel = self._require_channel()
        message = aio_pika.Message(
            body=dumps(result_body(snapshot), default=str).encode(),
            content_type="application/json",
            correlation_id=target.correlation_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await self._confirm(channel.default_exchange.publish(message, routing_key=target.reply_to))

    async def _confirm(self, publish: Any) -> None:
        try:
            await publish
        except Exception as exc:
            raise BrokerUnavailable(f"publish not confirmed: {exc}") from exc
