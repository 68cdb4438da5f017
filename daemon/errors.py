"""Exceptions of the daemon package; every one derives from :class:`DaemonError`.

::

    DaemonError                 anything the daemon reports to the user
    +-- ConfigError             bad config file, bad value, unknown key (``problems`` lists each)
    +-- FlowLoadError           a flow module/file failed to load, or a trigger names
    |                           an unknown flow/entry (``problems`` lists each)
    +-- BrokerUnavailable       RabbitMQ cannot be reached or refused an operation
    +-- StoreError              the SQLite store is missing, unreadable or inconsistent

The CLI turns any ``DaemonError`` into exit code 1 with a one-line reason; anything
else is a bug and is reported as an internal error.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["BrokerUnavailable", "ConfigError", "DaemonError", "FlowLoadError", "StoreError"]


class DaemonError(Exception):
    """Root of every error the daemon raises on purpose (a problem the user can fix)."""


class _ProblemsError(DaemonError):
    """An error that carries a list of one-line problems, all reported at once."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: list[str] = list(problems) or ["unknown problem"]
        count = len(self.problems)
        head = self.problems[0] if count == 1 else f"{count} problems: " + "; ".join(self.problems)
        super().__init__(head)


class ConfigError(_ProblemsError):
    """The configuration is invalid; ``problems`` has one line per bad key."""


class FlowLoadError(_ProblemsError):
    """Flows could not be loaded or triggers reference unknown flows/entries."""


class BrokerUnavailable(DaemonError):
    """RabbitMQ could not be reached, or refused the operation (missing queue, ...)."""


class StoreError(DaemonError):
    """The job store is missing, unreadable or not a Routilux store."""
