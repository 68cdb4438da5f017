"""Publisher.reply over a ChannelSender: the result message's body is JSON any consumer
can parse, and it is persistent."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aio_pika

from daemon.amqp.publisher import ChannelSender, Publisher, ReplyTarget


class RecordingExchange:
    def __init__(self) -> None:
        self.published: list[tuple[aio_pika.Message, str]] = []

    async def publish(self, message: aio_pika.Message, routing_key: str) -> None:
        self.published.append((message, routing_key))


class FakeChannel:
    """Just what Publisher.reply touches of an aio-pika channel."""

    is_closed = False

    def __init__(self) -> None:
        self.default_exchange = RecordingExchange()


def strict_loads(body: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(body, parse_constant=refuse)


def test_a_reply_holds_null_for_nan_and_text_for_values_of_no_json_form() -> None:
    channel = FakeChannel()
    send = ChannelSender(lambda: channel)  # type: ignore[arg-type,return-value]
    publisher = Publisher(send, "dlx")
    snapshot = {
        "job_id": "j1",
        "flow_id": "stats",
        "status": "completed",
        "error": None,
        "shared_data": {"mean": float("nan"), "limit": float("inf"), "tag": frozenset()},
    }
    asyncio.run(publisher.reply(ReplyTarget("j1", "replies", "c1"), snapshot))
    [(message, routing_key)] = channel.default_exchange.published
    assert (routing_key, message.correlation_id) == ("replies", "c1")
    assert message.content_type == "application/json"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert strict_loads(message.body) == {
        "job_id": "j1",
        "flow": "stats",
        "status": "completed",
        "error": None,
        "shared_data": {"mean": None, "limit": None, "tag": "frozenset()"},
    }
