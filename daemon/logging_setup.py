"""Logging for the daemon process: one line per record, as text or JSON.

One line per record keeps journald and container log collectors from splitting a
traceback into unrelated entries; in text mode newlines are escaped, in JSON mode
the traceback is a string field.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Literal, TextIO

__all__ = ["JsonFormatter", "LogFormat", "TextFormatter", "setup_logging"]

LogFormat = Literal["text", "json"]

#: Name of the handler this module installs; a second setup replaces only it.
HANDLER_NAME = "routilux-daemon"

#: Third-party loggers kept at WARNING unless the level is DEBUG.
_NOISY_LIBRARIES = ("aio_pika", "aiormq", "apscheduler")

#: Attributes every LogRecord has; anything else was passed with ``extra=``.
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class TextFormatter(logging.Formatter):
    """``2026-11-26T01:02:03.123Z INFO daemon.cli: message`` with newlines escaped."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_iso(record.created)

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\r", "").replace("\n", "\\n")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, exc (if any), extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": _utc_iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        return json.dumps(entry, default=str)


def setup_logging(
    fmt: LogFormat = "text", level: int = logging.INFO, stream: TextIO | None = None
) -> logging.Handler:
    """Install one handler on the root logger (replacing one installed before).

    Other handlers (pytest's, a host application's) are left alone. Below DEBUG,
    the AMQP and scheduler libraries are limited to warnings. Returns the handler
    so a caller can remove it.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == HANDLER_NAME:
            root.removeHandler(handler)
            handler.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    # aio-pika/aiormq/apscheduler are chatty at INFO about every channel and run;
    # their details only help when debugging.
    for name in _NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else logging.WARNING)
    return handler


def _utc_iso(created: float) -> str:
    stamp = datetime.fromtimestamp(created, tz=timezone.utc)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
