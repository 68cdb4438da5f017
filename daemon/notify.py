"""systemd ``sd_notify`` without a dependency: one datagram to ``$NOTIFY_SOCKET``.

With ``Type=notify`` systemd waits for ``READY=1`` before it considers the unit
started. Outside systemd (no ``NOTIFY_SOCKET``) every call is a cheap no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["Notifier"]

logger = logging.getLogger(__name__)


class Notifier:
    """Sends state lines to the service manager's notify socket.

    ``address`` is a filesystem path or an abstract socket name starting with ``@``;
    ``None`` disables notification. Sending never raises: a failed notify is logged,
    because the daemon must keep working when the manager went away.
    """

    def __init__(self, address: str | None) -> None:
        self.address = address or None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Notifier for ``$NOTIFY_SOCKET`` (disabled when unset)."""
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        """True when a notify socket is configured."""
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` (e.g. ``"READY=1"``) in one datagram; True if it was sent."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(lines).encode(), target)
        except OSError as exc:
            logger.warning("sd_notify to %s failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        """Tell the manager startup is complete (``READY=1``), with an optional status."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str = "") -> bool:
        """Tell the manager a graceful stop has begun (``STOPPING=1``)."""
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        """Set the free-text status shown by ``systemctl status``."""
        return self.notify(f"STATUS={text}")
