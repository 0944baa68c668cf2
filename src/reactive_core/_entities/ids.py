"""One rule for identifiers and one for names, the same on SQLite and PostgreSQL.

An *identifier* (an entity id, a system id, a check id, a timer key, an actor id) is
printable text of 1 to 255 characters without surrounding whitespace: no control or
format characters (newline, NUL, zero-width space, a lone surrogate), which print
misleadingly or not at all and which PostgreSQL refuses where SQLite stores them. A
*name* (an entity kind, a work-queue group, a timer topic, an actor type) follows the
same rule with at most 100 characters. Both are checked before anything is written, so
what one database accepts the other accepts too.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator

from .._errors import InvalidIdentifier

MAX_ID_LENGTH = 255
"""The longest identifier, in characters."""
MAX_NAME_LENGTH = 100
"""The longest name (kind, group, topic, actor type), in characters."""


def id_problem(value: object, max_length: int = MAX_ID_LENGTH) -> str | None:
    """What is wrong with `value` as an identifier (None when nothing is)."""
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not text"
    if not value:
        return "is empty"
    if len(value) > max_length:
        return f"has {len(value)} characters"
    if value != value.strip():
        return "starts or ends with whitespace"
    if value.isprintable():  # the common case, checked in C
        return None
    for position, char in enumerate(value):
        if char != " " and not char.isprintable():
            name = unicodedata.name(char, f"U+{ord(char):04X}")
            return f"holds the non-printable character {name} at position {position}"
    return None


def is_identifier(value: object, max_length: int = MAX_ID_LENGTH) -> bool:
    """True when `id_problem(value, max_length)` finds nothing (checked in C: fast enough
    for every id a read is asked for)."""
    return (isinstance(value, str) and 0 < len(value) <= max_length and value.isprintable()
            and value == value.strip())


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_id(value: object, what: str = "id", *, max_length: int = MAX_ID_LENGTH) -> str:
    """`value` when it is a valid identifier, else `InvalidIdentifier` saying why."""
    problem = id_problem(value, max_length)
    if problem is not None:
        raise InvalidIdentifier(
            f"{what} {_shown(value)} {problem}: expected printable text of 1 to "
            f"{max_length} characters without surrounding whitespace or control characters")
    return value  # type: ignore[return-value]


def check_name(value: object, what: str = "name") -> str:
    """`value` when it is a valid name (kind, group, topic, actor type)."""
    return check_id(value, what, max_length=MAX_NAME_LENGTH)


def _pydantic_id(value: str) -> str:
    problem = id_problem(value)
    if problem is not None:
        raise ValueError(f"{problem}: expected printable text of 1 to {MAX_ID_LENGTH} "
                         f"characters without surrounding whitespace or control characters")
    return value


Identifier = Annotated[str, AfterValidator(_pydantic_id)]
"""A pydantic field type following the identifier rule (for config items and models)."""
