"""Hand deliveries to a plain function on the reader's turn, without a task each.

aiormq calls every consumer through a new task: a task, a wrapper, four done
callbacks and one more loop turn per message, which costs the loop more than
anything the daemon then does with the delivery. The daemon's handler only queues
the delivery and returns, so it can run on the channel reader's own turn.

:func:`install` replaces the channel's ``_on_deliver_frame`` on that one channel
object. Deliveries for a consumer marked with :func:`direct_consumer` go straight
to its handler; any other consumer is served by aiormq's own method, unchanged.
The consumer stays registered in ``channel.consumers`` as a normal coroutine
function, so where the hook cannot take effect (an aiormq whose reader bound the
method before the hook was installed, or one without the private helpers used
here) the same deliveries still arrive through aiormq's task path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

import aiormq
from aiormq.abc import DeliveredMessage

__all__ = ["direct_consumer", "install", "is_direct"]

logger = logging.getLogger(__name__)

#: Attribute of a consumer function holding its direct (synchronous) handler.
_DIRECT = "routilux_direct_handler"
#: Attribute set on a channel once it carries the hook.
_INSTALLED = "routilux_direct_delivery"


def direct_consumer(
    handler: Callable[[DeliveredMessage], None],
) -> Callable[[DeliveredMessage], Coroutine[Any, Any, None]]:
    """A consumer for ``channel.consumers`` that calls ``handler`` (directly if the
    channel carries the hook, else from aiormq's task). ``handler`` must not block."""

    async def consume(message: DeliveredMessage) -> None:
        handler(message)

    setattr(consume, _DIRECT, handler)
    return consume


def is_direct(consumer: object) -> bool:
    """True if ``consumer`` was made by :func:`direct_consumer`."""
    return getattr(consumer, _DIRECT, None) is not None


def install(channel: aiormq.Channel) -> bool:
    """Serve ``channel``'s direct consumers on the reader's turn; False if this aiormq
    lacks what the hook needs (the task path then keeps working alone)."""
    if getattr(channel, _INSTALLED, False):
        return True
    original: Any = getattr(channel, "_on_deliver_frame", None)
    read_header: Any = getattr(channel, "_Channel__get_content_header", None)
    read_content: Any = getattr(channel, "_read_content", None)
    if original is None or read_header is None or read_content is None:
        return False

    async def on_deliver_frame(frame: Any) -> None:
        consumer = channel.consumers.get(frame.consumer_tag)
        handler = getattr(consumer, _DIRECT, None)
        if handler is None:
            await original(frame)
            return
        header = await read_header()
        message = await read_content(frame, header)
        try:
            handler(message)
        except Exception:  # as aiormq does for a failed consumer task: log, keep reading
            logger.exception("consumer %s failed on a delivery", frame.consumer_tag)

    try:
        channel._on_deliver_frame = on_deliver_frame  # type: ignore[method-assign]
        setattr(channel, _INSTALLED, True)
    except AttributeError:  # a channel class without instance attributes (__slots__)
        return False
    return True
