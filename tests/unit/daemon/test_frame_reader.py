"""frame_reader.read_frame reads what aiormq's own FrameReceiver reads, and fails alike."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pamqp.frame
import pytest
from aiormq.connection import FrameReceiver
from aiormq.exceptions import AMQPConnectionError, InvalidFrameError, ProtocolSyntaxError
from pamqp import body, commands, header, heartbeat

from daemon.amqp import frame_reader


def message_frames(tag: int, payload: bytes) -> bytes:
    """One delivery as the broker sends it: method, content header, body frames (none
    for an empty body)."""
    deliver = commands.Basic.Deliver("ctag", tag, False, "", "orders")
    properties = commands.Basic.Properties(
        message_id=f"m{tag}", content_type="application/json", headers={"n": tag}
    )
    return (
        pamqp.frame.marshal(deliver, 1)
        + pamqp.frame.marshal(header.ContentHeader(0, len(payload), properties), 1)
        + (pamqp.frame.marshal(body.ContentBody(payload), 1) if payload else b"")
    )


TUNE = pamqp.frame.marshal(commands.Connection.Tune(2047, 131072, 60), 0)
STREAM = (
    TUNE
    + message_frames(1, b'{"n": 1}')
    + pamqp.frame.marshal(heartbeat.Heartbeat(), 0)
    + message_frames(2, b"")
    + message_frames(3, b"x" * 70_000)
)


async def read_all(get_frame: Any, data: bytes, chunk: int) -> tuple[list[bytes], BaseException]:
    """Feed ``data`` in ``chunk``-sized pieces; frames read (re-marshalled) and the
    exception that ended the reading."""
    reader = asyncio.StreamReader()
    receiver = FrameReceiver(reader)

    async def feed() -> None:
        for start in range(0, len(data), chunk):
            if start:
                await asyncio.sleep(0)  # the reader waits for the rest meanwhile
            reader.feed_data(data[start : start + chunk])
        reader.feed_eof()  # with the last piece: the stream then ends between frames

    feeding = asyncio.ensure_future(feed())
    frames: list[bytes] = []
    try:
        while True:
            weight, channel, frame = await get_frame(receiver)
            marshalled = pamqp.frame.marshal(frame, channel)
            assert weight == len(marshalled)
            frames.append(marshalled)
    except BaseException as exc:  # the ending is compared too
        ending: BaseException = exc
    await feeding
    return frames, ending


def both(data: bytes, chunk: int = 1 << 16) -> Iterator[tuple[list[bytes], BaseException]]:
    for get_frame in (frame_reader.ORIGINAL_GET_FRAME, frame_reader.read_frame):
        yield asyncio.run(read_all(get_frame, data, chunk))


@pytest.mark.parametrize("chunk", [1, 7, 100, 1 << 16])
def test_a_stream_of_frames_reads_the_same_in_any_chunking(chunk: int) -> None:
    (theirs, their_end), (ours, our_end) = both(STREAM, chunk)
    assert ours == theirs and len(ours) == 10
    assert type(our_end) is type(their_end) is StopAsyncIteration


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (STREAM[:-3], AMQPConnectionError),  # closed mid-frame
        (STREAM[:5], AMQPConnectionError),  # closed mid-header
        (b"AMQP\x00\x00\x09\x01", ProtocolSyntaxError),  # the server speaks another version
        (TUNE[:-1] + b"\x00", InvalidFrameError),  # no frame-end octet
        (b"\x09\x00\x01\x00\x00\x00\x01x\xce", InvalidFrameError),  # unknown frame type
    ],
    ids=["truncated-payload", "truncated-header", "protocol-header", "frame-end", "frame-type"],
)
def test_bad_streams_fail_as_aiormq_fails(data: bytes, error: type[Exception]) -> None:
    (theirs, their_end), (ours, our_end) = both(data)
    assert ours == theirs
    assert isinstance(their_end, error) and isinstance(our_end, error)


def test_install_swaps_the_method_once_and_uninstall_restores_it() -> None:
    async def main() -> None:
        try:
            assert frame_reader.install() and frame_reader.install()
            assert FrameReceiver.get_frame is frame_reader.read_frame
        finally:
            frame_reader.uninstall()
        assert FrameReceiver.get_frame is frame_reader.ORIGINAL_GET_FRAME

    asyncio.run(main())


def test_a_method_someone_else_put_there_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    async def theirs(self: Any) -> Any:
        raise AssertionError("not called")

    monkeypatch.setattr(FrameReceiver, "get_frame", theirs)

    async def main() -> bool:
        return frame_reader.install()

    assert asyncio.run(main()) is False
    assert FrameReceiver.get_frame is theirs


def test_another_aiormq_version_keeps_its_own_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frame_reader.importlib.metadata, "version", lambda _name: "8.0.0")

    async def main() -> bool:
        return frame_reader.install()

    assert asyncio.run(main()) is False
    assert FrameReceiver.get_frame is frame_reader.ORIGINAL_GET_FRAME
