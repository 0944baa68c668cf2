"""Entity states: validating what plugins hand in, and the JSON form that is stored."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError, to_json

from .._errors import InvalidEntityState
from .._store.backend import loads

if TYPE_CHECKING:
    from .._host.declarations import EntityKind


def _invalid(kind: EntityKind, entity_id: str, exc: ValidationError,
             what: str) -> InvalidEntityState:
    fields = tuple(".".join(str(p) for p in err["loc"]) or "<state>" for err in exc.errors())
    details = "; ".join(
        f"field {'.'.join(str(p) for p in err['loc']) or '<state>'}: {err['msg']} "
        f"(received {err.get('input')!r})"
        for err in exc.errors()
    )
    return InvalidEntityState(
        f"{what} of {kind.kind}:{entity_id} is not a valid {kind.state.__name__}: {details}",
        kind=kind.kind, entity_id=entity_id, fields=fields,
    )


def validate_state(kind: EntityKind, entity_id: str, value: Any, what: str) -> BaseModel:
    """`value` (the kind's model, or a mapping) as an instance of the kind's model, or a
    clear error. Another model type is refused: re-reading it as this kind's model would
    silently fill the fields it lacks with defaults."""
    if type(value) is kind.state:
        return value
    if not isinstance(value, Mapping) or isinstance(value, BaseModel):
        raise InvalidEntityState(
            f"{what} of {kind.kind}:{entity_id} must be a {kind.state.__name__} or a mapping, "
            f"received {type(value).__name__}",
            kind=kind.kind, entity_id=entity_id, fields=("<state>",),
        )
    try:
        return kind.state.model_validate(value)
    except ValidationError as exc:
        raise _invalid(kind, entity_id, exc, what) from exc
    except RecursionError:
        raise InvalidEntityState(
            f"{what} of {kind.kind}:{entity_id} is nested too deeply to validate",
            kind=kind.kind, entity_id=entity_id, fields=("<state>",)) from None


def state_json(state: BaseModel | None) -> dict[str, Any] | None:
    """The JSON form of a state (aliases applied): what is stored, diffed and delivered."""
    if state is None:
        return None
    result: dict[str, Any] = json.loads(state.model_dump_json(by_alias=True))
    return result


MAX_STATE_DEPTH = 250
"""How deeply a state's values may nest (pydantic's JSON encoder gives up a little
deeper); deeper is refused, naming the path."""

Problem = Callable[[Any], str | None]


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key if key.isprintable() else repr(key)
    try:
        return str(key)
    except ValueError:  # an int too long to print
        return f"<{type(key).__name__}>"


def _find(state: BaseModel, problem: Problem) -> tuple[str, str] | None:
    """`(path, what is wrong)` for the first value inside `state` (fields, then mapping
    keys and values, items of lists, tuples and sets, nested models) that `problem`
    finds wrong, or that holds itself or nests more than `MAX_STATE_DEPTH` deep."""
    ancestors: set[int] = set()

    def walk(value: Any, path: str, depth: int) -> tuple[str, str] | None:
        keys = False
        if isinstance(value, BaseModel):
            items: Any = ((name, getattr(value, name)) for name in type(value).model_fields)
        elif isinstance(value, Mapping):
            items, keys = value.items(), True
        elif isinstance(value, (list, tuple, set, frozenset)):
            items = enumerate(value)
        else:
            why = problem(value)
            return None if why is None else (path, why)
        if id(value) in ancestors:
            return path, "holds itself (a reference cycle)"
        if depth > MAX_STATE_DEPTH:
            return path, f"nests more than {MAX_STATE_DEPTH} levels deep"
        ancestors.add(id(value))
        try:
            for key, item in items:
                where = f"{path}.{_key_text(key)}" if path else _key_text(key)
                if keys:
                    why = problem(key)
                    if why is not None:
                        return where, f"the key {why}"
                found = walk(item, where, depth + 1)
                if found is not None:
                    return found
        finally:
            ancestors.discard(id(value))
        return None

    return walk(state, "", 0)


def _non_finite(value: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return f"NaN and infinity cannot be stored (JSON has neither), received {value}"
    return None


def _not_json(value: Any) -> str | None:
    """What keeps `value` (not a container) from being written as JSON and read back."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (f"{_short(value)} holds a lone surrogate at position {exc.start}, "
                    f"which UTF-8 cannot encode")
        return None
    if isinstance(value, int):
        try:
            str(value)
        except ValueError:
            return (f"{_short(value)} has more digits than JSON numbers are read back with "
                    f"(at most {sys.get_int_max_str_digits():,})")
        return None
    try:
        json.loads(to_json(value))
    except (PydanticSerializationError, ValueError, TypeError, RecursionError) as exc:
        return f"{_short(value)} is not representable as JSON ({_first_line(exc)})"
    return None


def _nul(value: Any) -> str | None:
    if isinstance(value, str) and "\x00" in value:
        return (f"{_short(value)} holds a NUL character at position {value.index(chr(0))}, "
                f"which PostgreSQL cannot store")
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


_JSON_VALUES = ("expected JSON values: text without NUL characters, finite numbers, "
                "booleans, None, lists and mappings with text keys")


def storable_json(kind: EntityKind, entity_id: str,
                  state: BaseModel) -> tuple[dict[str, Any], str]:
    """The JSON form of a next state (and its text), refused unless reading it back gives
    the same state.

    JSON has no NaN or infinity, no sets, no non-text keys, no bytes: a value that would
    come back different from a later read (a set as a list, keys 1 and "1" merged, NaN
    as null) is refused here, naming the field, instead of being stored changed. So is
    text holding a NUL character, which PostgreSQL cannot store (and SQLite would), so
    that what one database accepts the other accepts too.
    """
    def refuse(field: str, why: str) -> InvalidEntityState:
        shown = field if len(field) <= 120 else f"{field[:60]}...{field[-57:]}"
        return InvalidEntityState(
            f"next state of {kind.kind}:{entity_id} cannot be stored: field {shown}: {why}",
            kind=kind.kind, entity_id=entity_id, fields=(field,))

    try:
        text = state.model_dump_json(by_alias=True)
        data: dict[str, Any] = loads(text)
    except (PydanticSerializationError, ValueError, TypeError, RecursionError) as exc:
        found = _find(state, _not_json)
        if found is None:
            raise refuse("<state>", f"not representable as JSON ({_first_line(exc)}): "
                                    f"{_JSON_VALUES}") from None
        raise refuse(found[0], f"{found[1]}: {_JSON_VALUES}") from None
    if "\\u0000" in text:  # the JSON escape of NUL (rarely a false alarm: checked below)
        found = _find(state, _nul)
        if found is not None:
            raise refuse(found[0], f"{found[1]}: expected text without NUL characters")
    try:
        again = kind.state.model_validate(data)
    except ValidationError as exc:
        again = None
        failure: ValidationError | None = exc
    else:
        failure = None
    if again is not None and again == state:
        return data, text
    found = _find(state, _non_finite)
    if found is not None:
        raise refuse(found[0], f"{found[1]}: expected a finite number or None")
    for name in type(state).model_fields:
        value = getattr(state, name)
        if again is not None and getattr(again, name) != value:
            raise refuse(name, f"{_short(value)} would read back as "
                               f"{_short(getattr(again, name))}: expected a value JSON keeps "
                               f"as it is (no sets, bytes or non-text keys)")
    if failure is not None:
        raise _invalid(kind, entity_id, failure, "next state (as stored)") from failure
    raise refuse("<state>", "it would read back differently")


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        digits = int(value.bit_length() * 0.30103) + 1 if isinstance(value, int) else 0
        return f"an int of about {digits:,} digits" if digits else type(value).__name__
    return text if len(text) <= 120 else text[:117] + "..."
