"""Logging for the daemon process: one line per record, as text or JSON.

One line per record keeps journald and container log collectors from splitting a
traceback into unrelated entries; in text mode newlines are escaped, in JSON mode
the traceback is a string field.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Literal, TextIO

__all__ = [
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "UtcMillisStamps",
    "current_log_settings",
    "grouped_writes",
    "setup_logging",
]

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
        self._stamps = UtcMillisStamps()

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self._stamps(record.created)

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            line = super().format(record)
        else:  # the common case, without the generic formatter's lookups (2 lines a job)
            record.message = record.getMessage()
            line = (
                f"{self._stamps(record.created)} {record.levelname} {record.name}: {record.message}"
            )
        if "\n" in line or "\r" in line:
            line = line.replace("\r", "").replace("\n", "\\n")
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, exc (if any), extras."""

    def __init__(self) -> None:
        super().__init__()
        self._stamps = UtcMillisStamps()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": self._stamps(record.created),
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


class UtcMillisStamps:
    """Formats epoch seconds as ``2026-11-26T01:02:03.123Z`` (UTC, milliseconds).

    The date and time up to the second are formatted once per second and reused:
    a formatter stamps two lines per job, and ``datetime.isoformat`` costs more
    than the rest of the line. Each formatter owns one; calls may come from any
    thread (the cache is one tuple, replaced whole).
    """

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")

    def __call__(self, created: float) -> str:
        # Rounded to the microsecond first, the way datetime.fromtimestamp does.
        fraction, whole = math.modf(created)
        second, micros = divmod(int(whole) * 1_000_000 + round(fraction * 1_000_000), 1_000_000)
        cached = self._second
        if cached[0] == second:
            prefix = cached[1]
        else:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, prefix)
        return f"{prefix}.{micros // 1000:03d}Z"


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler whose records can be gathered into one write (``grouped_writes``).

    Each write to the stream is a system call that gives up the GIL, and under load
    getting it back waits behind busy threads; the daemon's per-job log lines are
    written a batch at a time instead of a line at a time.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._grouping = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        lines: list[str] | None = getattr(self._grouping, "lines", None)
        if lines is None:
            super().emit(record)
            return
        try:
            lines.append(self.format(record))
        except Exception:
            self.handleError(record)

    @contextmanager
    def grouped(self) -> Iterator[None]:
        """Within the block, this thread's records are written together at its end."""
        if getattr(self._grouping, "lines", None) is not None:
            yield  # already grouping: the outer block writes
            return
        lines: list[str] = []
        self._grouping.lines = lines
        try:
            yield
        finally:
            self._grouping.lines = None
            if lines:
                self._write_group(lines)

    def _write_group(self, lines: list[str]) -> None:
        text = self.terminator.join(lines) + self.terminator
        try:
            with self.lock or nullcontext():
                self.stream.write(text)
                self.flush()
        except Exception:  # as emit() does: report on stderr, never raise into the caller
            self.handleError(logging.makeLogRecord({"msg": text}))


@contextmanager
def grouped_writes() -> Iterator[None]:
    """Gather this thread's log records into one write at the end of the block.

    Records still pass through levels, filters and formatters as usual; only the
    daemon's own handler (if installed) defers its writes. Grouping is per thread:
    use it around a burst of records on one thread (the job tracker's log writer),
    not around anything that blocks or awaits, or other work's records wait too.
    """
    handler = next((h for h in logging.getLogger().handlers if h.get_name() == HANDLER_NAME), None)
    if not isinstance(handler, LineHandler):
        yield
        return
    with handler.grouped():
        yield


def setup_logging(
    fmt: LogFormat = "text", level: int = logging.INFO, stream: TextIO | None = None
) -> LineHandler:
    """Install one handler on the root logger (replacing one installed before).

    Other handlers (pytest's, a host application's) are left alone, but the
    process-wide record fields the daemon's formats never show are no longer
    collected: caller (``funcName``, ``lineno``), thread and process ids. Below DEBUG,
    the AMQP and scheduler libraries are limited to warnings. Returns the handler
    so a caller can remove it.
    """
    # Our formats use no caller, thread or process fields: not collecting them saves
    # a stack walk and several lookups in every record (the daemon logs two per job).
    logging._srcfile = None  # documented in the logging HOWTO, "Optimization"
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == HANDLER_NAME:
            root.removeHandler(handler)
            handler.close()
    handler = LineHandler(stream if stream is not None else sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    # aio-pika/aiormq/apscheduler are chatty at INFO about every channel and run;
    # their details only help when debugging.
    for name in _NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else logging.WARNING)
    return handler


def current_log_settings() -> tuple[LogFormat, int]:
    """The format and level :func:`setup_logging` installed (text and INFO if it has
    not run), so a child process of the daemon can log the same way."""
    root = logging.getLogger()
    fmt: LogFormat = "text"
    for handler in root.handlers:
        if handler.get_name() == HANDLER_NAME and isinstance(handler.formatter, JsonFormatter):
            fmt = "json"
    level = root.level if root.level != logging.NOTSET else logging.INFO
    return fmt, level
