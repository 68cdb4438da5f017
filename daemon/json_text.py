"""The one way the daemon turns values into JSON text.

Snapshots, claimed entry params, outbox rows and ``reply_to`` results all go through
:func:`dumps`, so a value becomes the same thing wherever it is written, and a job
reads back after a restart what a test against the in-memory store reads::

    dumps({"mean": float("nan"), 1: "one"})   # '{"mean":null,"1":"one"}'

What a value becomes:

* NaN, Infinity and -Infinity become ``null``. JSON has no such numbers: Python's
  json module writes tokens that other languages' parsers reject, and so does
  SQLite (``json_extract`` fails on any row holding one, and with it every query
  over the ``jobs`` table that reaches that row). A job resumed from such a
  checkpoint reads ``None`` there.
* dict keys that are not strings become strings, as the json module makes them.
* integers beyond 64 bits are kept.
* ``datetime``/``date``/``time`` become ISO-8601 text, ``UUID`` its text, an
  ``Enum`` member its value and a dataclass an object of its fields.
* anything else raises ``TypeError`` (or goes through ``default`` if given).

orjson does the work: it is about ten times faster than the json module, and
snapshots are encoded on the store's writer thread, which holds the write lock.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import uuid
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["dumps"]

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """Compact JSON text of ``value`` (see the module's docstring for the rules).

    ``default(obj)`` is called for values of no known type and returns something
    that is; without it they raise ``TypeError``, as does circular data.
    """
    try:
        return orjson.dumps(value, default=default, option=_OPTIONS).decode()
    except orjson.JSONEncodeError as exc:  # a TypeError
        if "64-bit" not in str(exc):
            raise
    # Only values holding integers beyond 64 bits get here: the json module keeps those.
    return _fallback(default).encode(_finite(value))


def _fallback(default: Callable[[Any], Any] | None) -> json.JSONEncoder:
    def convert(obj: Any) -> Any:
        known = _as_orjson_writes(obj)
        if known is not _UNKNOWN:
            return known
        if default is not None:
            return _finite(default(obj))
        raise TypeError(f"Type is not JSON serializable: {type(obj).__name__}")

    return json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=convert)


_UNKNOWN = object()


def _as_orjson_writes(obj: Any) -> Any:
    """What orjson writes for the types it knows beyond plain JSON (for the fallback)."""
    if isinstance(obj, (datetime.datetime, datetime.date, datetime.time)):
        return obj.isoformat()
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return _finite(obj.value)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _finite({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    return _UNKNOWN


def _finite(value: Any) -> Any:
    """``value`` with every NaN/Infinity in its lists and dicts replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
