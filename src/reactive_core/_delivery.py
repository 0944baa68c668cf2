"""Getting changes to subscribers: the broadcast feed and the work-queue dispatcher.

Broadcast: every instance tails `entity_changes` and calls its local handlers. On
SQLite the feed is read by `seq` (one writer, so seq order is commit order). On
PostgreSQL sequence numbers are taken before commit, so a lower seq can become
visible after a higher one; the feed therefore remembers the database snapshot of
its previous read and asks for the rows whose transaction was not yet visible in it
(`pg_visible_in_snapshot`), which returns each committed change exactly once no
matter the commit order. A NOTIFY wakes tailers; polling is the backstop.

Work queue: one durable `entity_deliveries` row per (change, group). An instance
claims rows for the groups it handles (`FOR UPDATE SKIP LOCKED` on PostgreSQL) and
takes a lease; a row is claimable only when no earlier row of the same (group, kind,
entity) is still pending, which gives per-entity order across the cluster. A running
handler's lease is extended by heartbeats; a dead instance's lease expires and the
row is handed to another (at-least-once). Failures back off exponentially and are
dead-lettered after `max_retries` retries.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
from sqlalchemy import (
    Connection,
    DateTime,
    Integer,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ._changes import EntityChange
from ._db import Database
from ._entities import as_utc, row_to_change, utcnow
from ._errors import DeliveryNotFound
from ._registry import Registry, WorkQueue
from ._schema import entity_changes, entity_deliveries, work_queue_routes

logger = logging.getLogger("reactive_core.delivery")


class Waker:
    """A level-triggered wake-up: `set()` from the loop, `wait(timeout)` in one task."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        """Wake the waiting task (or make its next wait return at once)."""
        self._event.set()

    async def wait(self, timeout: float) -> None:
        """Wait for a wake-up or `timeout` seconds, then re-arm."""
        with anyio.move_on_after(timeout):
            await self._event.wait()
        if self._event.is_set():
            self._event = anyio.Event()


# -- broadcast ------------------------------------------------------------------------

_PG_FEED = text(
    """
    WITH snap AS (SELECT pg_current_snapshot() AS s)
    SELECT snap.s::text AS snapshot, c.*
    FROM snap LEFT JOIN entity_changes c
      ON c.txid >= pg_snapshot_xmin(CAST(:prev AS pg_snapshot))::text::bigint
     AND NOT pg_visible_in_snapshot(c.txid::text::xid8, CAST(:prev AS pg_snapshot))
    ORDER BY c.seq
    """
)
_SQLITE_FEED = (
    select(entity_changes)
    .where(entity_changes.c.seq > bindparam("after"))
    .order_by(entity_changes.c.seq)
    .limit(500)
)


class BroadcastFeed:
    """Tails the change feed and calls this instance's broadcast handlers in order."""

    def __init__(self, *, db: Database, registry: Registry, poll_interval: float) -> None:
        self._db = db
        self._registry = registry
        self._poll_interval = poll_interval
        self._waker = Waker()
        self._position: Any = None
        self._started = 0
        self._finished = 0
        self._progress = anyio.Event()
        self.head_seq = 0

    def wake(self) -> None:
        """Poll now rather than at the next interval."""
        self._waker.set()

    async def start_position(self) -> None:
        """Remember where the feed stands now; changes before this are not broadcast."""
        self._position = await self._db.read(self._initial_position)

    def _initial_position(self, tx: Connection) -> Any:
        if self._db.dialect == "postgresql":
            return tx.execute(text("SELECT pg_current_snapshot()::text")).scalar_one()
        return int(tx.execute(select(func.coalesce(func.max(entity_changes.c.seq), 0))).scalar_one())

    def _read(self, tx: Connection, position: Any) -> tuple[Any, list[EntityChange]]:
        if self._db.dialect == "postgresql":
            rows = tx.execute(_PG_FEED, {"prev": position}).all()
            if not rows:
                return position, []
            new_position = rows[0].snapshot
            return new_position, [row_to_change(r) for r in rows if r.seq is not None]
        rows = tx.execute(_SQLITE_FEED, {"after": position}).all()
        changes = [row_to_change(r) for r in rows]
        return (changes[-1].seq if changes else position), changes

    async def run(self) -> None:
        """Poll forever (until cancelled), delivering each new change to local handlers."""
        while True:
            await self.poll_once()
            await self._waker.wait(self._poll_interval)

    async def poll_once(self) -> None:
        """Read every change committed since the last poll and deliver it."""
        self._started += 1
        generation = self._started
        try:
            while True:
                position, changes = await self._db.read(self._read, self._position)
                for change in changes:
                    await self._deliver(change)
                    self.head_seq = max(self.head_seq, change.seq)
                self._position = position
                if self._db.dialect == "postgresql" or len(changes) < 500:
                    break
        finally:
            self._finished = max(self._finished, generation)
            self._progress.set()
            self._progress = anyio.Event()

    async def catch_up(self) -> None:
        """Return once a poll that started after this call has finished."""
        target = self._started + 1
        while self._finished < target:
            progress = self._progress
            self.wake()
            with anyio.move_on_after(self._poll_interval):
                await progress.wait()

    async def _deliver(self, change: EntityChange) -> None:
        for sub in self._registry.subscriptions(change.kind):
            if isinstance(sub.delivery, WorkQueue):
                continue
            try:
                await sub.handler(change)
            except Exception:  # noqa: BLE001 - one handler must never affect another
                logger.exception(
                    "broadcast handler %s failed on %s:%s (change %s)",
                    sub.name, change.kind, change.id, change.change_id,
                )


# -- work queue -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryRow:
    """One durable work-queue delivery, as listed by `reactive deliveries`."""

    id: int
    change_seq: int
    group: str
    kind: str
    entity_id: str
    status: str
    attempts: int
    available_at: datetime | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    created_at: datetime | None
    finished_at: datetime | None


def _delivery_row(row: Any) -> DeliveryRow:
    return DeliveryRow(
        id=int(row.id), change_seq=int(row.change_seq), group=row.group_name, kind=row.kind,
        entity_id=row.entity_id, status=row.status, attempts=int(row.attempts),
        available_at=as_utc(row.available_at), lease_owner=row.lease_owner,
        lease_expires_at=as_utc(row.lease_expires_at), last_error=row.last_error,
        created_at=as_utc(row.created_at), finished_at=as_utc(row.finished_at),
    )


_d = entity_deliveries
_earlier = _d.alias("earlier")


def _routes(routes: list[tuple[str, str]]) -> Any:
    """SQL condition: the row's (group, kind) is one of `routes`."""
    return or_(*(and_(_d.c.group_name == g, _d.c.kind == k) for g, k in routes))


@functools.lru_cache(maxsize=64)
def _claim_statements(dialect: str, routes: tuple[tuple[str, str], ...]) -> tuple[Any, Any, Any]:
    """The claim round's statements for one set of routes, built once."""
    # The oldest pending delivery of each (group, kind, entity) is the only claimable
    # one: that is per-entity order, across every instance of the cluster.
    first_of_entity = (
        select(func.min(_earlier.c.id))
        .where(
            _earlier.c.group_name == _d.c.group_name,
            _earlier.c.kind == _d.c.kind,
            _earlier.c.entity_id == _d.c.entity_id,
            _earlier.c.status == "pending",
        )
        .scalar_subquery()
    )
    now = bindparam("now", type_=DateTime(timezone=True))
    query = (
        select(_d.c.id)
        .where(
            _d.c.status == "pending",
            _routes(list(routes)),
            _d.c.available_at <= now,
            or_(_d.c.lease_expires_at.is_(None), _d.c.lease_expires_at < now),
            _d.c.id == first_of_entity,
        )
        .order_by(_d.c.id)
        .limit(bindparam("limit", type_=Integer()))
    )
    if dialect == "postgresql":
        query = query.with_for_update(of=_d, skip_locked=True)
    lease = (
        update(_d).where(_d.c.id.in_(bindparam("ids", expanding=True)))
        .values(lease_owner=bindparam("owner"), attempts=_d.c.attempts + 1,
                lease_expires_at=bindparam("until", type_=DateTime(timezone=True)))
    )
    load = (
        select(_d, entity_changes.c.change_id, entity_changes.c.prev, entity_changes.c.next,
               entity_changes.c.delta, entity_changes.c.changed_fields,
               entity_changes.c.actor_type, entity_changes.c.actor_id, entity_changes.c.reason,
               entity_changes.c.occurred_at, entity_changes.c.seq)
        .join(entity_changes, entity_changes.c.seq == _d.c.change_seq)
        .where(_d.c.id.in_(bindparam("ids", expanding=True)))
        .order_by(_d.c.id)
    )
    return query, lease, load


def _claim(
    tx: Connection, *, dialect: str, routes: list[tuple[str, str]], owner: str, lease: float,
    limit: int,
) -> list[tuple[DeliveryRow, EntityChange]]:
    now = utcnow()
    query, take, load = _claim_statements(dialect, tuple(routes))
    ids = list(tx.execute(query, {"now": now, "limit": limit}).scalars())
    if not ids:
        return []
    tx.execute(take, {"ids": ids, "owner": owner, "until": now + timedelta(seconds=lease)})
    rows = tx.execute(load, {"ids": ids}).all()
    return [(_delivery_row(r), row_to_change(r)) for r in rows]


def _settle_and_claim(
    tx: Connection, done: list[int], routes: list[tuple[str, str]], owner: str, lease: float,
    limit: int,
) -> tuple[list[tuple[DeliveryRow, EntityChange]], datetime | None]:
    """Mark `done` deliveries finished, then claim up to `limit` for `routes`.

    Returns the claimed deliveries and, when none was claimable, when the earliest
    backing-off one becomes due.
    """
    if done:
        result = tx.execute(
            update(_d).where(_d.c.id.in_(done), _d.c.lease_owner == owner,
                             _d.c.status == "pending")
            .values(status="done", finished_at=utcnow(), lease_owner=None,
                    lease_expires_at=None, last_error=None)
        )
        if result.rowcount < len(done):
            logger.warning("%d deliveries finished after their lease was lost; they may run "
                           "again elsewhere", len(done) - result.rowcount)
    if not routes or limit <= 0:
        return [], None
    claimed = _claim(tx, dialect=tx.dialect.name, routes=routes, owner=owner, lease=lease,
                     limit=limit)
    if claimed:
        return claimed, None
    return [], next_available(tx, routes)


def _fail(
    tx: Connection, delivery_id: int, owner: str, error: str, max_retries: int,
    base: float, cap: float,
) -> str | None:
    row = tx.execute(
        select(_d.c.attempts).where(_d.c.id == delivery_id, _d.c.lease_owner == owner,
                                    _d.c.status == "pending")
    ).first()
    if row is None:
        return None
    attempts = int(row.attempts)
    now = utcnow()
    if attempts > max_retries:
        tx.execute(update(_d).where(_d.c.id == delivery_id).values(
            status="dead", finished_at=now, lease_owner=None, lease_expires_at=None,
            last_error=error))
        return "dead"
    backoff = min(cap, base * math.pow(2, attempts - 1))
    tx.execute(update(_d).where(_d.c.id == delivery_id).values(
        available_at=now + timedelta(seconds=backoff), lease_owner=None,
        lease_expires_at=None, last_error=error))
    return "retry"


def _extend(tx: Connection, ids: list[int], owner: str, lease: float) -> None:
    tx.execute(update(_d).where(_d.c.id.in_(ids), _d.c.lease_owner == owner,
                                _d.c.status == "pending")
               .values(lease_expires_at=utcnow() + timedelta(seconds=lease)))


def notify_waiters(tx: Connection) -> None:
    """Wake every instance's feed and dispatcher when `tx` commits (PostgreSQL NOTIFY)."""
    if tx.dialect.name == "postgresql":
        tx.execute(_NOTIFY)


_NOTIFY = text("SELECT pg_notify('reactive_changes', '')")


def register_routes(tx: Connection, routes: list[tuple[str, str]]) -> None:
    """Record (or refresh) the work-queue (group, kind) routes this instance handles.

    Writers on every instance enqueue a delivery for each recorded route, so a group
    run by only some instances still gets every change.
    """
    if not routes:
        return
    now = utcnow()
    insert_ = pg_insert if tx.dialect.name == "postgresql" else sqlite_insert
    stmt = insert_(work_queue_routes)
    tx.execute(
        stmt.on_conflict_do_update(
            index_elements=[work_queue_routes.c.group_name, work_queue_routes.c.kind],
            set_={"last_seen_at": stmt.excluded.last_seen_at},
        ),
        [{"group_name": g, "kind": k, "last_seen_at": now} for g, k in routes],
    )


def release_leases(tx: Connection, owner: str) -> int:
    """Hand back every lease `owner` holds (on clean shutdown), so others resume at once."""
    result = tx.execute(
        update(_d).where(_d.c.lease_owner == owner, _d.c.status == "pending")
        .values(lease_owner=None, lease_expires_at=None, attempts=_d.c.attempts - 1)
    )
    if result.rowcount:
        notify_waiters(tx)
    return int(result.rowcount)


def list_deliveries(
    tx: Connection, *, status: str | None = None, group: str | None = None, limit: int = 100,
) -> list[DeliveryRow]:
    """Deliveries newest first, optionally filtered by status and group."""
    query = select(_d).order_by(_d.c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(_d.c.status == status)
    if group is not None:
        query = query.where(_d.c.group_name == group)
    return [_delivery_row(r) for r in tx.execute(query).all()]


def replay_dead(tx: Connection, delivery_id: int) -> DeliveryRow:
    """Put a dead-lettered delivery back in the queue with fresh retries."""
    result = tx.execute(
        update(_d).where(_d.c.id == delivery_id, _d.c.status == "dead")
        .values(status="pending", attempts=0, available_at=utcnow(), finished_at=None,
                lease_owner=None, lease_expires_at=None)
    )
    notify_waiters(tx)
    if not result.rowcount:
        row = tx.execute(select(_d.c.status).where(_d.c.id == delivery_id)).first()
        found = "does not exist" if row is None else f"has status {row.status!r}"
        raise DeliveryNotFound(
            f"delivery {delivery_id} {found}: expected the id of a dead-lettered delivery"
        )
    return _delivery_row(tx.execute(select(_d).where(_d.c.id == delivery_id)).one())


def pending_count(tx: Connection, routes: list[tuple[str, str]]) -> int:
    """How many deliveries routed to `routes` (group, kind) are not finished yet."""
    if not routes:
        return 0
    return int(tx.execute(
        select(func.count()).select_from(_d).where(_d.c.status == "pending", _routes(routes))
    ).scalar_one())


def next_available(tx: Connection, routes: list[tuple[str, str]]) -> datetime | None:
    """When the earliest backing-off delivery routed to `routes` becomes claimable."""
    if not routes:
        return None
    return as_utc(tx.execute(
        select(func.min(_d.c.available_at)).where(_d.c.status == "pending", _routes(routes))
    ).scalar())


_ROUTE_REFRESH_SECONDS = 600.0
_CLAIM_AHEAD = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchSettings:
    """How the dispatcher claims and retries."""

    lease_seconds: float
    retry_base_seconds: float
    retry_max_seconds: float
    poll_interval: float
    concurrency: int
    batch_delay: float = 0.0


class Dispatcher:
    """Claims this instance's work-queue deliveries and runs their handlers."""

    def __init__(
        self, *, db: Database, registry: Registry, owner: str, settings: DispatchSettings,
    ) -> None:
        self._db = db
        self._registry = registry
        self._owner = owner
        self._s = settings
        self._waker = Waker()
        self._running: dict[int, DeliveryRow] = {}
        self._done: list[int] = []
        self._handlers = anyio.CapacityLimiter(settings.concurrency)

    def wake(self) -> None:
        """Claim now rather than at the next interval."""
        self._waker.set()

    @property
    def in_flight(self) -> int:
        """Deliveries this instance is handling or has finished but not yet recorded."""
        return len(self._running) + len(self._done)

    async def run(self, task_group: anyio.abc.TaskGroup) -> None:
        """Claim and dispatch forever (until cancelled); handlers run in `task_group`.

        Each round is one unit of work: record the deliveries finished since the last
        round as done, then claim what is claimable now (and, when nothing is, learn
        when the next backing-off delivery becomes due).
        """
        heartbeat_every = max(self._s.lease_seconds / 3, 0.05)
        task_group.start_soon(self._heartbeat, heartbeat_every)
        while True:
            routes = self._registry.local_routes()
            # On SQLite (one process, as a rule) claim ahead of the handlers so a burst
            # costs few rounds; in a PostgreSQL cluster claim only what can run now, so
            # idle instances get their share. At most `concurrency` handlers run at once.
            ahead = _CLAIM_AHEAD if self._db.dialect == "sqlite" else 1
            free = self._s.concurrency * ahead - len(self._running)
            wait = self._s.poll_interval
            claimed: list[tuple[DeliveryRow, EntityChange]] = []
            done = self._done[:]
            if done or (routes and free > 0):
                try:
                    claimed, next_due = await self._db.run(
                        _settle_and_claim, done, routes, self._owner, self._s.lease_seconds,
                        free,
                    )
                    del self._done[:len(done)]
                    if next_due is not None:
                        wait = min(wait, max((next_due - utcnow()).total_seconds(), 0) + 0.001)
                except Exception:  # noqa: BLE001 - a database hiccup must not stop delivery
                    logger.exception("claiming deliveries failed; retrying")
            for delivery, change in claimed:
                self._running[delivery.id] = delivery
                task_group.start_soon(self._handle, delivery, change)
            if claimed and len(claimed) == free:
                await anyio.sleep(0)
                continue
            await self._waker.wait(wait)
            if self._s.batch_delay > 0:
                # Let a burst of commits and finished handlers gather into one round.
                await anyio.sleep(self._s.batch_delay)

    async def flush(self) -> None:
        """Record the deliveries finished but not yet recorded (on shutdown)."""
        if self._done:
            done = self._done[:]
            await self._db.run(_settle_and_claim, done, [], self._owner, 0.0, 0)
            del self._done[:len(done)]

    async def _handle(self, delivery: DeliveryRow, change: EntityChange) -> None:
        try:
            async with self._handlers:
                await self._handle_one(delivery, change)
        except Exception:  # noqa: BLE001 - the lease expires and the row is retried
            logger.exception("recording the outcome of delivery %s failed", delivery.id)
        finally:
            self._running.pop(delivery.id, None)
            self.wake()

    async def _handle_one(self, delivery: DeliveryRow, change: EntityChange) -> None:
        sub = self._registry.work_queue_handler(delivery.group, delivery.kind)
        max_retries = (sub.delivery.max_retries
                       if sub is not None and isinstance(sub.delivery, WorkQueue) else 0)
        if delivery.attempts > max_retries + 1:
            # Earlier attempts ended without an outcome: their worker died holding the
            # lease (or hung past it). That counts: a poison change must not loop forever.
            error = (f"LeaseExpired: {delivery.attempts - 1} earlier attempts ended without "
                     f"an outcome (worker died or hung past its lease); last error: "
                     f"{delivery.last_error or 'none'}")
            await self._db.run(_fail, delivery.id, self._owner, error[:4000], 0,
                               self._s.retry_base_seconds, self._s.retry_max_seconds)
            logger.error("work-queue %s delivery %s (%s:%s) dead-lettered: %s", delivery.group,
                         delivery.id, delivery.kind, delivery.entity_id, error)
            return
        try:
            if sub is None:
                raise LookupError(
                    f"no handler for kind {delivery.kind!r} in work-queue group "
                    f"{delivery.group!r} on this instance"
                )
            await sub.handler(change)
        except Exception as exc:  # noqa: BLE001 - recorded on the delivery row
            error = f"{type(exc).__name__}: {exc}"
            outcome = await self._db.run(
                _fail, delivery.id, self._owner, error[:4000], max_retries,
                self._s.retry_base_seconds, self._s.retry_max_seconds,
            )
            log = logger.error if outcome == "dead" else logger.warning
            log("work-queue %s delivery %s (%s:%s) failed (%s): %s", delivery.group, delivery.id,
                delivery.kind, delivery.entity_id, outcome or "lease lost", error)
            return
        self._done.append(delivery.id)

    async def _heartbeat(self, every: float) -> None:
        refreshed = anyio.current_time()
        while True:
            await anyio.sleep(every)
            if anyio.current_time() - refreshed > _ROUTE_REFRESH_SECONDS:
                refreshed = anyio.current_time()
                try:
                    await self._db.run(register_routes, self._registry.local_routes())
                except Exception:  # noqa: BLE001
                    logger.exception("refreshing work-queue routes failed")
            ids = list(self._running)
            if ids:
                try:
                    await self._db.run(_extend, ids, self._owner, self._s.lease_seconds)
                except Exception:  # noqa: BLE001
                    logger.exception("extending leases failed")


def _claim_fn(
    tx: Connection, dialect: str, routes: list[tuple[str, str]], owner: str, lease: float,
    limit: int,
) -> list[tuple[DeliveryRow, EntityChange]]:
    """Claim up to `limit` deliveries for `routes` (one unit of work)."""
    return _claim(tx, dialect=dialect, routes=routes, owner=owner, lease=lease, limit=limit)




