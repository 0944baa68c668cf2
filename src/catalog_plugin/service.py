"""Catalog operations: systems (written through `mutate`) and the dependency edges.

Every operation comes in two forms: `async def op(...)`, one unit of work of its own,
and `def op_in(tx, ...)`, which joins a unit of work the caller already has open
(`await host.run(fn)`, config sections), so several operations commit or roll back
together.

Locking (matters on PostgreSQL; SQLite's single writer serializes anyway): adding an
edge takes both systems' entity locks, in id order, then one catalog-wide edge lock.
So a concurrent tombstone either commits first (the edge is refused: unknown system)
or waits for the edge to commit (and its cleanup then sees and deletes it), and two
concurrent edges can never close a cycle between them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Row,
    bindparam,
    delete,
    insert,
    or_,
    select,
    update,
)

from reactive_core import (
    Actor,
    EntityChange,
    EntityHandle,
    InvalidIdentifier,
    ReactiveCoreError,
    check_id,
)

from .models import CATALOG_KIND, CatalogSystem, Dependency, Impact
from .schema import catalog_dependencies as _deps

if TYPE_CHECKING:
    from reactive_core import Host

EDGE_CLEANUP_GROUP = "catalog-edge-cleanup"
"""The work-queue group that deletes a tombstoned system's edges."""


class CatalogError(ReactiveCoreError):
    """Base of the catalog's errors."""


class UnknownSystem(CatalogError, LookupError):
    """A dependency named a system id that the catalog does not hold."""

    def __init__(self, message: str, *, system_id: str, role: str) -> None:
        super().__init__(message)
        self.system_id = system_id
        self.role = role  # "source" or "target"


class InvalidDependency(CatalogError, ValueError):
    """A dependency edge was refused: a self-edge, a cycle, a bad id or impact."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field  # "source", "target" or "impact": what to fix


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemWrite:
    """What an upsert did: the state before (None when created) and after."""

    prev: CatalogSystem | None
    next: CatalogSystem
    changed_fields: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DependencyWrite:
    """What an edge upsert did: `previous_impact` is None when the edge is new."""

    dependency: Dependency
    previous_impact: Impact | None


_EDGE_LOCK = ("catalog_plugin", "catalog_dependencies")
"""The cluster-wide lock every edge write takes (no two edges close a cycle together)."""

_SOURCE, _TARGET = _deps.c.source_system_id, _deps.c.target_system_id
_EDGE = (_SOURCE == bindparam("s"), _TARGET == bindparam("t"))
_SELECT_IMPACT = select(_deps.c.impact).where(*_EDGE)
_INSERT_EDGE = insert(_deps)
_UPDATE_IMPACT = update(_deps).where(*_EDGE).values(impact=bindparam("new_impact"))
_DELETE_EDGE = delete(_deps).where(*_EDGE)
_UPSTREAM = select(_deps).where(_SOURCE == bindparam("id")).order_by(_TARGET)
_DOWNSTREAM = select(_deps).where(_TARGET == bindparam("id")).order_by(_SOURCE)
_ALL_EDGES = select(_deps).order_by(_SOURCE, _TARGET)
_UPSTREAM_STEP = select(_SOURCE, _TARGET).where(
    _SOURCE.in_(bindparam("ids", expanding=True))
).order_by(_SOURCE, _TARGET)
_DELETE_EDGES_OF = delete(_deps).where(or_(_SOURCE == bindparam("id"), _TARGET == bindparam("id")))
_DELETE_EDGES_OF_BEFORE = _DELETE_EDGES_OF.where(_deps.c.created_at <= bindparam("before"))


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _dependency(row: Row[Any]) -> Dependency:
    return Dependency(source_system_id=row.source_system_id,
                      target_system_id=row.target_system_id, impact=Impact(row.impact))


def _impact(value: Impact | str) -> Impact:
    try:
        return Impact(value)
    except ValueError:
        expected = ", ".join(i.value for i in Impact)
        raise InvalidDependency(
            f"impact must be one of {expected}, received {value!r}", field="impact"
        ) from None


def _check_id(value: object, role: str) -> str:
    try:
        return check_id(value, f"{role} system id")
    except InvalidIdentifier as exc:
        raise InvalidDependency(str(exc), field=role) from None


class Catalog:
    """Systems and their dependencies, on a running (or loaded) `Host`."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self._systems: EntityHandle[CatalogSystem] = host.entity(CATALOG_KIND)

    # -- systems --------------------------------------------------------------------

    async def upsert_system(
        self, system_id: str, *, name: str, description: str | None = None,
        metadata: Mapping[str, Any] | None = None, tags: Iterable[str] = (),
        actor: Actor | None = None, reason: str | None = None,
    ) -> CatalogSystem:
        """Create or replace system `system_id`; an identical state changes nothing."""
        # Read once, out here: the unit of work may run more than once (see `Host.run`).
        tags = tags if isinstance(tags, str) else tuple(tags)
        return await self._host.run(lambda tx: self.upsert_system_in(
            tx, system_id, name=name, description=description, metadata=metadata, tags=tags,
            actor=actor, reason=reason,
        ))

    def upsert_system_in(
        self, tx: Connection, system_id: str, *, name: str, description: str | None = None,
        metadata: Mapping[str, Any] | None = None, tags: Iterable[str] = (),
        actor: Actor | None = None, reason: str | None = None,
    ) -> CatalogSystem:
        """`upsert_system` inside the unit of work `tx`."""
        return self.write_system_in(
            tx, system_id, name=name, description=description, metadata=metadata, tags=tags,
            actor=actor, reason=reason,
        ).next

    def write_system_in(
        self, tx: Connection, system_id: str, *, name: str, description: str | None = None,
        metadata: Mapping[str, Any] | None = None, tags: Iterable[str] = (),
        actor: Actor | None = None, reason: str | None = None,
    ) -> SystemWrite:
        """`upsert_system_in` that also tells what changed (for reports such as `apply`).

        An invalid state (blank name, tags not a list of strings, …) raises the core's
        `InvalidEntityState` naming the field, and nothing is written.
        """
        state = {
            "name": name,
            "description": description,
            "metadata": {} if metadata is None else metadata,
            # A bare string is a mistake, not a list of one-letter tags: let it fail.
            "tags": tags if isinstance(tags, str) else list(tags),
        }
        written = self._systems.write_in(tx, system_id, lambda _tx, _prev: state, actor=actor,
                                         reason=reason)
        assert written.next is not None
        changed = written.change.changed_fields if written.change is not None else ()
        return SystemWrite(prev=written.prev, next=written.next, changed_fields=changed)

    async def delete_system(
        self, system_id: str, *, actor: Actor | None = None, reason: str | None = None,
    ) -> None:
        """Tombstone system `system_id` and delete its edges; absent ⇒ nothing happens."""
        await self._host.run(lambda tx: self.delete_system_in(
            tx, system_id, actor=actor, reason=reason))

    def delete_system_in(
        self, tx: Connection, system_id: str, *, actor: Actor | None = None,
        reason: str | None = None,
    ) -> None:
        """`delete_system` inside the unit of work `tx`.

        The edges go in the same transaction, so no reader sees an edge to a deleted
        system; the `catalog-edge-cleanup` subscriber does the same for tombstones
        written through the entity handle directly.
        """
        def drop_edges(inner: Connection, _prev: CatalogSystem | None) -> None:
            self.delete_edges_in(inner, system_id)

        self._systems.remove_in(tx, system_id, drop_edges, actor=actor, reason=reason)

    def delete_edges_in(self, tx: Connection, system_id: str,
                        before: datetime | None = None) -> int:
        """Delete every edge of `system_id` (as source or target); how many went.

        With `before`, only edges created at or before that time go: a late cleanup of an
        old tombstone must not delete edges declared after the system was re-created.
        """
        self._host.lock_in(tx, *_EDGE_LOCK)
        if before is None:
            result = tx.execute(_DELETE_EDGES_OF, {"id": system_id})
        else:
            result = tx.execute(_DELETE_EDGES_OF_BEFORE, {"id": system_id, "before": before})
        return int(result.rowcount or 0)

    async def cleanup_edges(self, change: EntityChange) -> None:
        """Work-queue handler (`catalog-edge-cleanup`): a tombstoned system loses its edges.

        Idempotent: a repeated delivery deletes nothing more, and edges created after
        the tombstone (the system was re-created meanwhile) are kept.
        """
        if change.is_tombstone:
            await self._host.run(self.delete_edges_in, change.id, change.occurred_at)

    async def get_system(self, system_id: str) -> CatalogSystem | None:
        """System `system_id`, or None when the catalog does not hold it."""
        return await self._host.read(self.get_system_in, system_id)

    def get_system_in(self, tx: Connection, system_id: str) -> CatalogSystem | None:
        """`get_system` inside `tx`."""
        return self._systems.get_in(tx, system_id)

    async def systems(self) -> dict[str, CatalogSystem]:
        """Every system, by id (sorted)."""
        return await self._host.read(self.systems_in)

    def systems_in(self, tx: Connection) -> dict[str, CatalogSystem]:
        """`systems` inside `tx`."""
        ids = self._systems.ids_in(tx)
        states = self._systems.get_many_in(tx, ids)
        return {system_id: states[system_id] for system_id in ids if system_id in states}

    # -- dependencies ---------------------------------------------------------------

    async def add_dependency(
        self, source: str, target: str, impact: Impact | str = Impact.DEGRADED,
    ) -> Dependency:
        """Declare that `source` depends on `target` (its upstream); idempotent.

        Both systems must exist; self-edges and edges closing a cycle are refused.
        Declaring an existing edge with another impact updates the impact.
        """
        return await self._host.run(self.add_dependency_in, source, target, impact)

    def add_dependency_in(
        self, tx: Connection, source: str, target: str, impact: Impact | str = Impact.DEGRADED,
    ) -> Dependency:
        """`add_dependency` inside the unit of work `tx`."""
        return self.write_dependency_in(tx, source, target, impact).dependency

    def write_dependency_in(
        self, tx: Connection, source: str, target: str, impact: Impact | str = Impact.DEGRADED,
    ) -> DependencyWrite:
        """`add_dependency_in` that also tells what it did (new edge, impact change)."""
        source = _check_id(source, "source")
        target = _check_id(target, "target")
        level = _impact(impact)
        edge = f"{source} -> {target}"
        if source == target:
            raise InvalidDependency(
                f"dependency {edge}: a system cannot depend on itself, expected two different "
                f"system ids", field="target")
        for role, system_id in sorted((("source", source), ("target", target)),
                                      key=lambda pair: pair[1]):
            self._lock_existing_in(tx, system_id, role, edge)
        self._host.lock_in(tx, *_EDGE_LOCK)
        row = tx.execute(_SELECT_IMPACT, {"s": source, "t": target}).first()
        previous = None if row is None else Impact(row.impact)
        if previous is None:
            path = _upstream_path_in(tx, start=target, goal=source)
            if path is not None:
                cycle = " -> ".join([source, *path])
                raise InvalidDependency(
                    f"dependency {edge} would close a cycle ({cycle}): expected the "
                    f"dependency graph to stay acyclic", field="target")
            tx.execute(_INSERT_EDGE, {"source_system_id": source, "target_system_id": target,
                                      "impact": level.value, "created_at": _utcnow()})
        elif previous != level:
            tx.execute(_UPDATE_IMPACT, {"s": source, "t": target, "new_impact": level.value})
        dependency = Dependency(source_system_id=source, target_system_id=target, impact=level)
        return DependencyWrite(dependency=dependency, previous_impact=previous)

    def _lock_existing_in(self, tx: Connection, system_id: str, role: str, edge: str) -> None:
        """Take `system_id`'s entity lock and check it exists, or raise `UnknownSystem`."""
        self._systems.lock_in(tx, system_id)
        if self._systems.get_in(tx, system_id) is None:
            raise UnknownSystem(
                f"dependency {edge}: unknown {role} system {system_id!r}, expected the id "
                f"of a system in the catalog", system_id=system_id, role=role)

    async def remove_dependency(self, source: str, target: str) -> bool:
        """Delete the edge `source -> target`; True when it existed."""
        return await self._host.run(self.remove_dependency_in, source, target)

    def remove_dependency_in(self, tx: Connection, source: str, target: str) -> bool:
        """`remove_dependency` inside the unit of work `tx`."""
        self._host.lock_in(tx, *_EDGE_LOCK)
        return bool(tx.execute(_DELETE_EDGE, {"s": source, "t": target}).rowcount)

    async def upstream_of(self, system_id: str) -> list[Dependency]:
        """Edges where `system_id` is the source: what it depends on, by target id."""
        return await self._host.read(self.upstream_of_in, system_id)

    def upstream_of_in(self, tx: Connection, system_id: str) -> list[Dependency]:
        """`upstream_of` inside `tx`."""
        return [_dependency(row) for row in tx.execute(_UPSTREAM, {"id": system_id})]

    async def downstream_of(self, system_id: str) -> list[Dependency]:
        """Edges where `system_id` is the target: what depends on it, by source id."""
        return await self._host.read(self.downstream_of_in, system_id)

    def downstream_of_in(self, tx: Connection, system_id: str) -> list[Dependency]:
        """`downstream_of` inside `tx`."""
        return [_dependency(row) for row in tx.execute(_DOWNSTREAM, {"id": system_id})]

    async def dependencies(self) -> list[Dependency]:
        """Every edge, by (source, target)."""
        return await self._host.read(self.dependencies_in)

    def dependencies_in(self, tx: Connection) -> list[Dependency]:
        """`dependencies` inside `tx`."""
        return [_dependency(row) for row in tx.execute(_ALL_EDGES)]


def _upstream_path_in(tx: Connection, *, start: str, goal: str) -> list[str] | None:
    """The ids from `start` up to `goal` following existing edges upstream, if connected."""
    parents: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        reached: list[str] = []
        for row in tx.execute(_UPSTREAM_STEP, {"ids": frontier}):
            if row.target_system_id in parents:
                continue
            parents[row.target_system_id] = row.source_system_id
            if row.target_system_id == goal:
                path: list[str] = [goal]
                while (parent := parents[path[-1]]) is not None:
                    path.append(parent)
                return path[::-1]
            reached.append(row.target_system_id)
        frontier = reached
    return None


def catalog_of(host: Host) -> Catalog:
    """The `Catalog` service of `host`'s catalog plugin (for application code and tests)."""
    from .hooks import CatalogPlugin

    plugin = host.plugin("catalog")
    if not isinstance(plugin, CatalogPlugin) or plugin.catalog is None:
        raise CatalogError(f"the plugin named 'catalog' in this host is a "
                           f"{type(plugin).__name__}, expected catalog_plugin.CatalogPlugin")
    return plugin.catalog
