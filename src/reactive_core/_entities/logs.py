"""Reading and pruning the change log and the per-field transition log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, select

from .._clock import as_utc
from .._store.schema import entity_changes, entity_transitions
from .changes import EntityChange, row_to_change


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """One row of the per-field transition log."""

    id: int
    change_seq: int
    kind: str
    entity_id: str
    field: str
    from_value: str | None
    to_value: str | None
    transitioned_at: datetime


def _never_stored(*values: str | None) -> bool:
    """True when a filter value can match nothing stored: text with a NUL or a lone
    surrogate, which no write accepts and which drivers refuse to send (PostgreSQL) or
    to encode (SQLite)."""
    for value in values:
        if value is None:
            continue
        if not isinstance(value, str) or "\x00" in value:
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
    return False


def read_changes(
    tx: Connection, *, kind: str | None = None, entity_id: str | None = None,
    after_seq: int = 0, before_seq: int | None = None, limit: int | None = None,
    newest: bool = False,
) -> list[EntityChange]:
    """Changes by seq (oldest first), filtered; one page read in SQL.

    `after_seq` / `before_seq` are exclusive bounds. With `limit`, the page is the
    oldest `limit` above `after_seq` — or, with `newest` or `before_seq`, the newest
    `limit` below `before_seq` — so a listing walks a log of any size a page at a
    time, forward from a seq or back from one, without gaps.
    """
    if _never_stored(kind, entity_id):
        return []
    c = entity_changes
    query = select(c).where(c.c.seq > after_seq)
    if before_seq is not None:
        query = query.where(c.c.seq < before_seq)
    if kind is not None:
        query = query.where(c.c.kind == kind)
    if entity_id is not None:
        query = query.where(c.c.entity_id == entity_id)
    backward = limit is not None and (newest or before_seq is not None)
    query = query.order_by(c.c.seq.desc() if backward else c.c.seq)
    if limit is not None:
        query = query.limit(limit)
    rows = [row_to_change(r) for r in tx.execute(query).all()]
    return rows[::-1] if backward else rows


def _transition(row: Any) -> Transition:
    return Transition(
        id=int(row.id), change_seq=int(row.change_seq), kind=row.kind, entity_id=row.entity_id,
        field=row.field, from_value=row.from_value, to_value=row.to_value,
        transitioned_at=as_utc(row.transitioned_at))


def read_transitions(
    tx: Connection, *, kind: str | None = None, entity_id: str | None = None,
    field: str | None = None, limit: int | None = None, before_id: int | None = None,
    after_id: int | None = None,
) -> list[Transition]:
    """Transition rows oldest first, filtered; one page read in SQL.

    With `limit`: the newest `limit` (with ids below `before_id`, when given), or with
    `after_id` alone the oldest `limit` above it (the next page forward).
    """
    if _never_stored(kind, entity_id, field):
        return []
    t = entity_transitions
    query = select(t)
    for column, value in ((t.c.kind, kind), (t.c.entity_id, entity_id), (t.c.field, field)):
        if value is not None:
            query = query.where(column == value)
    if before_id is not None:
        query = query.where(t.c.id < before_id)
    if after_id is not None:
        query = query.where(t.c.id > after_id)
    if limit is not None:
        forward = after_id is not None and before_id is None
        query = query.order_by(t.c.id if forward else t.c.id.desc()).limit(limit)
    else:
        query = query.order_by(t.c.transitioned_at, t.c.id)
    rows = [_transition(r) for r in tx.execute(query).all()]
    return sorted(rows, key=lambda r: (r.transitioned_at, r.id))


def head_seq(tx: Connection) -> int:
    """The highest seq in the change log (0 when empty)."""
    value = tx.execute(select(entity_changes.c.seq).order_by(entity_changes.c.seq.desc())
                       .limit(1)).scalar()
    return int(value or 0)


def prune_logs(tx: Connection, *, older_than: datetime, keep_changes: Any) -> dict[str, int]:
    """Delete changes and transitions older than `older_than`.

    The newest transition of every (kind, entity, field) is always kept, so
    `in_state_since` never goes blank; changes whose seq `keep_changes` (a select of
    seqs) names are kept, e.g. those a delivery still needs.
    """
    t = entity_transitions
    newer = t.alias("newer")
    has_newer = exists().where(
        newer.c.kind == t.c.kind, newer.c.entity_id == t.c.entity_id,
        newer.c.field == t.c.field,
        (newer.c.transitioned_at > t.c.transitioned_at)
        | and_(newer.c.transitioned_at == t.c.transitioned_at, newer.c.id > t.c.id),
    )
    transitions = tx.execute(delete(t).where(t.c.transitioned_at < older_than, has_newer)).rowcount
    c = entity_changes
    changes = tx.execute(
        delete(c).where(c.c.occurred_at < older_than, c.c.seq.not_in(keep_changes))
    ).rowcount
    return {"changes": int(changes or 0), "transitions": int(transitions or 0)}
