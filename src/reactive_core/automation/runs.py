"""Every statement on the engine's tables: runs and their modes, the waits of the wake
index, window gates and load errors."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from .._clock import as_utc, as_utc_or_none
from .model import Mode, Ref, Rule, Window
from .schema import (
    automation_load_errors,
    automation_runs,
    automation_waits,
    automation_window_hits,
    automation_window_latches,
)

_r = automation_runs


class RunStatus(StrEnum):
    """Where a run is. The first three are active; the others final."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    NOT_MET = "not_met"
    """Its conditions did not hold: nothing ran (kept so operators see why)."""


ACTIVE = (RunStatus.QUEUED.value, RunStatus.RUNNING.value, RunStatus.WAITING.value)
STARTED = (RunStatus.RUNNING.value, RunStatus.WAITING.value)


@dataclass(frozen=True)
class Run:
    """One run of a rule: what triggered it, what its conditions said, each step."""

    id: int
    rule_id: str
    occurrence: str
    status: RunStatus
    rule_digest: str
    trigger: dict[str, Any]
    conditions: list[dict[str, Any]]
    trace: list[dict[str, Any]]
    cursor: list[int]
    waiting: dict[str, Any] | None
    error: str | None
    owner: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None

    @property
    def active(self) -> bool:
        return self.status.value in ACTIVE


def run_from_row(row: Any) -> Run:
    return Run(
        id=int(row.id), rule_id=row.rule_id, occurrence=row.occurrence,
        status=RunStatus(row.status), rule_digest=row.rule_digest, trigger=row.trigger,
        conditions=list(row.conditions), trace=list(row.trace), cursor=list(row.cursor),
        waiting=row.waiting, error=row.error, owner=row.owner,
        lease_expires_at=as_utc_or_none(row.lease_expires_at),
        created_at=as_utc(row.created_at), started_at=as_utc_or_none(row.started_at),
        updated_at=as_utc(row.updated_at), finished_at=as_utc_or_none(row.finished_at))


def jsonable(value: Any) -> Any:
    """`value` as plain JSON data (datetimes and other objects as text)."""
    return json.loads(json.dumps(value, default=str, allow_nan=False))


# -- runs -------------------------------------------------------------------------------

def get_run(tx: Connection, run_id: int) -> Run | None:
    row = tx.execute(select(_r).where(_r.c.id == run_id)).first()
    return None if row is None else run_from_row(row)


def find_run(tx: Connection, rule_id: str, occurrence: str) -> Run | None:
    row = tx.execute(select(_r).where(_r.c.rule_id == rule_id,
                                      _r.c.occurrence == occurrence)).first()
    return None if row is None else run_from_row(row)


def list_runs(tx: Connection, *, rule_id: str | None = None, limit: int = 50,
              before: int | None = None) -> list[Run]:
    """Runs newest first, optionally of one rule."""
    query = select(_r).order_by(_r.c.id.desc()).limit(limit)
    if rule_id is not None:
        query = query.where(_r.c.rule_id == rule_id)
    if before is not None:
        query = query.where(_r.c.id < before)
    return [run_from_row(r) for r in tx.execute(query)]


def active_runs(tx: Connection, rule_id: str) -> list[Run]:
    return [run_from_row(r) for r in tx.execute(
        select(_r).where(_r.c.rule_id == rule_id, _r.c.status.in_(ACTIVE)).order_by(_r.c.id))]


def start_status(rule: Rule, active: Sequence[Run]) -> tuple[RunStatus, str | None]:
    """What a new occurrence becomes under the rule's mode, with the reason when it
    does not run now. `restart` cancels the active runs (the caller does)."""
    started = [r for r in active if r.status.value in STARTED]
    queued = [r for r in active if r.status is RunStatus.QUEUED]
    if rule.mode is Mode.SINGLE and started:
        return RunStatus.SKIPPED, f"single: run {started[0].id} is still active"
    if rule.mode is Mode.PARALLEL and len(started) >= rule.max:
        return RunStatus.SKIPPED, f"parallel: {len(started)} runs active (max {rule.max})"
    if rule.mode is Mode.QUEUED and (started or queued):
        if len(queued) >= rule.max:
            return RunStatus.SKIPPED, f"queued: {len(queued)} runs waiting (max {rule.max})"
        return RunStatus.QUEUED, None
    return RunStatus.RUNNING, None


def insert_run(tx: Connection, *, rule: Rule, occurrence: str, status: RunStatus,
               trigger: dict[str, Any], conditions: list[dict[str, Any]], now: datetime,
               owner: str | None = None, lease: float = 0.0, error: str | None = None,
               ) -> int:
    final = status.value not in ACTIVE
    result = tx.execute(insert(_r).values(
        rule_id=rule.id, occurrence=occurrence, status=status.value, rule_digest=rule.digest,
        trigger=jsonable(trigger), conditions=jsonable(conditions), trace=[], cursor=[0],
        waiting=None, error=error, owner=owner,
        lease_expires_at=(now + timedelta(seconds=lease)) if owner else None,
        created_at=now, started_at=now if status is RunStatus.RUNNING else None,
        updated_at=now, finished_at=now if final else None))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def claim_run(tx: Connection, run_id: int, owner: str, now: datetime, lease: float) -> Run | None:
    """Take run `run_id` to drive it: it must be started and not leased by someone else."""
    result = tx.execute(update(_r).where(
        _r.c.id == run_id, _r.c.status.in_(STARTED),
        or_(_r.c.owner.is_(None), _r.c.owner == owner, _r.c.lease_expires_at < now),
    ).values(owner=owner, lease_expires_at=now + timedelta(seconds=lease), updated_at=now))
    if not result.rowcount:
        return None
    return get_run(tx, run_id)


def save_progress(tx: Connection, run: Run, owner: str, now: datetime, lease: float, *,
                  cursor: list[int], trace: list[dict[str, Any]],
                  status: RunStatus = RunStatus.RUNNING, waiting: dict[str, Any] | None = None,
                  error: str | None = None, release: bool = False) -> bool:
    """Record a step; False when the run is no longer ours (cancelled, taken over)."""
    final = status.value not in ACTIVE
    values: dict[str, Any] = {
        "cursor": cursor, "trace": jsonable(trace), "status": status.value,
        "waiting": jsonable(waiting), "error": error, "updated_at": now,
        "owner": None if (release or final) else owner,
        "lease_expires_at": None if (release or final) else now + timedelta(seconds=lease)}
    if final:
        values["finished_at"] = now
    result = tx.execute(update(_r).where(
        _r.c.id == run.id, _r.c.owner == owner, _r.c.status.in_(STARTED)).values(**values))
    return bool(result.rowcount)


def wake_waiting(tx: Connection, run_id: int, now: datetime) -> None:
    """Make a waiting run claimable again (its step timer drives it)."""
    tx.execute(update(_r).where(_r.c.id == run_id, _r.c.status == RunStatus.WAITING.value)
               .values(status=RunStatus.RUNNING.value, updated_at=now))


def cancel_runs(tx: Connection, run_ids: Iterable[int], now: datetime, reason: str) -> list[int]:
    """Cancel active runs; returns those that were."""
    ids = list(run_ids)
    if not ids:
        return []
    result = tx.execute(update(_r).where(_r.c.id.in_(ids), _r.c.status.in_(ACTIVE)).values(
        status=RunStatus.CANCELLED.value, error=reason, owner=None, lease_expires_at=None,
        waiting=None, finished_at=now, updated_at=now).returning(_r.c.id))
    cancelled = [int(i) for i in result.scalars()]
    clear_waits(tx, cancelled)
    return cancelled


def next_queued(tx: Connection, rule_id: str, now: datetime) -> int | None:
    """Start the oldest queued run of the rule (FIFO); its id."""
    row = tx.execute(select(_r.c.id).where(_r.c.rule_id == rule_id,
                                            _r.c.status == RunStatus.QUEUED.value)
                     .order_by(_r.c.id).limit(1)).first()
    if row is None:
        return None
    tx.execute(update(_r).where(_r.c.id == row.id).values(
        status=RunStatus.RUNNING.value, started_at=now, updated_at=now))
    return int(row.id)


def trim_runs(tx: Connection, rule_id: str, keep: int) -> int:
    """Delete the rule's finished runs beyond the newest `keep`."""
    cutoff = tx.execute(select(_r.c.id).where(_r.c.rule_id == rule_id)
                        .order_by(_r.c.id.desc()).offset(keep).limit(1)).scalar()
    if cutoff is None:
        return 0
    result = tx.execute(delete(_r).where(_r.c.rule_id == rule_id, _r.c.id <= cutoff,
                                         _r.c.status.not_in(ACTIVE)))
    return int(result.rowcount or 0)


# -- the wake index of waiting runs -----------------------------------------------------

def add_waits(tx: Connection, run_id: int, refs: Iterable[Ref]) -> None:
    rows = [{"run_id": run_id, "kind": k, "entity_id": i} for k, i in sorted(set(refs))]
    clear_waits(tx, [run_id])
    if rows:
        tx.execute(insert(automation_waits), rows)


def clear_waits(tx: Connection, run_ids: Sequence[int]) -> None:
    if run_ids:
        tx.execute(delete(automation_waits).where(automation_waits.c.run_id.in_(run_ids)))


def waiting_on(tx: Connection, kind: str, entity_id: str) -> list[int]:
    """Runs waiting on entity `kind:id` (or on any entity of the kind, or anything)."""
    w = automation_waits
    return sorted({int(i) for i in tx.execute(select(w.c.run_id).where(or_(
        and_(w.c.kind == kind, w.c.entity_id.in_([entity_id, "*"])),
        w.c.kind == "*"))).scalars()})


# -- window gates -----------------------------------------------------------------------

def window_passes(tx: Connection, rule_id: str, trigger: int, partition: str,
                  window: Window, now: datetime) -> tuple[bool, int]:
    """Count this occurrence and decide whether it goes through: (passes, count)."""
    h, latch = automation_window_hits, automation_window_latches
    since = now - timedelta(minutes=window.minutes)
    key = and_(h.c.rule_id == rule_id, h.c.trigger == trigger, h.c.partition == partition)
    tx.execute(delete(h).where(key, h.c.occurred_at <= since))
    tx.execute(insert(h).values(rule_id=rule_id, trigger=trigger, partition=partition,
                                occurred_at=now))
    count = int(tx.execute(select(func.count()).select_from(h).where(key)).scalar_one())
    if window.refire == "every":
        return count >= window.count, count
    lkey = and_(latch.c.rule_id == rule_id, latch.c.trigger == trigger,
                latch.c.partition == partition)
    latched = tx.execute(select(latch.c.fired_at).where(lkey)).first()
    if latched is not None:
        if count - 1 >= window.count:  # it never fell below the count since it fired
            return False, count
        tx.execute(delete(latch).where(lkey))
    if count >= window.count:
        tx.execute(insert(latch).values(rule_id=rule_id, trigger=trigger, partition=partition,
                                        fired_at=now))
        return True, count
    return False, count


def forget_rule_state(tx: Connection, rule_id: str) -> None:
    """Drop a changed or removed rule's window counts."""
    for table in (automation_window_hits, automation_window_latches):
        tx.execute(delete(table).where(table.c.rule_id == rule_id))


# -- load errors ------------------------------------------------------------------------

def replace_load_errors(tx: Connection, origin: str, errors: Sequence[dict[str, Any]],
                        now: datetime) -> None:
    e = automation_load_errors
    tx.execute(delete(e).where(e.c.origin == origin))
    if errors:
        tx.execute(insert(e), [{**err, "origin": origin, "recorded_at": now} for err in errors])


def load_errors(tx: Connection) -> list[dict[str, Any]]:
    e = automation_load_errors
    return [dict(r._mapping) for r in tx.execute(select(e).order_by(e.c.origin, e.c.id))]
