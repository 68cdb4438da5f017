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
from collections.abc import Awaitable, Callable
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


#: ``send(exchange, routing_key, body, properties)``: publish and wait for the broker's
#: confirm; ``exchange`` "" is the default exchange, ``properties`` are
#: ``aio_pika.Message`` keywords. Raises :class:`BrokerUnavailable` if not confirmed.
ConfirmedSend = Callable[[str, str, bytes, dict[str, Any]], Awaitable[None]]


class Publisher:
    """Builds dead letters and replies; ``send`` publishes each with a confirm.

    In the daemon ``send`` hands the message to the AMQP receiver process
    (:meth:`daemon.amqp.remote.RemoteAmqp.publish`), which publishes it on its
    consuming channel with :class:`ChannelSender`. Raises :class:`BrokerUnavailable`
    when the broker is unreachable or does not confirm.
    """

    def __init__(self, send: ConfirmedSend, dlx: str) -> None:
        self._send = send
        self._dlx = dlx

    async def dead_letter(self, queue: str, message: Delivery, reason: str) -> None:
        """Publish a copy of ``message`` to ``<queue>.dlq`` with the reason header."""
        headers = dict(message.headers or {})
        headers[ERROR_HEADER] = reason
        properties = {
            "headers": headers,
            "content_type": message.content_type,
            "message_id": message.message_id,
            "correlation_id": message.correlation_id,
            "reply_to": message.reply_to,
        }
        await self._send(self._dlx, f"{queue}.dlq", message.body, properties)

    async def reply(self, target: ReplyTarget, snapshot: dict[str, Any]) -> None:
        """Publish the job's result to ``target.reply_to`` via the default exchange."""
        body = dumps(result_body(snapshot), default=str).encode()
        properties = {"content_type": "application/json", "correlation_id": target.correlation_id}
        await self._send("", target.reply_to, body, properties)


class ChannelSender:
    """A :data:`ConfirmedSend` on a channel with publisher confirms; messages persistent."""

    def __init__(self, channel: Callable[[], AbstractRobustChannel | None]) -> None:
        self._channel = channel

    async def __call__(
        self, exchange: str, routing_key: str, body: bytes, properties: dict[str, Any]
    ) -> None:
        channel = self._channel()
        if channel is None or channel.is_closed:
            raise BrokerUnavailable("not connected to RabbitMQ")
        message = aio_pika.Message(
            body=body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **properties
        )
        try:
            target = (
                await channel.get_exchange(exchange, ensure=False)
                if exchange
                else channel.default_exchange
            )
            await target.publish(message, routing_key=routing_key)
        except Exception as exc:
            raise BrokerUnavailable(f"publish not confirmed: {exc}") from exc
