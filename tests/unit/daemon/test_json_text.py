"""daemon.json_text.dumps: one rule for every JSON text the daemon writes."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import uuid
from typing import Any

import pytest

from daemon.json_text import dumps

BIG = 2**70  # beyond 64 bits: orjson refuses it, so the value takes the fallback path


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: float
    y: float


def strict_loads(text: str) -> Any:
    """json.loads refusing NaN/Infinity, as parsers outside Python do."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinities_become_null_at_any_depth() -> None:
    value = {
        "mean": float("nan"),
        "bounds": [float("-inf"), 1.5, float("inf")],
        "n": {"m": [float("nan")]},
    }
    assert strict_loads(dumps(value)) == {
        "mean": None,
        "bounds": [None, 1.5, None],
        "n": {"m": [None]},
    }


def test_integers_beyond_64_bits_are_kept_with_the_same_rules_for_the_rest() -> None:
    moment = datetime.datetime(2026, 11, 26, 1, 2, 3, 456000, tzinfo=datetime.timezone.utc)
    rest = {
        "nan": float("nan"),
        1: "non-str key",
        "at": moment,
        "day": moment.date(),
        "id": uuid.UUID(int=5),
        "colour": Colour.RED,
        "point": Point(1.0, float("inf")),
        "pair": (1, None),
    }
    fast, fallback = dumps(rest), dumps({**rest, "big": BIG})
    assert strict_loads(fallback) == {**strict_loads(fast), "big": BIG}
    assert strict_loads(fast) == {
        "nan": None,
        "1": "non-str key",
        "at": "2026-11-26T01:02:03.456000+00:00",
        "day": "2026-11-26",
        "id": "00000000-0000-0000-0000-000000000005",
        "colour": "red",
        "point": {"x": 1.0, "y": None},
        "pair": [1, None],
    }


def test_output_is_compact() -> None:
    assert dumps({"a": [1, 2], "b": None}) == '{"a":[1,2],"b":null}'
    assert dumps({"a": [1, BIG]}) == f'{{"a":[1,{BIG}]}}'


@pytest.mark.parametrize("extra", [{}, {"big": BIG}], ids=["fast", "fallback"])
def test_a_value_of_no_json_form_raises_type_error(extra: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps({"x": object(), **extra})


def test_circular_data_raises_type_error() -> None:
    circular: dict[str, Any] = {}
    circular["self"] = circular
    with pytest.raises(TypeError):
        dumps(circular)


@pytest.mark.parametrize("extra", [{}, {"big": BIG}], ids=["fast", "fallback"])
def test_default_converts_unknown_values_and_its_result_follows_the_rules(
    extra: dict[str, Any],
) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    text = dumps({"x": Opaque(), **extra}, default=lambda obj: [repr(obj), float("nan")])
    assert strict_loads(text)["x"] == ["<opaque>", None]
