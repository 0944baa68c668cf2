"""Scheduled jobs (once per cluster per slot) and the log retention job."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import anyio
from sqlalchemy import Connection, and_, delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError

from ._entities import utcnow
from ._registry import Job
from ._schedule import slot_key
from ._schema import (
    entity_changes,
    entity_deliveries,
    entity_transitions,
    job_runs,
    work_queue_routes,
)

if TYPE_CHECKING:
    from ._host import Host

logger = logging.getLogger("reactive_core.jobs")


def _claim_slot(tx: Connection, job: str, slot: str, instance: str) -> bool:
    if tx.execute(select(job_runs.c.job).where(job_runs.c.job == job,
                                               job_runs.c.slot == slot)).first():
        return False
    try:
        with tx.begin_nested():
            tx.execute(insert(job_runs).values(job=job, slot=slot, instance=instance,
                                               started_at=utcnow()))
    except IntegrityError:
        return False
    return True


def _finish_slot(tx: Connection, job: str, slot: str, error: str | None) -> None:
    tx.execute(update(job_runs).where(job_runs.c.job == job, job_runs.c.slot == slot)
               .values(finished_at=utcnow(), error=error))


class Scheduler:
    """Runs each registered job at its slots; the `job_runs` row decides who runs a slot."""

    def __init__(self, *, host: Host, instance: str, clock: Callable[[], datetime] = utcnow) -> None:
        self._host = host
        self._instance = instance
        self._clock = clock

    async def run(self) -> None:
        """Run every job forever (until cancelled), each in its own task."""
        async with anyio.create_task_group() as tg:
            for job in self._host.registry.jobs.values():
                tg.start_soon(self._loop, job)

    async def _loop(self, job: Job) -> None:
        # The latest slot due at startup runs if nobody ran it (a missed midnight job
        # catches up); then every following slot.
        slot = job.schedule.slot_at(self._clock())
        while True:
            if slot is not None:
                await self.run_slot(job, slot)
            after = slot if slot is not None else self._clock()
            slot = job.schedule.next_after(after)
            delay = (slot - self._clock()).total_seconds()
            if delay > 0:
                await anyio.sleep(delay)

    async def run_slot(self, job: Job, slot: datetime) -> bool:
        """Run `job` for `slot` unless another instance already has; True if it ran here."""
        db = self._host.db
        key = slot_key(slot)
        try:
            claimed = await db.run(_claim_slot, job.name, key, self._instance)
        except Exception:  # noqa: BLE001 - try again at the next slot
            logger.exception("could not claim slot %s of job %s", key, job.name)
            return False
        if not claimed:
            return False
        error: str | None = None
        try:
            await job.fn(self._host, slot)
        except Exception as exc:  # noqa: BLE001 - recorded on the job_runs row
            error = f"{type(exc).__name__}: {exc}"
            logger.exception("job %s failed for slot %s", job.name, key)
        await db.run(_finish_slot, job.name, key, error)
        return True


def prune_logs(tx: Connection, *, older_than: datetime) -> dict[str, int]:
    """Delete changes, transitions and finished deliveries older than `older_than`.

    The newest transition of every (kind, entity, field) is always kept, so
    `in_state_since` never goes blank; changes with unfinished deliveries are kept.
    """
    t = entity_transitions
    newer = t.alias("newer")
    has_newer = exists().where(
        newer.c.kind == t.c.kind, newer.c.entity_id == t.c.entity_id,
        newer.c.field == t.c.field,
        (newer.c.transitioned_at > t.c.transitioned_at)
        | and_(newer.c.transitioned_at == t.c.transitioned_at, newer.c.id > t.c.id),
    )
    transitions = tx.execute(
        delete(t).where(t.c.transitioned_at < older_than, has_newer)
    ).rowcount
    d = entity_deliveries
    deliveries = tx.execute(
        delete(d).where(d.c.status == "done", d.c.finished_at < older_than)
    ).rowcount
    c = entity_changes
    unfinished = exists().where(d.c.change_seq == c.c.seq, d.c.status != "done")
    changes = tx.execute(
        delete(c).where(c.c.occurred_at < older_than, ~unfinished)
    ).rowcount
    runs = tx.execute(
        delete(job_runs).where(job_runs.c.started_at < older_than)
    ).rowcount
    # Routes no instance refreshed within the retention period: their group is gone.
    tx.execute(delete(work_queue_routes).where(work_queue_routes.c.last_seen_at < older_than))
    return {"changes": int(changes), "transitions": int(transitions),
            "deliveries": int(deliveries), "job_runs": int(runs)}


def retention_job(retention: timedelta) -> Callable[[Host, datetime], Awaitable[None]]:
    """The built-in job that prunes the logs to `retention`."""

    async def prune(host: Host, slot: datetime) -> None:
        counts = await host.db.run(lambda tx: prune_logs(tx, older_than=utcnow() - retention))
        logger.info("retention pruned %s", counts)

    prune.__qualname__ = "retention"
    return prune



