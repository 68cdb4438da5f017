"""SIGTERM/SIGINT handling on the service's loop.

The first signal asks for a graceful drain (``on_stop``); a second one while
draining exits the process at once with :data:`EXIT_FORCED` — every job's last
checkpoint is durable, so the next start resumes what was cut short.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: Exit code after a second SIGTERM/SIGINT cut the drain short.
EXIT_FORCED = 130
#: The signals that stop the daemon.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class SignalHandler:
    """First stop signal -> ``on_stop()``; second -> ``exit_now(EXIT_FORCED)``.

    ``exit_now`` defaults to :func:`os._exit` (no cleanup: the drain is what was
    being skipped); tests pass their own and call :meth:`handle` directly.
    """

    def __init__(
        self, on_stop: Callable[[], None], exit_now: Callable[[int], None] = os._exit
    ) -> None:
        self._on_stop = on_stop
        self._exit_now = exit_now
        self.received = 0

    def handle(self, signum: int) -> None:
        """React to one stop signal."""
        self.received += 1
        name = signal.Signals(signum).name
        if self.received == 1:
            logger.info("%s received: draining (send again to exit immediately)", name)
            self._on_stop()
        else:
            logger.warning("%s received again: exiting immediately", name)
            self._exit_now(EXIT_FORCED)

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Route the stop signals to :meth:`handle` through ``loop``."""
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self.handle, int(sig))

    def uninstall(self, loop: asyncio.AbstractEventLoop) -> None:
        """Give the stop signals back to their default handling."""
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
