"""Frames between the daemon and its receiver, and the daemon's view of a delivery."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import socket
import struct
from typing import Any

import pytest

from daemon.amqp.remote import RemoteDelivery, _Link
from daemon.amqp.wire import MAX_FRAME, FrameWriter, read_frame
from daemon.errors import BrokerUnavailable


async def _pair() -> tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.StreamWriter]:
    """A reader and a writer joined by a socket pair (as the daemon and its receiver are),
    and the reader's own writer, to close."""
    ours, theirs = socket.socketpair()
    reader, reader_side = await asyncio.open_connection(sock=ours)
    _, writer = await asyncio.open_connection(sock=theirs)
    return reader, writer, reader_side


def test_events_of_one_loop_turn_arrive_as_one_frame_in_order_with_their_types() -> None:
    headers = {"when": datetime.datetime(2026, 1, 2, 3, 4, 5), "price": decimal.Decimal("1.50")}

    async def main() -> list[list[tuple[Any, ...]]]:
        reader, writer, reader_side = await _pair()
        out = FrameWriter(writer)
        out.send(("msg", b"\x00body", headers))
        out.send(("ack", 1, 7, True))
        await asyncio.sleep(0)  # the loop turn ends: both go out together
        out.send(("nack", 1, 8, False))
        await out.drain()
        frames = [await read_frame(reader), await read_frame(reader)]
        writer.close()
        reader_side.close()
        return frames

    first, second = asyncio.run(main())
    assert first == [("msg", b"\x00body", headers), ("ack", 1, 7, True)]
    assert second == [("nack", 1, 8, False)]


def test_a_frame_longer_than_any_batch_is_a_broken_stream() -> None:
    async def main() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(struct.pack(">I", MAX_FRAME + 1))
        await read_frame(reader)

    with pytest.raises(ValueError, match="stream is broken"):
        asyncio.run(main())


def test_the_end_of_the_stream_is_an_incomplete_read() -> None:
    async def main() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(b"\x00\x00")
        reader.feed_eof()
        await read_frame(reader)

    with pytest.raises(asyncio.IncompleteReadError):
        asyncio.run(main())


class _Recorder:
    """Stands for the FrameWriter of a link: what the daemon would send."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    def send(self, event: tuple[Any, ...]) -> None:
        self.sent.append(event)


def _delivery(link: _Link, key: int = 3, tag: int = 9) -> RemoteDelivery:
    event = ("msg", "q", key, tag, False, b"{}", "m1", None, None, {}, "application/json")
    return RemoteDelivery(link, event)


def test_a_delivery_is_settled_once_on_the_channel_it_came_on() -> None:
    out = _Recorder()
    link = _Link(out)  # type: ignore[arg-type]
    delivery = _delivery(link)
    assert delivery.channel is link.channel(3)  # one channel object per key
    asyncio.run(delivery.ack(multiple=True))
    assert out.sent == [("ack", 3, 9, True)] and delivery.processed
    with pytest.raises(RuntimeError, match="already acked"):
        asyncio.run(delivery.nack(requeue=True))


def test_nothing_is_settled_once_its_channel_or_receiver_is_gone() -> None:
    out = _Recorder()
    link = _Link(out)  # type: ignore[arg-type]
    dropped_connection, dead_receiver = _delivery(link, key=3), _delivery(link, key=4)
    link.close_channels()
    with pytest.raises(BrokerUnavailable):
        asyncio.run(dropped_connection.ack())
    link.die()
    with pytest.raises(BrokerUnavailable):
        asyncio.run(dead_receiver.nack(requeue=True))
    assert out.sent == [] and not dropped_connection.processed
    unnamed = _delivery(_Link(out), key=0)  # type: ignore[arg-type]
    assert unnamed.channel.is_closed  # the receiver could not tell its channel


def test_requests_of_a_receiver_that_died_end_with_a_reason() -> None:
    async def main() -> tuple[str | None, str | None]:
        link = _Link(_Recorder())  # type: ignore[arg-type]
        pending = link.request("publish", "", "replies", b"{}", {})
        link.die()
        late = link.request("cancel")
        return await pending, await late

    assert asyncio.run(main()) == ("the AMQP receiver exited", "the AMQP receiver is not running")
