"""A leaner way for aiormq to read frames off the socket.

A message arrives as three frames (method, content header, body), and aiormq reads
each one with three awaited reads into a ``BytesIO`` under an ``asyncio.Lock``.
:func:`read_frame` reads the 7-byte frame header and then the payload with its end
marker, two awaited reads in all, and leaves the parsing to pamqp as aiormq does:
the same frames come out, and errors of the same types. The event loop's CPU per
message fell by 5-14% (docs/benchmarks.md).

:func:`install` puts it in place of ``aiormq.connection.FrameReceiver.get_frame``,
for every aiormq connection of the process (there is no hook for one connection:
aiormq makes its receiver inside ``Connection.connect``). The daemon installs it
when its consumer starts. It returns False, and changes nothing, unless aiormq is
the version this was written against (7.x) with its own method in place::

    frame_reader.install()   # before connecting
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from typing import Any

import pamqp.frame
from aiormq import connection as aiormq_connection
from aiormq.exceptions import AMQPConnectionError, InvalidFrameError, ProtocolSyntaxError
from pamqp.exceptions import PAMQPException

__all__ = ["install", "read_frame", "uninstall"]

#: Frame header: type (1 byte), channel (2), payload size (4).
HEADER_SIZE = 7


async def read_frame(receiver: Any) -> Any:
    """The next ``(weight, channel, frame)`` of ``receiver``'s stream, as aiormq's
    ``FrameReceiver.get_frame`` returns it.

    Raises StopAsyncIteration at the end of the stream, AMQPConnectionError if the
    connection fails or closes mid-frame, ProtocolSyntaxError if the server answers
    with a protocol header (a version it does not speak), InvalidFrameError for a
    frame pamqp cannot parse.
    """
    reader: asyncio.StreamReader = receiver.reader
    if reader.at_eof():
        del receiver.reader
        raise StopAsyncIteration
    try:
        header = await reader.readexactly(HEADER_SIZE)
        if not receiver.started and header.startswith(b"AMQP"):
            raise ProtocolSyntaxError("Unexpected AMQP protocol header")
        receiver.started = True
        _, _, size = pamqp.frame.frame_parts(header)
        if size is None:
            raise InvalidFrameError("No frame length")
        payload = await reader.readexactly(size + 1)  # and the frame-end octet
    except asyncio.IncompleteReadError as exc:
        raise AMQPConnectionError(
            "Server connection unexpectedly closed. "
            f"Read {len(exc.partial)} bytes but {exc.expected} bytes expected"
        ) from exc
    except ConnectionRefusedError as exc:
        raise AMQPConnectionError(f"Server connection refused: {exc!r}") from exc
    except ConnectionResetError as exc:
        raise AMQPConnectionError(f"Server connection reset: {exc!r}") from exc
    except ConnectionError as exc:
        raise AMQPConnectionError(f"Server connection error: {exc!r}") from exc
    except OSError as exc:
        raise AMQPConnectionError(f"Server communication error: {exc!r}") from exc
    try:
        return pamqp.frame.unmarshal(header + payload)
    except PAMQPException as exc:
        raise InvalidFrameError(str(exc)) from exc


#: aiormq's own method, kept for comparison (tests) and for :func:`uninstall`.
ORIGINAL_GET_FRAME: Any = getattr(
    getattr(aiormq_connection, "FrameReceiver", None), "get_frame", None
)


def install() -> bool:
    """Read frames with :func:`read_frame` in every aiormq connection from now on.

    Call it on the event loop. Idempotent. False, changing nothing, unless this is
    aiormq 7.x with its own ``FrameReceiver.get_frame`` in place (another version
    may read differently; a method someone else put there stays).
    """
    receiver_class = getattr(aiormq_connection, "FrameReceiver", None)
    if receiver_class is None or ORIGINAL_GET_FRAME is None:
        return False
    if receiver_class.get_frame is read_frame:
        return True
    if not (_is_aiormqs_own(receiver_class.get_frame) and _aiormq_major() == 7):
        return False  # another version, or someone else replaced it: leave it
    try:
        probe = receiver_class(asyncio.StreamReader())
    except Exception:  # a constructor of another shape
        return False
    if not (hasattr(probe, "reader") and hasattr(probe, "started")):
        return False
    receiver_class.get_frame = read_frame
    return True


def _is_aiormqs_own(method: Any) -> bool:
    return bool(
        method is ORIGINAL_GET_FRAME
        and getattr(method, "__module__", None) == "aiormq.connection"
        and getattr(method, "__qualname__", None) == "FrameReceiver.get_frame"
    )


def _aiormq_major() -> int | None:
    try:
        return int(importlib.metadata.version("aiormq").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def uninstall() -> None:
    """Give aiormq its own ``get_frame`` back (for tests)."""
    receiver_class = getattr(aiormq_connection, "FrameReceiver", None)
    if receiver_class is not None and receiver_class.get_frame is read_frame:
        receiver_class.get_frame = ORIGINAL_GET_FRAME
