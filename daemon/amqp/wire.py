"""Frames between the daemon and its AMQP receiver process (:mod:`daemon.amqp.receiver`).

A frame is a 4-byte big-endian length and a pickled list of events (tuples whose
first item names the event). Both ends are processes of the same installation
joined by a socket pair, never a network peer, so pickle is safe here and is the
cheapest way to move bodies (bytes) and AMQP headers (dates, decimals, nested
tables) as they are. Each end gathers the events of one loop turn into one frame:
one write and one read for many deliveries.

    writer = FrameWriter(stream_writer)
    writer.send(("ack", 3, 17, True))    # queued; written at the end of this loop turn
    events = await read_frame(stream_reader)
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import struct
from typing import Any

__all__ = ["FrameWriter", "read_frame"]

logger = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")

#: The largest frame accepted: a batch of deliveries at the broker's own body limit
#: (128 MiB by default) still fits; anything larger is a broken stream.
MAX_FRAME = 1 << 30


async def read_frame(reader: asyncio.StreamReader) -> list[tuple[Any, ...]]:
    """The next frame's events. Raises ``asyncio.IncompleteReadError`` at end of stream
    and ``ValueError`` on a frame that cannot be a valid one."""
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes from the other process: stream is broken")
    events = pickle.loads(await reader.readexactly(length))
    if not isinstance(events, list):
        raise ValueError(f"frame holds a {type(events).__name__}, not a list of events")
    return events


class FrameWriter:
    """Queues events and writes them as one frame at the end of the loop turn. Loop-only."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._events: list[tuple[Any, ...]] = []

    @property
    def closing(self) -> bool:
        """True once the stream is closed or closing: nothing sent now arrives."""
        return self._writer.is_closing()

    def send(self, event: tuple[Any, ...]) -> None:
        """Queue ``event``; it goes out with the others of this loop turn, in order."""
        if not self._events:
            asyncio.get_running_loop().call_soon(self.flush)
        self._events.append(event)

    def flush(self) -> None:
        """Write what is queued now (called by the loop; call it before closing)."""
        events, self._events = self._events, []
        if not events or self._writer.is_closing():
            return
        try:
            payload = pickle.dumps(events, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # one bad event must not take the others with it
            events = [event for event in events if _picklable(event)]
            payload = pickle.dumps(events, protocol=pickle.HIGHEST_PROTOCOL)
        self._writer.write(_LENGTH.pack(len(payload)) + payload)

    async def drain(self) -> None:
        """Flush, then wait until the stream has taken everything written."""
        self.flush()
        if not self._writer.is_closing():
            await self._writer.drain()


def _picklable(event: tuple[Any, ...]) -> bool:
    try:
        pickle.dumps(event, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        logger.error("event %r dropped: it cannot cross to the other process (%s)", event[0], exc)
        return False
    return True
