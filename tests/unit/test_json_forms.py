"""The JSON texts the write path stores and compares are exactly what `json` writes.

`dumps` (stored JSON) and `stable_json` (the comparison and transition-log form) write
the common small shapes without an encoder; whatever they are given, the text must be
byte for byte the one the `json` module gives.
"""

from __future__ import annotations

import enum
import json
import random
from typing import Any

import pytest

from reactive_core._entities.changes import stable_json
from reactive_core._store.backend import dumps


class Level(enum.IntEnum):
    LOW = 1


class Colour(enum.StrEnum):
    RED = "red"


class Text(str):
    pass


_SCALARS: list[Any] = [
    "", "plain", "é ü 漢字", "quote \" backslash \\ slash /", "line\nbreak\ttab\x00nul",
    "\u2028\u2029", "\ud83d\ude00", "😀", 0, -1, 7, 10**30, -(10**40), True, False, None,
    0.0, -0.5, 1e300, Level.LOW, Colour.RED, Text("sub"),
]


def _value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 2 or roll < 0.55:
        return rng.choice(_SCALARS)
    if roll < 0.8:
        return {rng.choice(["a", "b", "é", "z", "n\n", "1"]): _value(rng, depth + 1)
                for _ in range(rng.randint(0, 5))}
    items = [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return tuple(items) if rng.random() < 0.3 else items


def test_both_forms_match_json_on_random_values() -> None:
    rng = random.Random(20261130)
    for _ in range(5_000):
        value = _value(rng)
        assert dumps(value) == json.dumps(value, separators=(",", ":")), value
        assert stable_json(value) == json.dumps(value, sort_keys=True, separators=(",", ":"),
                                                allow_nan=False), value


@pytest.mark.parametrize("value", [
    {1: "int key"}, {True: 1}, {None: 2}, {"a": 1, "b": {"c": [1, "x"]}}, ["a", 1], ("a", "b"),
    {f"k{i}": i for i in range(12)}, [], {}, ["only", "text"],
])
def test_dumps_of_the_shapes_it_shortcuts_and_those_it_does_not(value: Any) -> None:
    assert dumps(value) == json.dumps(value, separators=(",", ":"))


def test_stable_json_writes_nan_and_infinity_as_null() -> None:
    assert stable_json(float("nan")) == "null"
    assert stable_json({"b": float("inf"), "a": 1}) == '{"a":1,"b":null}'


def test_loads_reads_what_json_reads_and_refuses_what_it_refuses() -> None:
    from reactive_core._store.backend import loads

    rng = random.Random(7)
    for _ in range(2_000):
        value = _value(rng)
        if isinstance(value, tuple):
            value = list(value)
        for text in (dumps(value), json.dumps(value), json.dumps(value, indent=1)):
            assert loads(text) == json.loads(text), text
    for bad in ("", " ", "{", '{"a":1} x', "[1,]", "nul", '"open'):
        with pytest.raises(json.JSONDecodeError):
            loads(bad)
    assert loads(' {"a": 1} ') == {"a": 1}
