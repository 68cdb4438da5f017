"""daemon.json_text.dumps: one rule for every JSON text the daemon writes."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
import json
import uuid
from typing import Any

import pytest

from daemon.json_text import dumps

BIG = 2**70  # beyond 64 bits: orjson refuses it, so a value holding it takes the other path
MOMENT = datetime.datetime(2026, 11, 26, 1, 2, 3, 456000, tzinfo=datetime.timezone.utc)


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: float
    y: float
    _cache: int = 0


class Ratio(float):
    """Stands for numpy.float64 and the like."""


class Stamp(datetime.datetime):
    """Stands for pandas.Timestamp and the like."""


Pair = collections.namedtuple("Pair", "a b")


def strict_loads(text: str) -> Any:
    """json.loads refusing NaN/Infinity, as parsers outside Python do."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def test_nan_and_infinities_become_null_at_any_depth() -> None:
    value = {"m": float("nan"), "b": [float("-inf"), 1.5, float("inf")], "n": {"m": [float("nan")]}}
    assert strict_loads(dumps(value)) == {"m": None, "b": [None, 1.5, None], "n": {"m": [None]}}


def test_values_beyond_plain_json() -> None:
    value = {
        1: "int key",
        None: "none key",
        Colour.RED: "enum key",
        "at": MOMENT,
        "day": MOMENT.date(),
        "clock": MOMENT.time(),
        "id": uuid.UUID(int=5),
        "colour": Colour.RED,
        "point": Point(1.0, float("inf")),
        "pair": (1, None),
    }
    assert strict_loads(dumps(value)) == {
        "1": "int key",
        "null": "none key",
        "red": "enum key",
        "at": "2026-11-26T01:02:03.456000+00:00",
        "day": "2026-11-26",
        "clock": "01:02:03.456000",
        "id": "00000000-0000-0000-0000-000000000005",
        "colour": "red",
        "point": {"x": 1.0, "y": None},
        "pair": [1, None],
    }


def test_integers_beyond_64_bits_are_kept_as_keys_and_values() -> None:
    value = {"n": BIG, BIG: [-BIG, 2**64 - 1, -(2**63)], "point": Point(BIG, 0.5)}
    assert dumps(value) == (
        f'{{"n":{BIG},"{BIG}":[{-BIG},{2**64 - 1},{-(2**63)}],"point":{{"x":{BIG},"y":0.5}}}}'
    )


SAMPLES: dict[str, Any] = {
    "plain": {"a": [1, 2.5, "x", None, True]},
    "beyond plain JSON": {"at": MOMENT, "id": uuid.UUID(int=1), "c": Colour.RED, "t": (1,)},
    "nan key": {float("nan"): 1},
    "float key": {1e-7: 1},
    "date, uuid and enum keys": {MOMENT.date(): 1, uuid.UUID(int=2): 2, Colour.RED: 3},
    "dataclass with a private field": Point(1.0, 2.0, 3),
    "float subclass": {"r": Ratio(1.5)},
    "named tuple": {"p": Pair(1, float("nan"))},
    "datetime subclass": {"s": Stamp(2026, 1, 1)},
    "time with a timezone": {"t": MOMENT.timetz()},
    "tuple key": {(1, 2): 1},
    "lone surrogate": {"s": "\ud800"},
    "object": {"o": object()},
    "too deep": nested(300),
}


@pytest.mark.parametrize("sample", SAMPLES.values(), ids=SAMPLES.keys())
@pytest.mark.parametrize("default", [None, repr], ids=["no default", "default=repr"])
def test_a_value_holding_a_big_integer_follows_the_same_rules(sample: Any, default: Any) -> None:
    def outcome(value: Any) -> Any:
        try:
            return strict_loads(dumps(value, default=default))
        except Exception as exc:
            return type(exc)

    alone, with_big = outcome(sample), outcome([sample, BIG])
    assert with_big == ([alone, BIG] if not isinstance(alone, type) else alone)


def test_output_is_compact() -> None:
    assert dumps({"a": [1, 2], "b": None}) == '{"a":[1,2],"b":null}'


def test_a_value_of_no_json_form_raises_type_error() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps({"x": object(), "big": BIG})


def test_circular_data_raises_type_error_on_both_paths() -> None:
    circular: dict[str, Any] = {}
    circular["self"] = circular
    with pytest.raises(TypeError):
        dumps(circular)
    circular["big"] = BIG
    with pytest.raises(TypeError):
        dumps(circular)


def test_default_converts_unknown_values_and_its_result_follows_the_rules() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    def convert(obj: Any) -> Any:
        return [repr(obj), float("nan"), BIG]

    assert strict_loads(dumps({"x": Opaque()}, default=convert)) == {"x": ["<opaque>", None, BIG]}
