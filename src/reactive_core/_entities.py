"""Entity handles and the one transactional write path (`mutate`)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import (
    Connection,
    func,
    select,
)

from ._changes import SYSTEM_ACTOR, Actor, EntityChange, diff_states, value_text
from ._db import Database, after_commit, entity_lock_key
from ._errors import InvalidEntityState, ReactiveCoreError
from ._hotpath import WriteStatements
from ._registry import EntityKind, Registry
from ._schema import (
    entity_state,
    entity_transitions,
)

S = TypeVar("S", bound=BaseModel)
Apply = Callable[[Any, Any], Any]
"""A write: `apply(tx, prev) -> next` (tx is a Connection; prev the state or None)."""

def _state_select(kind: str, ids: list[str]) -> Any:
    return select(entity_state.c.entity_id, entity_state.c.state).where(
        entity_state.c.kind == kind, entity_state.c.entity_id.in_(ids)
    )


@dataclass(slots=True)
class Runtime:
    """What handles need from their host: the database, the registry, a wake-up."""

    db: Database
    registry: Registry
    wake: Callable[[], None]
    sql: WriteStatements = field(init=False)

    def __post_init__(self) -> None:
        self.sql = WriteStatements(self.db.dialect)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """A stored timestamp as aware UTC (SQLite returns naive datetimes)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _invalid(kind: EntityKind, entity_id: str, exc: ValidationError, what: str) -> InvalidEntityState:
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


class EntityHandle(Generic[S]):
    """Reads and writes the entities of one kind; obtained from `host.entity(kind)`."""

    def __init__(self, kind: EntityKind, runtime: Runtime) -> None:
        self._kind = kind
        self._rt = runtime

    @property
    def kind(self) -> str:
        """The kind's name."""
        return self._kind.kind

    @property
    def model(self) -> type[BaseModel]:
        """The kind's pydantic state model."""
        return self._kind.state

    def __repr__(self) -> str:
        return f"EntityHandle({self._kind.kind!r})"

    # -- reads ----------------------------------------------------------------------

    def ids_in(self, tx: Connection) -> list[str]:
        """Every id of this kind that currently exists, sorted, inside `tx`.

        Store-backed kinds list their stored rows; computed kinds need `ids=` in
        `define_entity` (a function `(tx) -> ids`), else `ReactiveCoreError`.
        """
        kind = self._kind
        if kind.read is None:
            return list(tx.execute(
                select(entity_state.c.entity_id).where(entity_state.c.kind == kind.kind)
                .order_by(entity_state.c.entity_id)
            ).scalars())
        if kind.ids is None:
            raise ReactiveCoreError(
                f"kind {kind.kind!r} is computed and was defined without ids=: expected "
                f"define_entity({kind.kind!r}, ..., ids=fn) to list its entities"
            )
        return sorted(kind.ids(tx))

    async def ids(self) -> list[str]:
        """Every id of this kind that currently exists, sorted."""
        return await self._rt.db.read(self.ids_in)

    async def all(self) -> dict[str, S]:
        """Every entity of this kind by id."""
        def read(tx: Connection) -> dict[str, S]:
            return self.get_many_in(tx, self.ids_in(tx))
        return await self._rt.db.read(read)

    def lock_in(self, tx: Connection, entity_id: str) -> None:
        """Take this entity's write lock inside `tx` (held until `tx` ends).

        What `mutate_in` takes first; use it to make a plugin write that spans several
        entities consistent with their mutations (take locks in a stable order).
        """
        self._rt.db.advisory_lock(tx, entity_lock_key(self._kind.kind, entity_id))

    def get_many_in(self, tx: Connection, ids: Iterable[str]) -> dict[str, S]:
        """Current states of `ids` inside the unit of work `tx`; absent ids are left out."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        kind = self._kind
        if kind.read is not None:
            raw = kind.read(tx, wanted)
            items: Iterable[tuple[str, Any]] = ((i, raw[i]) for i in wanted if i in raw)
        else:
            rows = tx.execute(_state_select(kind.kind, wanted)).all()
            items = ((row.entity_id, row.state) for row in rows)
        return {
            entity_id: validate_state(kind, entity_id, value, "stored state")  # type: ignore[misc]
            for entity_id, value in items
        }

    def get_in(self, tx: Connection, entity_id: str) -> S | None:
        """Current state of one entity inside `tx`, or None when absent."""
        return self.get_many_in(tx, [entity_id]).get(entity_id)

    async def get(self, entity_id: str) -> S | None:
        """Current state of one entity, or None when absent."""
        return await self._rt.db.read(self.get_in, entity_id)

    async def get_many(self, ids: Iterable[str]) -> dict[str, S]:
        """Current states of several entities by id; absent ids are left out."""
        return await self._rt.db.read(self.get_many_in, list(ids))

    async def in_state_since(self, entity_id: str, field: str) -> datetime | None:
        """When `field` took its current value (latest matching transition), else None."""
        return await self._rt.db.read(self._in_state_since, entity_id, field)

    def _in_state_since(self, tx: Connection, entity_id: str, field: str) -> datetime | None:
        current = state_json(self.get_in(tx, entity_id))
        if current is None:
            return None
        wanted = value_text(current.get(field))
        t = entity_transitions
        value_match = t.c.to_value.is_(None) if wanted is None else t.c.to_value == wanted
        row = tx.execute(
            select(t.c.transitioned_at)
            .where(t.c.kind == self.kind, t.c.entity_id == entity_id, t.c.field == field,
                   value_match)
            .order_by(t.c.transitioned_at.desc(), t.c.id.desc())
            .limit(1)
        ).first()
        return as_utc(row.transitioned_at) if row else None

    async def in_state_for(self, entity_id: str, field: str) -> timedelta:
        """How long `field` has held its current value; zero when unknown."""
        since = await self.in_state_since(entity_id, field)
        return max(utcnow() - since, timedelta(0)) if since else timedelta(0)

    async def transition_count(self, entity_id: str, field: str, window: timedelta) -> int:
        """How many times `field` changed within the last `window`."""
        t = entity_transitions
        since = utcnow() - window

        def count(tx: Connection) -> int:
            return int(tx.execute(
                select(func.count()).select_from(t).where(
                    t.c.kind == self.kind, t.c.entity_id == entity_id, t.c.field == field,
                    t.c.transitioned_at >= since,
                )
            ).scalar_one())

        return await self._rt.db.read(count)

    # -- writes ---------------------------------------------------------------------

    async def mutate(
        self, entity_id: str, apply: Apply, *, actor: Actor | None = None,
        reason: str | None = None,
    ) -> S:
        """Apply `apply(tx, prev) -> next` in one transaction; log and deliver the change."""
        return await self._rt.db.run(self._write, entity_id, apply, actor, reason, False)  # type: ignore[arg-type]

    def mutate_in(
        self, tx: Connection, entity_id: str, apply: Apply, *, actor: Actor | None = None,
        reason: str | None = None,
    ) -> S:
        """`mutate` joined to the unit of work `tx` that the caller already has open."""
        return self._write(tx, entity_id, apply, actor, reason, False)  # type: ignore[return-value]

    async def remove(
        self, entity_id: str, apply: Apply | None = None, *, actor: Actor | None = None,
        reason: str | None = None,
    ) -> None:
        """Tombstone the entity (after running the plugin's own `apply(tx, prev)`, if any)."""
        await self._rt.db.run(self._write, entity_id, apply, actor, reason, True)

    def remove_in(
        self, tx: Connection, entity_id: str, apply: Apply | None = None, *,
        actor: Actor | None = None, reason: str | None = None,
    ) -> None:
        """`remove` joined to the unit of work `tx`."""
        self._write(tx, entity_id, apply, actor, reason, True)

    def _write(
        self, tx: Connection, entity_id: str, apply: Apply | None, actor: Actor | None,
        reason: str | None, remove: bool,
    ) -> BaseModel | None:
        kind = self._kind
        if not isinstance(entity_id, str) or not entity_id:
            raise InvalidEntityState(
                f"entity id for kind {kind.kind!r} must be a non-empty string, "
                f"received {entity_id!r}", kind=kind.kind, entity_id=str(entity_id),
                fields=("<id>",),
            )
        sql = self._rt.sql
        cur = sql.cursor(tx)
        sql.lock(cur, entity_lock_key(kind.kind, entity_id))
        stored: dict[str, Any] | None = None
        if kind.read is None:
            stored = sql.load_state(cur, kind.kind, entity_id)
            prev = (None if stored is None
                    else validate_state(kind, entity_id, stored, "stored state"))
        else:
            prev = self.get_in(tx, entity_id)
        if remove:
            if apply is not None:
                apply(tx, prev)
            nxt: BaseModel | None = None
            if kind.read is not None:
                # A computed kind's removal is the plugin's write; what it leaves is truth.
                left = self.get_in(tx, entity_id)
                if left is not None:
                    raise InvalidEntityState(
                        f"remove of {kind.kind}:{entity_id}: the plugin's apply left the "
                        f"entity readable; expected its rows to be gone",
                        kind=kind.kind, entity_id=entity_id, fields=("<state>",),
                    )
        else:
            raw = apply(tx, prev) if apply is not None else prev
            if raw is None:
                raise InvalidEntityState(
                    f"apply for {kind.kind}:{entity_id} returned None: expected the next "
                    f"state (use remove() to delete)",
                    kind=kind.kind, entity_id=entity_id, fields=("<state>",),
                )
            nxt = validate_state(kind, entity_id, raw, "next state")
        # What was stored is already the JSON form of prev (it was written from one).
        prev_json = stored if kind.read is None else state_json(prev)
        next_json = state_json(nxt)
        if prev_json is None and next_json is None:
            return None
        if remove:
            changed: tuple[str, ...] = tuple(sorted(prev_json or {}))
            delta: dict[str, Any] = {}
        else:
            delta, changed = diff_states(prev_json, next_json)
            if not changed and (prev_json is None) == (next_json is None):
                return nxt
        now = sql.stamp(utcnow())
        if kind.read is None:
            sql.save_state(cur, kind.kind, entity_id, next_json, existed=prev_json is not None,
                           now=now)
        actor = actor or SYSTEM_ACTOR
        seq = sql.insert_change(
            cur, change_id=str(uuid.uuid4()), kind=kind.kind, entity_id=entity_id,
            prev=prev_json, next_=next_json, delta=delta, changed_fields=changed,
            actor_type=actor.type, actor_id=actor.id, reason=reason, now=now,
        )
        if changed:
            before = prev_json or {}
            after = next_json or {}
            sql.insert_transitions(cur, [
                (seq, kind.kind, entity_id, name, value_text(before.get(name)),
                 value_text(after.get(name)))
                for name in changed
            ], now)
        # One delivery per work-queue group of the kind: the groups subscribed here,
        # and those only other instances run (registered in work_queue_routes).
        sql.insert_deliveries(cur, seq=seq, kind=kind.kind, entity_id=entity_id,
                              local_groups=self._rt.registry.work_queue_groups(kind.kind),
                              now=now)
        sql.notify(cur)
        after_commit(tx, self._rt.wake)
        return nxt


def row_to_change(row: Any) -> EntityChange:
    """An `entity_changes` row as an `EntityChange`."""
    return EntityChange(
        change_id=row.change_id, seq=int(row.seq), kind=row.kind, id=row.entity_id,
        prev=row.prev, next=row.next, delta=row.delta or {},
        changed_fields=tuple(row.changed_fields or ()),
        actor=Actor(row.actor_type, row.actor_id), occurred_at=as_utc(row.occurred_at),  # type: ignore[arg-type]
        reason=row.reason,
    )


async def with_entity_write(
    handle: EntityHandle[Any] | None, entity_id: str, apply: Apply, *,
    db: Database | None = None, actor: Actor | None = None, reason: str | None = None,
) -> Any:
    """Write through `handle` when there is one, else just run the plugin's `apply`.

    Lets plugin code run the same write whether or not the kind is reactive here
    (a script, a test, a host without the plugin that defines the kind). With a
    handle, `apply(tx, prev)` runs inside `mutate` and its result is validated, logged
    and delivered; without one it runs as `apply(tx, None)` in a unit of work of `db`
    (or as `apply(None, None)` when there is no `db` either).
    """
    if handle is not None:
        return await handle.mutate(entity_id, apply, actor=actor, reason=reason)
    if db is not None:
        return await db.run(apply, None)
    return apply(None, None)


async def with_entity_remove(
    handle: EntityHandle[Any] | None, entity_id: str, apply: Apply | None = None, *,
    db: Database | None = None, actor: Actor | None = None, reason: str | None = None,
) -> None:
    """Remove through `handle` when there is one, else just run `apply` (if any)."""
    if handle is not None:
        await handle.remove(entity_id, apply, actor=actor, reason=reason)
    elif apply is not None:
        if db is not None:
            await db.run(apply, None)
        else:
            apply(None, None)
