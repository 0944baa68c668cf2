"""Entity states: validating what plugins hand in, and the JSON form that is stored."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from .._errors import InvalidEntityState

if TYPE_CHECKING:
    from .._host.registry import EntityKind


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
    """`value` (a model or a mapping) as an instance of the kind's model, or a clear error."""
    if isinstance(value, kind.state):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump(by_alias=True)
    if not isinstance(value, Mapping):
        raise InvalidEntityState(
            f"{what} of {kind.kind}:{entity_id} must be a {kind.state.__name__} or a mapping, "
            f"received {type(value).__name__}",
            kind=kind.kind, entity_id=entity_id, fields=("<state>",),
        )
    try:
        return kind.state.model_validate(value)
    except ValidationError as exc:
        raise _invalid(kind, entity_id, exc, what) from exc


def state_json(state: BaseModel | None) -> dict[str, Any] | None:
    """The JSON form of a state (aliases applied): what is stored, diffed and delivered."""
    if state is None:
        return None
    # Through pydantic's JSON serializer: NaN and ±inf become null, as JSON has them not.
    result: dict[str, Any] = json.loads(state.model_dump_json(by_alias=True))
    return result
