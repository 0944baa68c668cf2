"""The check scheduler: runs every enabled, unpaused check at its interval, once per cluster.

Choice: a plugin table `health_check_schedule(configuration_id, next_run_at,
lease_owner, lease_until)` rather than the core's scheduled jobs, because jobs are
declared at registration with a fixed schedule while checks come and go at run time
with their own intervals. A due row is *claimed* in one unit of work: selected with
`FOR UPDATE SKIP LOCKED` on PostgreSQL (SQLite's single writer serializes claims), its
`next_run_at` moved to one interval after the claim (jittered) and a lease taken. So each slot of a
check is claimed by exactly one instance of the cluster, and the lease keeps a slow
run (a target hanging until its timeout) from overlapping the next slot. The lease is
released when the run is recorded — in the same unit of work as the run insert and the
health mutation — and on shutdown; a crashed instance's lease simply expires.

A check is due when its row's `next_run_at` has passed, it is not paused, it is not
leased, and it has at least one enabled association. Concurrency is bounded by
`max_concurrency` runs in flight per instance; the loop sleeps until the next
`next_run_at` (at most `tick_seconds`) and is woken when checks or associations change
in this process and whenever a run finishes; under load it claims in batches of a
quarter of the slots.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from sqlalchemy import Connection, bindparam, exists, func, or_, select, update

from .models import CheckConfiguration, UnknownCheck
from .queries import as_utc, utcnow
from .schema import (
    health_check_configurations as _cfg,
)
from .schema import (
    health_check_schedule as _sched,
)
from .schema import (
    health_system_associations as _assoc,
)

if TYPE_CHECKING:
    from .runtime import HealthRuntime
    from .service import HealthService

logger = logging.getLogger("health_plugin.scheduler")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimedCheck:
    """A check this instance claimed for one slot."""

    check: CheckConfiguration
    slot: datetime


def _due_condition(now_param: Any) -> Any:
    has_enabled = exists().where(_assoc.c.configuration_id == _sched.c.configuration_id,
                                 _assoc.c.enabled)
    return (
        ~_cfg.c.paused,
        or_(_sched.c.lease_until.is_(None), _sched.c.lease_until < now_param),
        has_enabled,
    )


_NEXT_DUE = (
    select(func.min(_sched.c.next_run_at))
    .select_from(_sched.join(_cfg, _cfg.c.id == _sched.c.configuration_id))
    .where(*_due_condition(bindparam("now")))
)


def next_due_in(tx: Connection, now: datetime) -> datetime | None:
    """The earliest `next_run_at` among checks that could be claimed now."""
    value = tx.execute(_NEXT_DUE, {"now": now}).scalar()
    return None if value is None else as_utc(value)


def claim_due_in(
    tx: Connection, *, runtime: HealthRuntime, owner: str, limit: int,
    now: datetime | None = None,
) -> list[ClaimedCheck]:
    """Claim up to `limit` due checks for `owner`: move their slot on, take a lease.

    `now` defaults to the time inside the transaction (after waiting for the writer or
    the row locks), so the next slot is one interval after the claim really happened.
    """
    now = utcnow() if now is None else now
    query = (
        select(_sched.c.configuration_id, _sched.c.next_run_at, _cfg)
        .select_from(_sched.join(_cfg, _cfg.c.id == _sched.c.configuration_id))
        .where(_sched.c.next_run_at <= now, *_due_condition(now))
        .order_by(_sched.c.next_run_at)
        .limit(limit)
    )
    if tx.dialect.name == "postgresql":
        query = query.with_for_update(of=_sched, skip_locked=True)
    claimed: list[ClaimedCheck] = []
    lease_until = now + timedelta(seconds=runtime.settings.lease_seconds)
    for row in tx.execute(query).all():
        slot = as_utc(row.next_run_at)
        interval = float(row.interval_seconds)
        tx.execute(update(_sched).where(_sched.c.configuration_id == row.configuration_id)
                   .values(next_run_at=runtime.next_run_at(now, interval),
                           lease_owner=owner, lease_until=lease_until, last_run_at=now))
        claimed.append(ClaimedCheck(slot=slot, check=CheckConfiguration(
            id=row.id, name=row.name, strategy=row.strategy, config=dict(row.config or {}),
            interval_seconds=interval, paused=bool(row.paused))))
    return claimed


def release_in(tx: Connection, check_id: str, owner: str) -> None:
    """Drop `owner`'s lease on a check (its run is recorded, or it is shutting down)."""
    tx.execute(update(_sched).where(_sched.c.configuration_id == check_id,
                                    _sched.c.lease_owner == owner)
               .values(lease_owner=None, lease_until=None))


def release_all_in(tx: Connection, owner: str) -> int:
    """Drop every lease `owner` holds; how many."""
    result = tx.execute(update(_sched).where(_sched.c.lease_owner == owner)
                        .values(lease_owner=None, lease_until=None))
    return int(result.rowcount or 0)


class CheckScheduler:
    """Runs due checks of one host in its task group until stopped."""

    def __init__(self, *, service: HealthService, runtime: HealthRuntime, owner: str) -> None:
        self._service = service
        self._runtime = runtime
        self._owner = owner
        self._db = runtime.require_host().db
        self._wake = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self._stopped = anyio.Event()
        self.in_flight = 0
        self.runs_recorded = 0

    def wake(self) -> None:
        """Look for due checks now."""
        self._wake.set()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                  ) -> None:
        """Claim and run due checks until cancelled or stopped."""
        settings = self._runtime.settings
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                async with anyio.create_task_group() as tg:
                    task_status.started()
                    while True:
                        await self._claim_and_start(tg)
                        await self._sleep(settings.tick_seconds)
        finally:
            self._stopped.set()

    def _claimable(self) -> int:
        """How many runs to claim now: the free slots, or 0 to let them gather.

        Under load, claims are made in batches (a quarter of the slots) rather than one
        claim transaction per finished run.
        """
        limit = self._runtime.settings.max_concurrency
        free = limit - self.in_flight
        if free <= 0 or (self.in_flight and free < max(1, limit // 4)):
            return 0
        return free

    async def _claim_and_start(self, tg: anyio.abc.TaskGroup) -> None:
        free = self._claimable()
        if not free:
            return
        now = utcnow()
        try:
            due = await self._db.read(next_due_in, now)
            if due is None or due > now:
                return
            claimed = await self._db.run(lambda tx: claim_due_in(
                tx, runtime=self._runtime, owner=self._owner, limit=free))
        except Exception:  # noqa: BLE001 - keep scheduling; the database may come back
            logger.exception("could not claim due health checks")
            return
        for item in claimed:
            self.in_flight += 1
            tg.start_soon(self._execute, item)

    async def _sleep(self, tick: float) -> None:
        timeout = tick
        if self._claimable():
            now = utcnow()
            try:
                due = await self._db.read(next_due_in, now)
            except Exception:  # noqa: BLE001 - sleep a tick instead
                due = None
            if due is not None:
                timeout = min(tick, max((due - now).total_seconds(), 0.0))
        if timeout > 0:
            with anyio.move_on_after(timeout):
                await self._wake.wait()
        if self._wake.is_set():
            self._wake = anyio.Event()

    async def _execute(self, item: ClaimedCheck) -> None:
        check = item.check
        try:
            started = utcnow()
            outcome = await self._runtime.execute(check)

            def record(tx: Connection) -> int:
                ids = self._service.record_run_in(tx, check.id, outcome, timestamp=started)
                release_in(tx, check.id, self._owner)
                return len(ids)

            recorded = await self._db.run(record)
            self.runs_recorded += recorded
        except UnknownCheck:
            logger.debug("health check %s was deleted while it ran; run dropped", check.id)
        except Exception:  # noqa: BLE001 - one failed run must not stop the scheduler
            logger.exception("could not record a run of health check %s", check.id)
            try:
                await self._db.run(release_in, check.id, self._owner)
            except Exception:  # noqa: BLE001 - the lease expires on its own
                logger.exception("could not release the lease of health check %s", check.id)
        finally:
            self.in_flight -= 1
            self.wake()

    async def stop(self) -> None:
        """Cancel runs in flight, wait for the loop to end, release this instance's leases."""
        if self._scope is not None:
            self._scope.cancel()
            await self._stopped.wait()
        with anyio.CancelScope(shield=True):
            try:
                await self._db.run(release_all_in, self._owner)
            except Exception:  # noqa: BLE001 - the leases expire on their own
                logger.exception("could not release health check leases on shutdown")
