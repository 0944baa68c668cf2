"""numeric_state_matches: strict bounds over finite numbers, and nothing else."""

from __future__ import annotations

import math

import pytest
from jinja2 import ChainableUndefined

from reactive_core.automation import numeric_state_matches
from reactive_core.automation.numeric import as_number


@pytest.mark.parametrize(("value", "expected"), [(600, True), (500, False), (400, False)])
def test_above_is_strict(value: int, expected: bool) -> None:
    assert numeric_state_matches(value, above=500) is expected


@pytest.mark.parametrize(("value", "expected"), [(50, True), (100, False), (150, False)])
def test_below_is_strict(value: int, expected: bool) -> None:
    assert numeric_state_matches(value, below=100) is expected


@pytest.mark.parametrize(("value", "expected"),
                         [(75, True), (25, False), (125, False), (50, False), (100, False)])
def test_both_bounds_make_an_open_band(value: int, expected: bool) -> None:
    assert numeric_state_matches(value, above=50, below=100) is expected


def test_numeric_text_is_a_number() -> None:
    assert numeric_state_matches("500", above=499)
    assert numeric_state_matches(" 19.5 ", below=20)
    assert not numeric_state_matches(" 19.5 ", below=19)


@pytest.mark.parametrize("value", [
    None, True, False, "abc", "", "   ", math.nan, math.inf, -math.inf, "nan", "inf",
    "-Infinity", ChainableUndefined(), {"value": 1}, [1], 10**400,
])
def test_anything_but_a_finite_number_matches_no_band(value: object) -> None:
    assert as_number(value) is None
    assert not numeric_state_matches(value, above=-1e300, below=1e300)
    assert not numeric_state_matches(value)


def test_without_bounds_any_number_matches() -> None:
    assert numeric_state_matches(0)
    assert numeric_state_matches(-3.5)
    assert numeric_state_matches("42")


def test_as_number_gives_floats() -> None:
    assert as_number(3) == 3.0 and isinstance(as_number(3), float)
    assert as_number(" -2.5 ") == -2.5
