"""The work queue's one home: every statement on `entity_deliveries` and `work_queue_routes`.

One durable row per (change, work-queue group). Per-entity order is kept by a `ready`
flag: of the pending rows of one (group, kind, entity), only the oldest — the *head* —
is ready, and only ready rows are ever claimed. A row is enqueued ready when its
entity has nothing pending in that group; when a head finishes (done or dead) the next
pending row of its entity becomes ready in the same transaction. So a claim reads only
due heads, through an index on them, and its cost does not grow with the backlog.

Races on PostgreSQL, and why there are none: every statement that decides or changes
which row of an entity is pending holds that entity's advisory lock (`lock_key(kind,
entity_id)`, the lock the write path takes). Two writes of one entity enqueue one after
the other; a write enqueuing while the entity's head is being finished either sees it
finished or has its new row seen by the promotion that follows. Finishing takes the
locks without waiting (`try_locks`): an outcome whose entity a write holds right now
is recorded in a later round, so the dispatcher never waits for a group commit that
may be waiting for it.
Replaying a dead letter follows the same rule.

Times that instances compare (when a row is claimable, lease expiries) are the
database's clock on PostgreSQL (see `_store.backend`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property, lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Boolean, Connection, DateTime, Integer, func, select, text
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.selectable import TextualSelect

from .._clock import Clock, as_utc
from .._entities.changes import CHANGE_FIELDS, EntityChange, change_from, stored_time
from .._errors import DeliveryNotFound
from .._store.backend import Backend, loads, lock_key
from .._store.schema import entity_deliveries, work_queue_routes
from .policy import DeliveryStatus

Route = tuple[str, str]
"""A (work-queue group, kind) pair an instance has a handler for."""

_PENDING, _DONE, _DEAD = (DeliveryStatus.PENDING.value, DeliveryStatus.DONE.value,
                          DeliveryStatus.DEAD.value)
ROUTE_REFRESH_SECONDS = 60.0
"""How often a running instance re-records the routes it handles."""
ROUTE_MIN_AGE_SECONDS = 7 * 86_400.0
"""Retention never drops a route seen more recently than this, whatever its setting."""
_ROUTE_MIN_AGE = timedelta(seconds=ROUTE_MIN_AGE_SECONDS)
MAX_ERROR_LENGTH = 4000


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryRow:
    """One durable work-queue delivery, as listed by `reactive deliveries`."""

    id: int
    change_seq: int
    group: str
    kind: str
    entity_id: str
    status: DeliveryStatus
    attempts: int
    available_at: datetime | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    created_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteStatus:
    """A (group, kind) route some instance recorded, and its backlog."""

    group: str
    kind: str
    last_seen_at: datetime | None
    """When an instance running the group last refreshed the route."""
    pending: int


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueStatus:
    """The work queue at a glance: every route with its backlog, and the totals."""

    routes: tuple[RouteStatus, ...]
    pending: int
    dead: int


@dataclass(frozen=True, slots=True)
class Failure:
    """A handler's failed attempt to record: retry after `backoff` seconds, or dead."""

    delivery: DeliveryRow
    error: str
    backoff: float | None
    """Seconds until the retry; None dead-letters the delivery."""
    ran: bool = True
    """False when the handler was not started (its earlier attempts were used up): the
    claim that found this out does not count as an attempt."""


@dataclass(frozen=True, slots=True)
class Settled:
    """What `settle` recorded, and the outcomes left for a later round."""

    recorded: int
    later_done: list[DeliveryRow]
    later_failed: list[Failure]


def _entity_key(delivery: DeliveryRow) -> int:
    return lock_key(delivery.kind, delivery.entity_id)


_TYPES: dict[str, Any] = {
    "available_at": DateTime(timezone=True), "lease_expires_at": DateTime(timezone=True),
    "created_at": DateTime(timezone=True), "finished_at": DateTime(timezone=True),
    "occurred_at": DateTime(timezone=True), "ready": Boolean(), "attempts": Integer(),
    "prev": JSON(), "next": JSON(), "delta": JSON(), "changed_fields": JSON(),
}


def _typed(sql: str, *names: str) -> TextualSelect:
    return text(sql).columns(**{name: _TYPES[name] for name in names})


def _time(value: Any) -> datetime | None:
    return None if value is None else stored_time(value)


_STATUSES = {status.value: status for status in DeliveryStatus}


def delivery_row(row: Any) -> DeliveryRow:
    """An `entity_deliveries` row as a `DeliveryRow` (typed, or raw as the driver gives it)."""
    return _delivery_from(*(getattr(row, name) for name in _DELIVERY_FIELDS))


_DELIVERY_FIELDS = ("id", "change_seq", "group_name", "kind", "entity_id", "status",
                    "attempts", "available_at", "lease_owner", "lease_expires_at",
                    "last_error", "created_at", "finished_at")


def _delivery_from(id_: Any, change_seq: Any, group: str, kind: str, entity_id: str,
                   status: str, attempts: Any, available_at: Any, lease_owner: str | None,
                   lease_expires_at: Any, last_error: str | None, created_at: Any,
                   finished_at: Any) -> DeliveryRow:
    return DeliveryRow(
        id=int(id_), change_seq=int(change_seq), group=group, kind=kind, entity_id=entity_id,
        status=_STATUSES.get(status) or DeliveryStatus(status), attempts=int(attempts),
        available_at=_time(available_at), lease_owner=lease_owner,
        lease_expires_at=_time(lease_expires_at), last_error=last_error,
        created_at=_time(created_at), finished_at=_time(finished_at))


def _picker(columns: Sequence[str], fields: Sequence[str]) -> Callable[[Any], tuple[Any, ...]]:
    """Picks `fields`, in that order, out of a row whose columns are `columns` (by
    position: a row's attributes cost ten times more on the claim's hot path)."""
    return itemgetter(*(columns.index(name) for name in fields))


_UNLEASED = "(lease_expires_at IS NULL OR lease_expires_at <= {now})"
"""A row no instance holds: never leased, released, or its lease ran out."""
_KEY_COLUMNS = ("group_name", "kind", "entity_id")
_JSON_COLUMNS = frozenset({"prev", "next", "delta", "changed_fields"})
_CHANGE_ONLY = ("change_id", "prev", "next", "delta", "changed_fields", "actor_type",
                "actor_id", "reason", "occurred_at")
"""The columns of a change that its delivery row does not repeat."""


def _enqueue_sql(*, seq: str, source: str, kind: str, entity_id: str, groups: str,
                 now: str, created: str) -> str:
    """The enqueue statement from SQL fragments: one pending row per group of the kind
    (this instance's `groups` and the recorded routes), the head where its entity has
    nothing pending in that group. Positional parameters come in this order: seq, kind,
    entity_id, kind, entity_id (the busy check), now, created, groups, kind (routes)."""
    return (
        "INSERT INTO entity_deliveries (change_seq, group_name, kind, entity_id, status, "
        "ready, attempts, available_at, created_at) "
        f"SELECT {seq}, g.value, {kind}, {entity_id}, 'pending', NOT EXISTS (SELECT 1 FROM "
        f"entity_deliveries p WHERE p.kind = {kind} AND p.entity_id = {entity_id} "
        "AND p.group_name = g.value AND p.status = 'pending'), 0, "
        f"{now}, {created} FROM {source}({groups} UNION "
        f"SELECT group_name FROM work_queue_routes WHERE kind = {kind}) AS g")


class WorkQueueStore:
    """The work queue's statements on one backend."""

    def __init__(self, backend: Backend, clock: Clock) -> None:
        self._b = b = backend
        self._clock = clock
        # -- enqueue, on the write path's DBAPI cursor -------------------------------
        self._enqueue = _enqueue_sql(
            seq=b.p, source="", kind=b.p, entity_id=b.p,
            groups=f"SELECT value FROM {b.p_list} AS l", now=b.p_now, created=b.p)
        # -- settling ----------------------------------------------------------------
        finished = f"lease_owner = NULL, lease_expires_at = NULL, finished_at = {b.now}"
        mine = f"lease_owner = :owner AND status = '{_PENDING}'"
        self._done = text(
            f"UPDATE entity_deliveries SET status = '{_DONE}', last_error = NULL, {finished} "
            f"WHERE {b.in_list('id', 'ids')} AND {mine} RETURNING {', '.join(_KEY_COLUMNS)}")
        self._dead = text(
            f"UPDATE entity_deliveries SET status = '{_DEAD}', last_error = :error, "
            f"attempts = attempts - :unrun, {finished} "
            f"WHERE id = :id AND {mine} RETURNING {', '.join(_KEY_COLUMNS)}")
        self._retry = text(
            f"UPDATE entity_deliveries SET available_at = {b.later('backoff')}, "
            "lease_owner = NULL, lease_expires_at = NULL, last_error = :error "
            f"WHERE id = :id AND {mine}")
        self._promote = text(
            "UPDATE entity_deliveries SET ready = TRUE WHERE id IN (SELECT "
            "(SELECT min(p.id) FROM entity_deliveries p WHERE p.group_name = k.group_name "
            "AND p.kind = k.kind AND p.entity_id = k.entity_id AND p.status = 'pending') "
            f"FROM {b.rows_table('k', _KEY_COLUMNS)})")
        self._extend = text(
            f"UPDATE entity_deliveries SET lease_expires_at = {b.later('lease')} "
            f"WHERE {b.in_list('id', 'ids')} AND {mine}")
        self._release = text(
            f"UPDATE entity_deliveries SET lease_owner = NULL, lease_expires_at = NULL "
            f"WHERE {mine}")

    # -- enqueue (the write path) -------------------------------------------------------

    def enqueue(self, cur: Any, *, seq: int, kind: str, entity_id: str,
                local_groups: Sequence[str], now: Any) -> None:
        """One pending delivery of change `seq` per work-queue group of `kind`.

        The groups are this instance's own (`local_groups`) and those recorded in
        `work_queue_routes` by other instances. Runs on the DBAPI cursor of the write
        path's unit of work, which holds the entity's lock.
        """
        cur.execute(self._enqueue, (seq, kind, entity_id, kind, entity_id, now, now,
                                    self._groups_param(tuple(local_groups)), kind))

    @lru_cache(maxsize=64)  # noqa: B019 - one store per host, a group set per kind
    def _groups_param(self, groups: tuple[str, ...]) -> Any:
        return self._b.list_param(groups)

    def enqueue_cte(self) -> str:
        """`enqueue` as a CTE named `dl` of the write path's single statement (backends
        with `writes_in_one_statement`): after a CTE `ch` returning the change's `seq`,
        with the named parameters `kind`, `id`, `groups` (this instance's) and `now`."""
        statement = _enqueue_sql(
            seq="ch.seq", source="ch, ", kind="%(kind)s", entity_id="%(id)s",
            groups="SELECT unnest(CAST(%(groups)s AS text[])) AS value",
            now="LEAST(%(now)s, now())", created="%(now)s")
        return f"dl AS ({statement})"

    # -- the dispatcher ---------------------------------------------------------------

    @lru_cache(maxsize=32)  # noqa: B019 - one store per host, a handful of route sets
    def _claim_statement(self, routes: tuple[Route, ...]) -> TextClause:
        b = self._b
        heads = [
            f"SELECT id, available_at FROM (SELECT id, available_at FROM entity_deliveries "
            f"WHERE group_name = :g{i} AND kind = :k{i} AND status = '{_PENDING}' AND ready "
            f"AND available_at <= {b.now} AND {_UNLEASED.format(now=b.now)} "
            "ORDER BY available_at, id LIMIT :limit"
            f"{b.skip_locked}) AS r{i}"
            for i in range(len(routes))]
        due = (f"(SELECT id FROM ({' UNION ALL '.join(heads)}) AS due "
               f"ORDER BY available_at, id LIMIT :limit)")
        lease = (f"UPDATE entity_deliveries SET lease_owner = :owner, attempts = attempts + 1, "
                 f"lease_expires_at = {b.later('lease')}")
        # Untyped on purpose: rows are parsed by delivery_row / row_to_change, faster than
        # SQLAlchemy's result processors on this hot path.
        delivery = ", ".join(f"entity_deliveries.{c.name}" for c in entity_deliveries.c)
        if b.returning_joins:
            # One round trip: the claimed rows come back with their changes.
            change = ", ".join(f"c.{name}" for name in _CHANGE_ONLY)
            return text(
                f"{lease} FROM entity_changes c WHERE c.seq = entity_deliveries.change_seq "
                f"AND entity_deliveries.id IN {due} RETURNING {delivery}, c.seq, {change}")
        # SQLite's RETURNING cannot join: a correlated subquery brings each change as one
        # JSON array, its JSON columns as JSON values, read in one go (`CHANGE_FIELDS`).
        fields = ", ".join(f"json(c.{name})" if name in _JSON_COLUMNS else f"c.{name}"
                           for name in CHANGE_FIELDS)
        return text(
            f"{lease} WHERE id IN {due} RETURNING {delivery}, (SELECT json_array({fields}) "
            "FROM entity_changes c WHERE c.seq = entity_deliveries.change_seq)")

    @lru_cache(maxsize=32)  # noqa: B019
    def _next_due_statement(self, routes: tuple[Route, ...]) -> TextClause:
        # Asked when a claim found nothing due: every head due by now is leased (or being
        # claimed by another instance), and it comes due when its lease ends; a head not
        # due yet comes due at its `available_at`. The leased heads are the ones in
        # flight, few whatever the backlog; the first head not due is one index entry.
        now = self._b.now
        firsts = " UNION ALL ".join(
            f"SELECT min(lease_expires_at) AS at FROM entity_deliveries WHERE "
            f"group_name = :g{i} AND kind = :k{i} AND status = '{_PENDING}' AND ready "
            f"AND available_at <= {now} UNION ALL "
            f"SELECT min(available_at) FROM entity_deliveries WHERE group_name = :g{i} "
            f"AND kind = :k{i} AND status = '{_PENDING}' AND ready AND available_at > {now}"
            for i in range(len(routes)))
        return text(f"SELECT {self._b.seconds_until('min(at)')} FROM ({firsts}) AS firsts")

    @staticmethod
    def _route_params(routes: Sequence[Route]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for i, (group, kind) in enumerate(routes):
            params[f"g{i}"] = group
            params[f"k{i}"] = kind
        return params

    @cached_property
    def _claimed_pickers(self) -> tuple[Callable[[Any], tuple[Any, ...]],
                                        Callable[[Any], tuple[Any, ...]]]:
        """Positional pickers of the claim's rows: the delivery's fields, and the change's
        (from the same row where the claim joins the changes; else the change is the
        row's last column, one JSON array)."""
        delivery = [c.name for c in entity_deliveries.c]
        joined = [*delivery, "seq", *_CHANGE_ONLY]
        # kind and entity_id are the delivery's (the change's are the same).
        return _picker(joined, _DELIVERY_FIELDS), _picker(joined, CHANGE_FIELDS)

    def claim(self, tx: Connection, *, routes: Sequence[Route], owner: str, lease: float,
              limit: int) -> list[tuple[DeliveryRow, EntityChange]]:
        """Lease up to `limit` due heads of `routes` to `owner`, counting an attempt each.

        Only claim what starts running now: an attempt is counted here, when the
        handler starts, and a lease that expires later counts as that attempt.
        """
        if not routes or limit <= 0:
            return []
        params = {**self._route_params(routes), **self._b.times(self._clock(), lease=lease),
                  "owner": owner, "limit": limit}
        pick_delivery, pick_change = self._claimed_pickers
        claimed = sorted(((_delivery_from(*pick_delivery(row)), row) for row in
                          tx.execute(self._claim_statement(tuple(routes)), params).all()),
                         key=lambda pair: pair[0].id)
        if not claimed:
            return []
        # Each delivery gets a change object of its own, parsed from the row: a handler
        # that alters its change alters nobody else's (another group's, a retry's).
        if self._b.returning_joins:
            return [(d, change_from(*pick_change(row))) for d, row in claimed]
        return [(d, change_from(*loads(row[-1]))) for d, row in claimed]

    def seconds_until_due(self, tx: Connection, routes: Sequence[Route]) -> float | None:
        """Seconds until the earliest pending head of `routes` is claimable (a backoff or
        a lease ending); None when there is none."""
        if not routes:
            return None
        params = {**self._route_params(routes), **self._b.times(self._clock())}
        value = tx.execute(self._next_due_statement(tuple(routes)), params).scalar()
        return None if value is None else float(value)

    def settle(self, tx: Connection, *, owner: str, done: Sequence[DeliveryRow],
               failed: Sequence[Failure]) -> Settled:
        """Record finished handlers: `done` ones, and failed attempts (retry or dead).

        Rows whose lease `owner` no longer holds are left alone (their lease expired and
        another instance may have them). Finishing a row (done or dead) takes its
        entity's lock without waiting; an outcome whose entity is locked right now (a
        write of it is committing) is returned in `Settled.later`, to record in a later
        round.
        """
        finishing = [*done, *(f.delivery for f in failed if f.backoff is None)]
        keys = {d.id: _entity_key(d) for d in finishing}  # each key computed once
        held = self._b.try_locks(tx, list(keys.values()))

        def free(delivery: DeliveryRow) -> bool:
            return keys[delivery.id] in held

        later_done = [d for d in done if not free(d)]
        later_failed = [f for f in failed if f.backoff is None and not free(f.delivery)]
        times = self._b.times(self._clock())
        finished: list[Any] = []
        recorded = 0
        ids = [d.id for d in done if free(d)]
        if ids:
            rows = tx.execute(self._done, {"ids": self._b.list_param(ids),
                                           "owner": owner, **times}).all()
            finished += rows
            recorded += len(rows)
        for failure in failed:
            error = failure.error[:MAX_ERROR_LENGTH]
            if failure.backoff is None:
                if not free(failure.delivery):
                    continue
                rows = tx.execute(self._dead, {"id": failure.delivery.id, "owner": owner,
                                               "error": error, "unrun": int(not failure.ran),
                                               **times}).all()
                finished += rows
                recorded += len(rows)
            else:
                result = tx.execute(self._retry, {
                    "id": failure.delivery.id, "owner": owner, "error": error,
                    **self._b.times(self._clock(), backoff=failure.backoff)})
                recorded += int(result.rowcount or 0)
        if finished:
            self._promote_next(tx, finished)
        return Settled(recorded=recorded, later_done=later_done, later_failed=later_failed)

    def _promote_next(self, tx: Connection, keys: Sequence[Any]) -> None:
        rows = sorted({tuple(k) for k in keys})  # rows of _KEY_COLUMNS
        tx.execute(self._promote, self._b.rows_params("k", _KEY_COLUMNS, rows))

    def extend(self, tx: Connection, *, ids: Sequence[int], owner: str, lease: float) -> None:
        """Push the leases `owner` holds on `ids` to `lease` seconds from now."""
        if ids:
            tx.execute(self._extend, {"ids": self._b.list_param(list(ids)), "owner": owner,
                                      **self._b.times(self._clock(), lease=lease)})

    def release(self, tx: Connection, owner: str) -> int:
        """Hand back every lease `owner` holds (shutdown), so others take them at once.

        The attempts stay counted: a handler cut short by a shutdown did run.
        """
        result = tx.execute(self._release, {"owner": owner, **self._b.times(self._clock())})
        if result.rowcount:
            self._b.notify(tx)
        return int(result.rowcount or 0)

    # -- operators --------------------------------------------------------------------

    def list(self, tx: Connection, *, status: DeliveryStatus | str | None = None,
             group: str | None = None, limit: int = 100, before: int | None = None,
             after: int | None = None) -> list[DeliveryRow]:
        """Deliveries newest first, filtered, one page read in SQL: the newest `limit`
        (with ids below `before`, when given), or with `after` the `limit` oldest ids
        above it (the next page forward, still listed newest first)."""
        d = entity_deliveries
        forward = after is not None and before is None
        query = select(d).order_by(d.c.id if forward else d.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(d.c.status == DeliveryStatus(status).value)
        if group is not None:
            query = query.where(d.c.group_name == group)
        if before is not None:
            query = query.where(d.c.id < before)
        if after is not None:
            query = query.where(d.c.id > after)
        rows = [delivery_row(r) for r in tx.execute(query).all()]
        return rows[::-1] if forward else rows

    def replay(self, tx: Connection, delivery_id: int) -> DeliveryRow:
        """Put dead letter `delivery_id` back in its entity's queue with fresh retries."""
        d = entity_deliveries
        row = tx.execute(select(d).where(d.c.id == delivery_id)).first()
        if row is None or row.status != _DEAD:
            found = "does not exist" if row is None else f"has status {row.status!r}"
            raise DeliveryNotFound(
                f"delivery {delivery_id} {found}: expected the id of a dead-lettered delivery")
        self._b.lock(tx, lock_key(row.kind, row.entity_id))
        tail = tx.execute(
            select(func.max(d.c.id)).where(
                d.c.kind == row.kind, d.c.entity_id == row.entity_id,
                d.c.group_name == row.group_name, d.c.status == _PENDING)).scalar()
        tx.execute(
            d.update().where(d.c.id == delivery_id, d.c.status == _DEAD).values(
                status=_PENDING, ready=tail is None, attempts=0, finished_at=None,
                lease_owner=None, lease_expires_at=None, available_at=self._clock()))
        self._b.notify(tx)
        return delivery_row(tx.execute(select(d).where(d.c.id == delivery_id)).one())

    def pending_count(self, tx: Connection, routes: Sequence[Route]) -> int:
        """How many deliveries routed to `routes` are not finished yet."""
        if not routes:
            return 0
        d = entity_deliveries
        total = 0
        for group, kind in routes:
            total += int(tx.execute(select(func.count()).select_from(d).where(
                d.c.group_name == group, d.c.kind == kind, d.c.status == _PENDING)).scalar_one())
        return total

    def status(self, tx: Connection) -> QueueStatus:
        """Every route with its backlog (and pending rows of groups with no route)."""
        d, r = entity_deliveries, work_queue_routes
        backlog = {(row.group_name, row.kind): int(row.n) for row in tx.execute(
            select(d.c.group_name, d.c.kind, func.count().label("n"))
            .where(d.c.status == _PENDING).group_by(d.c.group_name, d.c.kind))}
        seen = {(row.group_name, row.kind): as_utc(row.last_seen_at)
                for row in tx.execute(select(r))}
        routes = tuple(RouteStatus(group=g, kind=k, last_seen_at=seen.get((g, k)),
                                   pending=backlog.get((g, k), 0))
                       for g, k in sorted(seen.keys() | backlog.keys()))
        dead = int(tx.execute(select(func.count()).select_from(d)
                              .where(d.c.status == _DEAD)).scalar_one())
        return QueueStatus(routes=routes, pending=sum(backlog.values()), dead=dead)

    # -- routes -----------------------------------------------------------------------

    def record_routes(self, tx: Connection, routes: Sequence[Route]) -> None:
        """Record (or refresh) the routes this instance handles.

        Writers on every instance enqueue a delivery for each recorded route, so a group
        run by only some instances still gets every change.
        """
        if not routes:
            return
        r = work_queue_routes
        stmt = self._b.upsert(r)
        tx.execute(
            stmt.on_conflict_do_update(index_elements=[r.c.group_name, r.c.kind],
                                       set_={"last_seen_at": stmt.excluded.last_seen_at}),
            [{"group_name": g, "kind": k, "last_seen_at": self._clock()} for g, k in routes])

    # -- retention --------------------------------------------------------------------

    def prune(self, tx: Connection, *, older_than: datetime) -> dict[str, int]:
        """Delete deliveries done before `older_than`, and routes nobody runs any more.

        A route goes only when no instance refreshed it for the longer of the retention
        period and `ROUTE_MIN_AGE_SECONDS`, and nothing is pending on it: a live group's
        route is refreshed every minute and is never dropped.
        """
        d, r = entity_deliveries, work_queue_routes
        deliveries = tx.execute(d.delete().where(d.c.status == _DONE,
                                                 d.c.finished_at < older_than)).rowcount
        route_cutoff = min(older_than, self._clock() - _ROUTE_MIN_AGE)
        pending = select(d.c.id).where(d.c.group_name == r.c.group_name, d.c.kind == r.c.kind,
                                       d.c.status == _PENDING).exists()
        routes = tx.execute(r.delete().where(r.c.last_seen_at < route_cutoff, ~pending)).rowcount
        return {"deliveries": int(deliveries or 0), "routes": int(routes or 0)}

    @staticmethod
    def unfinished_changes() -> Any:
        """The seqs of changes a delivery still needs (pending or dead): never pruned."""
        d = entity_deliveries
        return select(d.c.change_seq).where(d.c.status != _DONE)

