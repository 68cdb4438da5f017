"""The one way the daemon turns values into JSON text.

Snapshots, claimed entry params, outbox rows and ``reply_to`` results all go through
:func:`dumps`, so a value becomes the same thing wherever it is written, and a job
reads back after a restart what a test against the in-memory store reads::

    dumps({"mean": float("nan"), 1: "one"})   # '{"mean":null,"1":"one"}'

What a value becomes (orjson's rules, with two choices of ours):

* NaN, Infinity and -Infinity become ``null``. JSON has no such numbers: Python's
  json module writes tokens that other languages' parsers reject, and so does
  SQLite (``json_extract`` fails on any row holding one, and with it every query
  over the ``jobs`` table that reaches that row). A job resumed from such a
  checkpoint reads ``None`` there.
* integers beyond 64 bits are kept (orjson refuses them; the json module keeps them,
  and message bodies may carry them).
* dict keys become strings: numbers, booleans and None as the json module writes
  them, dates, UUIDs and Enum members as below.
* ``datetime``, ``date`` and ``time`` (without a timezone) become ISO-8601 text, a
  ``UUID`` its text, an ``Enum`` member its value, a dataclass an object of its
  fields (not those starting with ``_``), a tuple a list.
* anything else raises ``TypeError`` (or goes through ``default`` if given): among
  others subclasses of float, tuple and datetime (numpy numbers, named tuples,
  pandas timestamps), a ``time`` with a timezone, tuples as dict keys.

orjson does the work: it is about ten times faster than the json module, and
snapshots are encoded on the store's writer thread, which holds the write lock.
"""

from __future__ import annotations

import dataclasses
import secrets
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
    return _dumps_with_big_ints(value, default)


#: The integers orjson writes itself (i64 and u64).
_SMALLEST, _LARGEST = -(2**63), 2**64 - 1
#: Nesting orjson refuses beyond; the walk below stops there too.
_MAX_DEPTH = 255


def _dumps_with_big_ints(value: Any, default: Callable[[Any], Any] | None) -> str:
    """orjson's text for a value holding integers beyond 64 bits.

    Each such integer is swapped for a unique placeholder string, orjson writes the
    rest by its own rules, and the placeholders are then replaced by the digits. A
    big dict key becomes its decimal text, as the json module writes it.
    """
    token = f"routilux-big-int-{secrets.token_hex(8)}-"
    found: list[int] = []

    def walk(item: Any, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise TypeError("Recursion limit reached")
        if isinstance(item, int) and not isinstance(item, bool):
            if _SMALLEST <= item <= _LARGEST:
                return item
            found.append(int(item))
            return f"{token}{len(found) - 1}"
        if isinstance(item, dict):
            return {_key(k): walk(v, depth + 1) for k, v in item.items()}
        if isinstance(item, list) or type(item) is tuple:
            return [walk(v, depth + 1) for v in item]
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            # orjson writes a dataclass as its fields, leaving out "_" ones.
            return {
                f.name: walk(getattr(item, f.name), depth + 1)
                for f in dataclasses.fields(item)
                if not f.name.startswith("_")
            }
        return item

    def walked_default(obj: Any) -> Any:
        assert default is not None
        return walk(default(obj), 0)

    text = orjson.dumps(
        walk(value, 0), default=walked_default if default else None, option=_OPTIONS
    ).decode()
    for index, number in enumerate(found):
        text = text.replace(f'"{token}{index}"', str(number))
    return text


def _key(key: Any) -> Any:
    big = isinstance(key, int) and not isinstance(key, bool)
    return str(int(key)) if big and not _SMALLEST <= key <= _LARGEST else key
