"""One AMQP delivery as the daemon sees it, and a lean reading of aiormq's.

The intake, the ack batcher and the dead-letter publisher need a handful of fields
and ``ack``/``nack``: :class:`Delivery` names them. aio-pika's ``IncomingMessage``
has them, and so does :class:`RawDelivery`, a thin view of aiormq's
``DeliveredMessage``. Building an ``IncomingMessage`` (and the future and callback
aio-pika adds around every consumer call) cost more loop time per message than
anything the daemon does itself, so the consumer reads deliveries raw where it can.
"""

from __future__ import annotations

from typing import Any, Protocol

from aiormq.abc import DeliveredMessage

__all__ = ["Delivery", "RawDelivery"]


class Delivery(Protocol):
    """What the daemon uses of a delivery."""

    @property
    def body(self) -> bytes: ...

    @property
    def message_id(self) -> str | None: ...

    @property
    def reply_to(self) -> str | None: ...

    @property
    def correlation_id(self) -> str | None: ...

    @property
    def headers(self) -> Any: ...

    @property
    def content_type(self) -> str | None: ...

    @property
    def redelivered(self) -> bool | None:
        """True if the broker delivered it before (to us or another consumer)."""

    @property
    def channel(self) -> Any:
        """The channel it came on; its delivery tag means nothing on any other."""

    @property
    def delivery_tag(self) -> int | None:
        """The broker's number for it on its channel (1, 2, ... in delivery order)."""

    @property
    def processed(self) -> bool:
        """True once acked or nacked."""

    async def ack(self, multiple: bool = False) -> None: ...

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None: ...


class RawDelivery:
    """:class:`Delivery` over aiormq's ``DeliveredMessage``, read lazily."""

    __slots__ = ("_message", "_processed")

    def __init__(self, message: DeliveredMessage) -> None:
        self._message = message
        self._processed = False

    @property
    def body(self) -> bytes:
        return self._message.body

    @property
    def message_id(self) -> str | None:
        return self._message.header.properties.message_id

    @property
    def reply_to(self) -> str | None:
        return self._message.header.properties.reply_to

    @property
    def correlation_id(self) -> str | None:
        return self._message.header.properties.correlation_id

    @property
    def headers(self) -> Any:
        return self._message.header.properties.headers

    @property
    def content_type(self) -> str | None:
        return self._message.header.properties.content_type

    @property
    def redelivered(self) -> bool:
        return bool(self._message.redelivered)

    @property
    def channel(self) -> Any:
        return self._message.channel

    @property
    def delivery_tag(self) -> int | None:
        tag = getattr(self._message.delivery, "delivery_tag", None)
        return None if tag is None else int(tag)

    @property
    def processed(self) -> bool:
        return self._processed

    async def ack(self, multiple: bool = False) -> None:
        """Ack it (and, with ``multiple``, every earlier unsettled one on its channel)."""
        self._settled()
        await self._message.channel.basic_ack(self._tag(), multiple=multiple)

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        """Reject it, back to the queue if ``requeue``."""
        self._settled()
        await self._message.channel.basic_nack(self._tag(), multiple=multiple, requeue=requeue)

    def _settled(self) -> None:
        if self._processed:
            raise RuntimeError(f"delivery {self.message_id} was already acked or nacked")
        self._processed = True

    def _tag(self) -> int:
        tag = self.delivery_tag
        if tag is None:
            raise RuntimeError("delivery has no delivery tag")
        return tag
