"""Frames between the daemon and its receiver, the daemon's view of a delivery, and how
the daemon restarts (or gives up on) its receiver."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import socket
import struct
from typing import Any

import pytest

from daemon.amqp import remote
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


def test_a_receiver_that_never_starts_is_fatal_after_a_few_tries_with_growing_pauses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(remote, "RESTART_DELAY", 0.01)
    pauses: list[float] = []

    async def recording_pause(delay: float) -> None:
        pauses.append(delay)

    async def main() -> BaseException:
        amqp = remote.RemoteAmqp("amqp://x/", [], "dlx", 1, lambda q, m: None, lambda c: None)
        attempts = 0

        async def never_starts() -> tuple[None, int]:
            nonlocal attempts
            attempts += 1
            return None, 2  # exited before its first frame (e.g. an import failed)

        monkeypatch.setattr(amqp, "_run_receiver", never_starts)
        monkeypatch.setattr(amqp, "_pause", recording_pause)
        amqp.start()
        assert amqp.fatal is not None
        error = await asyncio.wait_for(amqp.fatal, 5)
        assert attempts == remote.FAILED_STARTS_FATAL
        return error

    error = asyncio.run(main())
    assert isinstance(error, BrokerUnavailable)
    assert "exited 5 times in a row before it started (last exit code 2)" in str(error)
    assert pauses == [0.01, 0.02, 0.04, 0.08]  # doubling between the tries


def test_no_receiver_is_started_again_once_intake_is_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def main() -> int:
        amqp = remote.RemoteAmqp("amqp://x/", [], "dlx", 1, lambda q, m: None, lambda c: None)
        attempts = 0

        async def dies_during_the_drain() -> tuple[None, int]:
            nonlocal attempts
            attempts += 1
            await amqp.cancel()  # the drain began; then the receiver died
            return None, -9

        monkeypatch.setattr(amqp, "_run_receiver", dies_during_the_drain)
        amqp.start()
        assert amqp._task is not None
        await asyncio.wait_for(amqp._task, 5)
        return attempts

    assert asyncio.run(main()) == 1


def test_an_event_that_cannot_be_pickled_is_dropped_alone(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> list[tuple[Any, ...]]:
        reader, writer, reader_side = await _pair()
        out = FrameWriter(writer)
        out.send(("ack", 1, 7, False))
        out.send(("msg", lambda: None))  # a function does not pickle
        out.send(("ack", 1, 8, False))
        await out.drain()
        events = await read_frame(reader)
        writer.close()
        reader_side.close()
        return events

    assert asyncio.run(main()) == [("ack", 1, 7, False), ("ack", 1, 8, False)]
    assert "event 'msg' dropped" in caplog.text


def test_a_channel_the_receiver_reports_closed_settles_nothing_more() -> None:
    out = _Recorder()
    link = _Link(out)  # type: ignore[arg-type]
    on_closed, on_other = _delivery(link, key=3), _delivery(link, key=4)
    link.close_channel(3)
    with pytest.raises(BrokerUnavailable):
        asyncio.run(on_closed.ack())
    asyncio.run(on_other.ack())
    assert out.sent == [("ack", 4, 9, False)]
    assert link.channel(3) is not on_closed.channel  # a new channel under that key


def test_close_cuts_a_restart_pause_short() -> None:
    async def main() -> float:
        amqp = remote.RemoteAmqp("amqp://x/", [], "dlx", 1, lambda q, m: None, lambda c: None)
        loop = asyncio.get_running_loop()
        began = loop.time()
        pause = loop.create_task(amqp._pause(30.0))
        await asyncio.sleep(0)
        await amqp.close()  # no receiver runs: nothing to ask, only the pause to end
        await asyncio.wait_for(pause, 5)
        return loop.time() - began

    assert asyncio.run(main()) < 5
