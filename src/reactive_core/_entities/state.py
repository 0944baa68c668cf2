"""Entity states: validating what plugins hand in, and the JSON form that is stored."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from .._errors import InvalidEntityState

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


def _non_finite(value: Any, path: str) -> str | None:
    """The path of the first NaN or infinity inside `value`, if any."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, Mapping):
        items: Any = value.items()
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, f"{path}.{key}")
        if found is not None:
            return found
    return None


def storable_json(kind: EntityKind, entity_id: str,
                  state: BaseModel) -> tuple[dict[str, Any], str]:
    """The JSON form of a next state (and its text), refused unless reading it back gives
    the same state.

    JSON has no NaN or infinity, no sets, no non-text keys, no bytes: a value that would
    come back different from a later read (a set as a list, keys 1 and "1" merged, NaN
    as null) is refused here, naming the field, instead of being stored changed.
    """
    def refuse(field: str, why: str) -> InvalidEntityState:
        return InvalidEntityState(
            f"next state of {kind.kind}:{entity_id} cannot be stored: field {field}: {why}",
            kind=kind.kind, entity_id=entity_id, fields=(field,))

    try:
        text = state.model_dump_json(by_alias=True)
        data: dict[str, Any] = json.loads(text)
    except (PydanticSerializationError, ValueError, TypeError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise refuse("<state>", f"not representable as JSON ({first[:200]})") from None
    try:
        again = kind.state.model_validate(data)
    except ValidationError as exc:
        again = None
        failure: ValidationError | None = exc
    else:
        failure = None
    if again is not None and again == state:
        return data, text
    for name in type(state).model_fields:
        value = getattr(state, name)
        where = _non_finite(value, name)
        if where is not None:
            raise refuse(where, "NaN and infinity cannot be stored (JSON has neither)")
        if again is not None and getattr(again, name) != value:
            raise refuse(name, f"{_short(value)} would read back as "
                               f"{_short(getattr(again, name))}")
    if failure is not None:
        raise _invalid(kind, entity_id, failure, "next state (as stored)") from failure
    raise refuse("<state>", "it would read back differently")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
