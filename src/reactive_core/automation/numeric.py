"""Numeric state: whether a value is a number strictly inside a band.

Entity fields arrive as whatever was stored (numbers, numeric text, None, a template's
`Undefined`); only finite numbers — never booleans — are compared, anything else matches
no band at all.
"""

from __future__ import annotations

import math


def as_number(value: object) -> float | None:
    """`value` as a finite float: an int, a float or text holding one; else None.

    Booleans are not numbers here, nor NaN or infinities (written as numbers or as text).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        try:
            number = float(value)
        except OverflowError:
            return None
    elif isinstance(value, float):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def numeric_state_matches(value: object, *, above: float | None = None,
                          below: float | None = None) -> bool:
    """True when `value` is a number strictly greater than `above` and strictly less than
    `below` (each bound optional; with both, an open band; with neither, any number)."""
    number = as_number(value)
    if number is None:
        return False
    if above is not None and not number > above:
        return False
    return below is None or number < below
