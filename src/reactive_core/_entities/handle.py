"""Entity handles: reading one kind's entities and writing them through the write path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar

from pydantic import BaseModel
from sqlalchemy import Connection, func, select

from .._clock import Clock, as_utc
from .._errors import ReactiveCoreError
from .._store.schema import entity_state, entity_transitions
from .changes import Actor, value_text
from .ids import is_identifier
from .state import state_json, validate_state
from .write import Apply, Write, WritePath

if TYPE_CHECKING:
    from .._host.declarations import EntityKind
    from .._store.database import Database

S = TypeVar("S", bound=BaseModel)
T = TypeVar("T")
P = ParamSpec("P")


def _is_field(name: object) -> bool:
    """Whether `name` can be a logged field name: printable text (no NUL, no lone
    surrogate), which every backend stores alike."""
    return isinstance(name, str) and name.isprintable()


def _state_select(kind: str, ids: list[str]) -> Any:
    return select(entity_state.c.entity_id, entity_state.c.state).where(
        entity_state.c.kind == kind, entity_state.c.entity_id.in_(ids)
    )


class EntityHandle(Generic[S]):
    """Reads and writes the entities of one kind; obtained from `host.entity(kind)`."""

    def __init__(self, kind: EntityKind, *, db: Database, write_path: WritePath,
                 clock: Clock) -> None:
        self._kind = kind
        self._db = db
        self._writes = write_path
        self._clock = clock

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
        return await self._db.read(self.ids_in)

    async def all(self) -> dict[str, S]:
        """Every entity of this kind by id."""
        def read(tx: Connection) -> dict[str, S]:
            return self.get_many_in(tx, self.ids_in(tx))
        return await self._db.read(read)

    def lock_in(self, tx: Connection, entity_id: str) -> None:
        """Take this entity's write lock inside `tx` (held until `tx` ends).

        What `mutate_in` takes first; use it to make a plugin write that spans several
        entities consistent with their mutations (take locks in a stable order).
        """
        self._writes.lock(tx, self._kind.kind, entity_id)

    def get_many_in(self, tx: Connection, ids: Iterable[str]) -> dict[str, S]:
        """Current states of `ids` inside the unit of work `tx`; absent ids are left out.

        An id that breaks the identifier rule (a NUL, a lone surrogate, too long, …) can
        never have been written, so it is absent too, on every backend alike, without
        asking the database (PostgreSQL's driver would refuse it, SQLite's not).
        """
        wanted = [i for i in dict.fromkeys(ids) if is_identifier(i)]
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
        return await self._db.read(self.get_in, entity_id)

    async def get_many(self, ids: Iterable[str]) -> dict[str, S]:
        """Current states of several entities by id; absent ids are left out."""
        return await self._db.read(self.get_many_in, list(ids))

    def in_state_since_in(self, tx: Connection, entity_id: str, field: str) -> datetime | None:
        """`in_state_since` inside `tx`."""
        current = state_json(self.get_in(tx, entity_id))
        if current is None or not _is_field(field):
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

    def in_state_since_many_in(self, tx: Connection, ids: Iterable[str],
                               field: str) -> dict[str, datetime | None]:
        """`in_state_since_in` of several entities in two reads (their states, then one
        grouped read of the transition log); ids without a state are left out."""
        states = {i: state_json(s) for i, s in self.get_many_in(tx, ids).items()}
        if not states or not _is_field(field):
            return dict.fromkeys(states)
        t = entity_transitions
        rows = tx.execute(
            select(t.c.entity_id, t.c.to_value, func.max(t.c.transitioned_at).label("at"))
            .where(t.c.kind == self.kind, t.c.entity_id.in_(list(states)), t.c.field == field)
            .group_by(t.c.entity_id, t.c.to_value)).all()
        latest = {(r.entity_id, r.to_value): as_utc(r.at) for r in rows}
        return {i: latest.get((i, value_text((state or {}).get(field))))
                for i, state in states.items()}

    async def in_state_since(self, entity_id: str, field: str) -> datetime | None:
        """When `field` took its current value (latest matching transition), else None."""
        return await self._db.read(self.in_state_since_in, entity_id, field)

    async def in_state_for(self, entity_id: str, field: str) -> timedelta:
        """How long `field` has held its current value; zero when unknown."""
        since = await self.in_state_since(entity_id, field)
        return max(self._clock() - since, timedelta(0)) if since else timedelta(0)

    async def transition_count(self, entity_id: str, field: str, window: timedelta) -> int:
        """How many times `field` changed within the last `window`."""
        t = entity_transitions
        since = self._clock() - window
        if not (is_identifier(entity_id) and _is_field(field)):
            return 0  # never written (see `get_many_in`)

        def count(tx: Connection) -> int:
            return int(tx.execute(
                select(func.count()).select_from(t).where(
                    t.c.kind == self.kind, t.c.entity_id == entity_id, t.c.field == field,
                    t.c.transitioned_at >= since,
                )
            ).scalar_one())

        return await self._db.read(count)

    # -- writes ---------------------------------------------------------------------

    def write_in(
        self, tx: Connection, entity_id: str, apply: Apply, *, actor: Actor | None = None,
        reason: str | None = None,
    ) -> Write[S]:
        """`mutate_in` that returns what it did: `Write(prev, next, change | None)`."""
        return self._writes.write(tx, self._kind, entity_id, apply, actor=actor, reason=reason,
                                  remove=False, read_one=self.get_in)

    def remove_write_in(
        self, tx: Connection, entity_id: str, apply: Apply | None = None, *,
        actor: Actor | None = None, reason: str | None = None,
    ) -> Write[S]:
        """`remove_in` that returns what it did: `Write(prev, None, change | None)`."""
        return self._writes.write(tx, self._kind, entity_id, apply, actor=actor, reason=reason,
                                  remove=True, read_one=self.get_in)

    async def write(
        self, entity_id: str, apply: Apply, *, actor: Actor | None = None,
        reason: str | None = None,
    ) -> Write[S]:
        """`mutate` that returns what it did: `Write(prev, next, change | None)`."""
        return await self._db.run(self._write_unit, entity_id, apply, actor, reason,
                                  lock=self._writes.lock_of(self._kind.kind, entity_id))

    def _write_unit(self, tx: Connection, entity_id: str, apply: Apply, actor: Actor | None,
                    reason: str | None) -> Write[S]:
        return self.write_in(tx, entity_id, apply, actor=actor, reason=reason)

    async def mutate(
        self, entity_id: str, apply: Apply, *, actor: Actor | None = None,
        reason: str | None = None,
    ) -> S:
        """Apply `apply(tx, prev) -> next` in one transaction; log and deliver the change."""
        written = await self.write(entity_id, apply, actor=actor, reason=reason)
        return written.next  # type: ignore[return-value]

    def mutate_in(
        self, tx: Connection, entity_id: str, apply: Apply, *, actor: Actor | None = None,
        reason: str | None = None,
    ) -> S:
        """`mutate` joined to the unit of work `tx` that the caller already has open."""
        return self.write_in(tx, entity_id, apply, actor=actor, reason=reason).next  # type: ignore[return-value]

    async def remove(
        self, entity_id: str, apply: Apply | None = None, *, actor: Actor | None = None,
        reason: str | None = None,
    ) -> None:
        """Tombstone the entity (after running the plugin's own `apply(tx, prev)`, if any)."""
        await self._db.run(self._remove_unit, entity_id, apply, actor, reason,
                           lock=self._writes.lock_of(self._kind.kind, entity_id))

    def _remove_unit(self, tx: Connection, entity_id: str, apply: Apply | None,
                     actor: Actor | None, reason: str | None) -> None:
        self.remove_write_in(tx, entity_id, apply, actor=actor, reason=reason)

    def remove_in(
        self, tx: Connection, entity_id: str, apply: Apply | None = None, *,
        actor: Actor | None = None, reason: str | None = None,
    ) -> None:
        """`remove` joined to the unit of work `tx`."""
        self.remove_write_in(tx, entity_id, apply, actor=actor, reason=reason)


class UnitOfWorkRunner(Protocol):
    """Anything that runs a unit of work `fn(tx, *args)` in one transaction: a `Host`."""

    def run(self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args,
            **kwargs: P.kwargs) -> Awaitable[T]:
        """Run `fn(tx, *args)` in one transaction."""
        ...


async def with_entity_write(
    handle: EntityHandle[Any] | None, entity_id: str, apply: Apply, *,
    host: UnitOfWorkRunner | None = None, actor: Actor | None = None,
    reason: str | None = None,
) -> Any:
    """Write through `handle` when there is one, else just run the plugin's `apply`.

    Lets plugin code run the same write whether or not the kind is reactive here
    (a script, a test, a host without the plugin that defines the kind). With a
    handle, `apply(tx, prev)` runs inside `mutate` and its result is validated, logged
    and delivered; without one it runs as `apply(tx, None)` in a unit of work of
    `host` (or as `apply(None, None)` when there is no host either).
    """
    if handle is not None:
        return await handle.mutate(entity_id, apply, actor=actor, reason=reason)
    if host is not None:
        return await host.run(apply, None)
    return apply(None, None)


async def with_entity_remove(
    handle: EntityHandle[Any] | None, entity_id: str, apply: Apply | None = None, *,
    host: UnitOfWorkRunner | None = None, actor: Actor | None = None,
    reason: str | None = None,
) -> None:
    """Remove through `handle` when there is one, else just run `apply` (if any)."""
    if handle is not None:
        await handle.remove(entity_id, apply, actor=actor, reason=reason)
    elif apply is not None:
        if host is not None:
            await host.run(apply, None)
        else:
            apply(None, None)
