"""Copy the WAL back into the database file on a thread of its own.

SQLite's automatic checkpoint runs inside the ``COMMIT`` that pushes the WAL past
its limit, so once every thousand pages one of the writer's transactions also
copies them and syncs the database file. Under load that was the daemon's latency
tail: writer transactions of 0.2 ms at the median took 5 ms at p99, and every
batch whose claims waited on one of them waited that long.

:class:`WalCheckpointer` runs ``PRAGMA wal_checkpoint(PASSIVE)`` on its own
connection instead, every :data:`BUSY_INTERVAL` seconds while the WAL grows
(every :data:`IDLE_INTERVAL` while it does not). A passive checkpoint never
blocks the writer, and the sqlite3 module releases the GIL around it. The write
connection keeps an automatic checkpoint at :data:`BACKSTOP_PAGES`: SQLite can
only start the WAL over once a checkpoint has caught up, which one running beside
a busy writer may never do. Past that size this thread stands aside for a while,
so the writer's own checkpoint (which then finds little left to copy) catches up
and the WAL starts over; should this thread fail, the same backstop bounds the WAL.

Usage::

    checkpointer = WalCheckpointer(path, synchronous="normal", busy_timeout_ms=5000)
    checkpointer.start()
    ...
    checkpointer.close()  # before the write connection: the last one removes the WAL

Nothing here is about durability: a committed transaction is as durable in the WAL
as in the database file (per ``synchronous``).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

from daemon.checkpoints.schema import open_write_connection

__all__ = ["BACKSTOP_PAGES", "WalCheckpointer"]

logger = logging.getLogger(__name__)

#: Seconds between checkpoints while the last one copied pages.
BUSY_INTERVAL = 0.05
#: Seconds between checkpoints while the WAL stays as it was.
IDLE_INTERVAL = 1.0
#: The write connection's own automatic checkpoint (pages; SQLite's default is 1,000).
BACKSTOP_PAGES = 4_000
#: Seconds between two log lines about failing checkpoints.
ERROR_LOG_INTERVAL = 60.0


class WalCheckpointer:
    """Owns one connection and the thread that checkpoints through it.

    :meth:`start` once, :meth:`close` once (idempotent). ``connect`` opens the
    connection on the thread (tests pass their own, and shorter intervals).
    """

    def __init__(
        self,
        path: str,
        *,
        synchronous: str,
        busy_timeout_ms: int,
        connect: Callable[[], sqlite3.Connection] | None = None,
        busy_interval: float = BUSY_INTERVAL,
        idle_interval: float = IDLE_INTERVAL,
    ) -> None:
        self.path = path
        self._intervals = (busy_interval, idle_interval)
        self._connect = connect or (
            lambda: open_write_connection(
                path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms
            )
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpointer", daemon=True)
        self._last_error_log = float("-inf")
        #: Checkpoints run, and those that copied pages or found the WAL started over.
        self.checkpoints = 0
        self.progressed = 0
        self._last_seen = (0, 0)  # (frames in the WAL, of which copied), as last reported

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop the thread and close its connection, waiting up to ``timeout`` seconds
        (None: as long as it takes) for a checkpoint in progress, which SQLite cannot
        cut short."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning(
                "WAL checkpoint of %s still running at close; the WAL file stays until it ends",
                self.path,
            )

    def _run(self) -> None:
        try:
            conn = self._connect()
        except Exception as exc:
            logger.warning(
                "WAL checkpoints of %s stay with the writer: cannot open a connection (%s)",
                self.path,
                exc,
            )
            return
        try:
            often, seldom = self._intervals
            interval = often
            while not self._stop.wait(interval):
                frames = self._checkpoint(conn)
                # Past the backstop, stand aside: the WAL starts over only after a
                # checkpoint that caught up, which the writer's own one does between its
                # transactions, unless one of this thread's holds the lock just then.
                keep_up = frames is not None and frames < BACKSTOP_PAGES
                interval = often if keep_up else seldom
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> int | None:
        """One passive checkpoint; the WAL's frames if it changed since the last one
        (None if it did not, or the checkpoint could not run)."""
        try:
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:  # disk full, I/O error: the backstop still bounds the WAL
            now = time.monotonic()
            if now - self._last_error_log >= ERROR_LOG_INTERVAL:
                self._last_error_log = now
                logger.warning("WAL checkpoint of %s failed: %s", self.path, exc)
            return None
        if busy:  # another checkpoint holds the lock (the writer's, past the backstop)
            return None
        self.checkpoints += 1
        last_frames, last_copied = self._last_seen
        self._last_seen = (frames, copied)
        if frames < last_frames or copied > last_copied:  # started over, or copied pages
            self.progressed += 1
        if (frames, copied) == (last_frames, last_copied):
            return None
        return int(frames)
