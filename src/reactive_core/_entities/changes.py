"""Change values: who acted, what changed, and the stable diff between two states."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from .._clock import as_utc
from .._errors import InvalidIdentifier
from .._store.backend import loads, scalar_json


@dataclass(frozen=True, slots=True)
class Actor:
    """Who caused a change: a `type` such as "user", "system" or "automation", and an id."""

    type: str
    id: str

    def __post_init__(self) -> None:
        for name in ("type", "id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InvalidIdentifier(
                    f"Actor {name} must be non-empty text, received {value!r}: e.g. "
                    f'Actor("user", "alice")')


SYSTEM_ACTOR = Actor("system", "reactive-core")


@dataclass(frozen=True, slots=True, kw_only=True)
class EntityChange:
    """One logged change of one entity; `change_id` is the idempotency key for handlers.

    `prev` and `next` are the states in their JSON form (aliases applied), `None` when
    the entity did not exist before (create) or does not exist after (tombstone).
    """

    change_id: str
    seq: int
    kind: str
    id: str
    prev: dict[str, Any] | None
    next: dict[str, Any] | None
    delta: dict[str, Any]
    changed_fields: tuple[str, ...]
    actor: Actor = SYSTEM_ACTOR
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    reason: str | None = None

    @property
    def is_create(self) -> bool:
        """True when the entity did not exist before this change."""
        return self.prev is None and self.next is not None

    @property
    def is_tombstone(self) -> bool:
        """True when this change removed the entity."""
        return self.next is None


def _normalise(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return value


_STABLE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


def stable_json(value: Any) -> str:
    """The comparison form of a value: sorted keys, compact, NaN and ±inf as null."""
    text = scalar_json(value)  # the common scalars need no sorting and no encoder
    if text is not None:
        return text
    try:
        return _STABLE.encode(value)
    except ValueError:
        return json.dumps(_normalise(value), sort_keys=True, separators=(",", ":"))


def value_text(value: Any) -> str | None:
    """The transition-log text form: strings verbatim, None as NULL, anything else as JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    text = stable_json(value)
    return None if text == "null" else text


def diff_states(
    prev: Mapping[str, Any] | None, next_: Mapping[str, Any] | None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Field-by-field diff of two JSON-form states: `(delta, changed_fields)`.

    A missing state counts as `{}`; a field absent on one side and null on the other is
    not a change; `delta[field]` is the next value (None when the field was dropped).
    """
    before = prev or {}
    after = next_ or {}
    changed: list[str] = []
    for name in sorted(before.keys() | after.keys()):
        old = before.get(name)
        new = after.get(name)
        if old is new or (old is not None and new is not None and old == new
                          and type(old) is type(new) and not isinstance(old, float)):
            continue
        if stable_json(old) != stable_json(new):
            changed.append(name)
    delta = {name: after.get(name) for name in changed}
    return delta, tuple(changed)


def _json(value: Any) -> Any:
    return loads(value) if isinstance(value, str) else value


def stored_time(value: Any) -> datetime:
    """A timestamp as a driver returns it untyped (SQLite: text) as aware UTC."""
    if isinstance(value, str):
        if len(value) == 26 and value[19] == "." and value[20:].isdigit():
            # The naive UTC text every SQLite timestamp is stored as: parsed with its
            # zone in one step (a `replace(tzinfo=...)` afterwards costs five times more).
            return datetime.fromisoformat(value + "+00:00")
        value = datetime.fromisoformat(value)
    return as_utc(value)


CHANGE_FIELDS = ("change_id", "seq", "kind", "entity_id", "prev", "next", "delta",
                 "changed_fields", "actor_type", "actor_id", "reason", "occurred_at")
"""The columns of `entity_changes` that make an `EntityChange`, in `change_from`'s order."""


@lru_cache(maxsize=1024)
def _stored_actor(type_: str, id_: str) -> Actor:
    """The actor of a logged change (checked when it was written; a handful recur)."""
    return Actor(type_, id_)


def change_from(change_id: str, seq: Any, kind: str, entity_id: str, prev: Any, next_: Any,
                delta: Any, changed_fields: Any, actor_type: str, actor_id: str,
                reason: str | None, occurred_at: Any) -> EntityChange:
    """An `EntityChange` from the values of its row (`CHANGE_FIELDS`, typed or raw)."""
    return EntityChange(
        change_id=change_id, seq=int(seq), kind=kind, id=entity_id, prev=_json(prev),
        next=_json(next_), delta=_json(delta) or {},
        changed_fields=tuple(_json(changed_fields) or ()),
        actor=_stored_actor(actor_type, actor_id), occurred_at=stored_time(occurred_at),
        reason=reason,
    )


def row_to_change(row: Any) -> EntityChange:
    """An `entity_changes` row as an `EntityChange` (typed, or raw as the driver gives it)."""
    return change_from(row.change_id, row.seq, row.kind, row.entity_id, row.prev, row.next,
                       row.delta, row.changed_fields, row.actor_type, row.actor_id,
                       row.reason, row.occurred_at)
