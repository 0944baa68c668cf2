"""Every statement on the SLO plugin's tables: objectives, downtime events, streaks,
maintenance windows, snapshots, achievements and digests.

Functions take the unit of work's connection (`tx`) and return the plugin's values;
nothing here decides anything (see `downtime` for the rules).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)

from .models import Attribution, DowntimeEvent, MaintenanceWindow, Objective
from .schema import (
    slo_achievements,
    slo_digests,
    slo_downtime_events,
    slo_maintenance_windows,
    slo_objectives,
    slo_snapshots,
    slo_streaks,
)

_o = slo_objectives
_e = slo_downtime_events
_s = slo_streaks
_m = slo_maintenance_windows
_snap = slo_snapshots
_ach = slo_achievements


def utc(value: datetime) -> datetime:
    """`value` as an aware UTC datetime (SQLite hands back naive UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value if value.tzinfo is UTC else value.astimezone(UTC)


# -- objectives ---------------------------------------------------------------------------

def _objective(row: Any) -> Objective:
    return Objective.model_validate({
        "id": row.id, "system_id": row.system_id,
        "health_check_configuration_id": row.health_check_configuration_id,
        "target": row.target, "window_days": row.window_days,
        "dependency_exclusion": row.dependency_exclusion,
        "excluded_dependency_ids": tuple(row.excluded_dependency_ids or ()),
        "burn_rate_thresholds": row.burn_rate_thresholds,
        "exclude_maintenance": row.exclude_maintenance,
    })


def objective_in(tx: Connection, objective_id: str) -> Objective | None:
    """The objective `objective_id`, or None."""
    row = tx.execute(select(_o).where(_o.c.id == objective_id)).first()
    return None if row is None else _objective(row)


def objectives_in(tx: Connection, ids: Iterable[str] | None = None, *,
                  system_ids: Iterable[str] | None = None) -> list[Objective]:
    """Objectives by id (all when `ids` and `system_ids` are None), sorted by id."""
    query = select(_o).order_by(_o.c.id)
    if ids is not None:
        query = query.where(_o.c.id.in_(list(ids)))
    if system_ids is not None:
        query = query.where(_o.c.system_id.in_(list(system_ids)))
    return [_objective(row) for row in tx.execute(query)]


def objective_ids_in(tx: Connection) -> list[str]:
    """Every objective id, sorted."""
    return list(tx.execute(select(_o.c.id).order_by(_o.c.id)).scalars())


def save_objective_in(tx: Connection, objective: Objective, now: datetime) -> None:
    """Insert or replace `objective` (its system and check are checked by the caller)."""
    values = {
        "system_id": objective.system_id,
        "health_check_configuration_id": objective.health_check_configuration_id,
        "target": objective.target, "window_days": objective.window_days,
        "dependency_exclusion": objective.dependency_exclusion.value,
        "excluded_dependency_ids": list(objective.excluded_dependency_ids),
        "burn_rate_thresholds": objective.burn_rate_thresholds.model_dump(),
        "exclude_maintenance": objective.exclude_maintenance,
        "updated_at": now,
    }
    updated = tx.execute(update(_o).where(_o.c.id == objective.id).values(**values))
    if not updated.rowcount:
        tx.execute(insert(_o).values(id=objective.id, created_at=now, **values))


def delete_objective_in(tx: Connection, objective_id: str) -> None:
    """Delete the objective with its events, snapshots and streak."""
    tx.execute(delete(_e).where(_e.c.objective_id == objective_id))
    tx.execute(delete(_snap).where(_snap.c.objective_id == objective_id))
    tx.execute(delete(_s).where(_s.c.objective_id == objective_id))
    tx.execute(delete(_o).where(_o.c.id == objective_id))


# -- downtime events ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A downtime event as stored: its id and objective, and the event itself."""

    id: int
    objective_id: str
    event: DowntimeEvent

    @property
    def is_open(self) -> bool:
        return self.event.end is None


def _event(row: Any) -> StoredEvent:
    # Rows this module wrote: built without validating them again (the hot path of every
    # status read, thousands of events per objective).
    return StoredEvent(id=int(row.id), objective_id=row.objective_id,
                       event=DowntimeEvent.model_construct(
        start=utc(row.started_at), end=None if row.ended_at is None else utc(row.ended_at),
        attribution=_ATTRIBUTIONS[row.attribution], upstream_system_id=row.upstream_system_id,
        upstream_system_name=row.upstream_system_name))


_ATTRIBUTIONS = {a.value: a for a in Attribution}


def open_event_in(tx: Connection, objective_id: str) -> StoredEvent | None:
    """The objective's open event (at most one), or None."""
    row = tx.execute(select(_e).where(_e.c.objective_id == objective_id,
                                      _e.c.ended_at.is_(None))).first()
    return None if row is None else _event(row)


def open_events_in(tx: Connection) -> list[StoredEvent]:
    """Every open event, by objective."""
    return [_event(row) for row in tx.execute(
        select(_e).where(_e.c.ended_at.is_(None)).order_by(_e.c.objective_id))]


def covered_in(tx: Connection, objective_id: str, at: datetime) -> bool:
    """True when a (closed) event of the objective already covers instant `at`."""
    row = tx.execute(select(_e.c.id).where(
        _e.c.objective_id == objective_id, _e.c.started_at <= at,
        or_(_e.c.ended_at.is_(None), _e.c.ended_at > at)).limit(1)).first()
    return row is not None


def start_event_in(tx: Connection, objective_id: str, start: datetime,
                   attribution: Attribution, upstream_id: str | None = None,
                   upstream_name: str | None = None) -> None:
    """Open an event of the objective at `start`."""
    tx.execute(insert(_e).values(
        objective_id=objective_id, started_at=start, ended_at=None, duration_seconds=None,
        attribution=attribution.value, upstream_system_id=upstream_id,
        upstream_system_name=upstream_name))


def end_event_in(tx: Connection, event: StoredEvent, end: datetime) -> None:
    """Close `event` at `end` (never before its start)."""
    end = max(end, event.event.start)
    tx.execute(update(_e).where(_e.c.id == event.id).values(
        ended_at=end, duration_seconds=(end - event.event.start).total_seconds()))


def insert_closed_event_in(tx: Connection, objective_id: str, start: datetime, end: datetime,
                           attribution: Attribution) -> None:
    """Record an event that started and ended before anyone could open it."""
    tx.execute(insert(_e).values(
        objective_id=objective_id, started_at=start, ended_at=end,
        duration_seconds=(end - start).total_seconds(), attribution=attribution.value))


class Downtime:
    """A downtime event as the read path loads it: the attributes `compute_status`
    reads, without a model's validation (storage wrote it from a validated event)."""

    __slots__ = ("attribution", "end", "start", "upstream_system_id", "upstream_system_name")

    def __init__(self, start: datetime, end: datetime | None, attribution: Attribution,
                 upstream_system_id: str | None, upstream_system_name: str | None) -> None:
        self.start = start
        self.end = end
        self.attribution = attribution
        self.upstream_system_id = upstream_system_id
        self.upstream_system_name = upstream_system_name


def window_events_in(tx: Connection, objective_ids: Sequence[str], since: datetime,
                     ) -> dict[str, list[Downtime]]:
    """Each objective's events that overlap `[since, …)`, oldest first.

    Read untyped and parsed here: SQLAlchemy's timestamp processing costs more than the
    query on SQLite (every status read loads thousands of events).
    """
    found: dict[str, list[Downtime]] = {oid: [] for oid in objective_ids}
    if not objective_ids:
        return found
    # Untyped columns (no result processing); the bound `since` keeps its type.
    columns: list[Any] = [literal_column(name) for name in (
        "objective_id", "started_at", "ended_at", "attribution", "upstream_system_id",
        "upstream_system_name")]
    query = (select(*columns).select_from(_e)
             .where(_e.c.objective_id.in_(list(objective_ids)),
                    or_(_e.c.ended_at.is_(None), _e.c.ended_at > since))
             .order_by(_e.c.objective_id, _e.c.started_at, _e.c.id))
    for oid, start, end, attribution, upstream_id, upstream_name in tx.execute(query).all():
        found[oid].append(Downtime(_stamp(start), None if end is None else _stamp(end),
                                   _ATTRIBUTIONS[attribution], upstream_id, upstream_name))
    return found


def _stamp(value: Any) -> datetime:
    """A timestamp as the driver hands it over untyped (SQLite: naive UTC ISO text) as
    aware UTC."""
    if isinstance(value, str):
        if len(value) <= 26:  # no offset: the naive UTC text SQLAlchemy stores
            return datetime.fromisoformat(value + "+00:00")
        value = datetime.fromisoformat(value)
    return utc(value)


def events_in(tx: Connection, objective_id: str, *, limit: int = 50,
              before_id: int | None = None) -> list[StoredEvent]:
    """The objective's events, newest first."""
    query = select(_e).where(_e.c.objective_id == objective_id)
    if before_id is not None:
        query = query.where(_e.c.id < before_id)
    return [_event(row) for row in tx.execute(
        query.order_by(_e.c.started_at.desc(), _e.c.id.desc()).limit(limit))]


def prune_events_in(tx: Connection, older_than: datetime) -> int:
    """Delete closed events that ended before `older_than`; how many."""
    return int(tx.execute(delete(_e).where(_e.c.ended_at.is_not(None),
                                           _e.c.ended_at < older_than)).rowcount or 0)


# -- streaks --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Streak:
    """An objective's streak of days not breaching without open downtime."""

    current: int = 0
    best: int = 0
    best_end: date | None = None
    last_date: date | None = None


def streaks_in(tx: Connection, objective_ids: Sequence[str]) -> dict[str, Streak]:
    """Each objective's streak (absent ones are zero)."""
    if not objective_ids:
        return {}
    return {row.objective_id: Streak(row.current_streak, row.best_streak, row.best_streak_end,
                                     row.last_date)
            for row in tx.execute(select(_s).where(_s.c.objective_id.in_(list(objective_ids))))}


def save_streak_in(tx: Connection, objective_id: str, streak: Streak) -> None:
    """Insert or replace the objective's streak."""
    values = {"current_streak": streak.current, "best_streak": streak.best,
              "best_streak_end": streak.best_end, "last_date": streak.last_date}
    updated = tx.execute(update(_s).where(_s.c.objective_id == objective_id).values(**values))
    if not updated.rowcount:
        tx.execute(insert(_s).values(objective_id=objective_id, **values))


# -- maintenance windows -------------------------------------------------------------------

def maintenance_in(tx: Connection, system_ids: Sequence[str], since: datetime,
                   ) -> dict[str, list[MaintenanceWindow]]:
    """Each system's maintenance windows ending after `since` (cancelled ones included)."""
    found: dict[str, list[MaintenanceWindow]] = {sid: [] for sid in system_ids}
    if not system_ids:
        return found
    query = (select(_m).where(_m.c.system_id.in_(list(system_ids)), _m.c.ends_at > since)
             .order_by(_m.c.system_id, _m.c.starts_at))
    for row in tx.execute(query):
        found[row.system_id].append(MaintenanceWindow(
            start=utc(row.starts_at), end=utc(row.ends_at), cancelled=row.cancelled))
    return found


def save_maintenance_in(tx: Connection, window_id: str, system_id: str,
                        window: MaintenanceWindow) -> bool:
    """Insert or replace maintenance window `window_id`; True when something changed."""
    row = tx.execute(select(_m).where(_m.c.id == window_id)).first()
    values = {"system_id": system_id, "starts_at": window.start, "ends_at": window.end,
              "cancelled": window.cancelled}
    if row is None:
        tx.execute(insert(_m).values(id=window_id, **values))
        return True
    same = (row.system_id == system_id and utc(row.starts_at) == window.start
            and utc(row.ends_at) == window.end and row.cancelled == window.cancelled)
    if not same:
        tx.execute(update(_m).where(_m.c.id == window_id).values(**values))
    return not same


# -- snapshots -----------------------------------------------------------------------------

def snapshot_exists_in(tx: Connection, objective_id: str, day: date) -> bool:
    return tx.execute(select(_snap.c.objective_id).where(
        _snap.c.objective_id == objective_id, _snap.c.date == day)).first() is not None


def insert_snapshot_in(tx: Connection, objective_id: str, day: date, values: dict[str, Any],
                       ) -> None:
    tx.execute(insert(_snap).values(objective_id=objective_id, date=day, **values))


def snapshots_in(tx: Connection, objective_id: str, start: date | None, end: date | None,
                 ) -> list[Any]:
    """The objective's snapshots in `[start, end]` (inclusive), oldest first."""
    query = select(_snap).where(_snap.c.objective_id == objective_id)
    if start is not None:
        query = query.where(_snap.c.date >= start)
    if end is not None:
        query = query.where(_snap.c.date <= end)
    return list(tx.execute(query.order_by(_snap.c.date)))


# -- achievements ----------------------------------------------------------------------------

def achievements_in(tx: Connection, system_ids: Sequence[str] | None = None) -> list[Any]:
    """Unlocked achievements (of `system_ids`, or all), newest first."""
    query = select(_ach)
    if system_ids is not None:
        query = query.where(_ach.c.system_id.in_(list(system_ids)))
    return list(tx.execute(query.order_by(_ach.c.unlocked_at.desc(), _ach.c.id.desc())))


def achievement_rows_in(tx: Connection, keys: Sequence[str]) -> list[Any]:
    """Achievement rows by their entity ids (`key`)."""
    if not keys:
        return []
    return list(tx.execute(select(_ach).where(_ach.c.key.in_(list(keys)))))


def unlocked_in(tx: Connection, system_id: str) -> set[str]:
    return set(tx.execute(select(_ach.c.achievement).where(
        _ach.c.system_id == system_id)).scalars())


def insert_achievement_in(tx: Connection, key: str, system_id: str, achievement: str,
                          now: datetime) -> None:
    """Record an unlock."""
    tx.execute(insert(_ach).values(key=key, system_id=system_id, achievement=achievement,
                                   unlocked_at=now))


def achievement_keys_in(tx: Connection, system_id: str) -> list[str]:
    """The entity ids of a system's achievements."""
    return sorted(tx.execute(select(_ach.c.key).where(_ach.c.system_id == system_id)).scalars())


def delete_achievement_in(tx: Connection, key: str) -> None:
    tx.execute(delete(_ach).where(_ach.c.key == key))


def count_events_in(tx: Connection, objective_id: str) -> int:
    return int(tx.execute(select(func.count()).select_from(_e).where(
        _e.c.objective_id == objective_id)).scalar_one())


# -- for the jobs ----------------------------------------------------------------------------

def objective_system_ids_in(tx: Connection) -> list[str]:
    """The systems that have objectives, sorted (read without parsing the objectives)."""
    return list(tx.execute(select(_o.c.system_id).distinct().order_by(_o.c.system_id))
                .scalars())


def longest_window_in(tx: Connection) -> int | None:
    """The longest objective window in days; None without objectives."""
    value = tx.execute(select(func.max(_o.c.window_days))).scalar()
    return None if value is None else int(value)


def digest_exists_in(tx: Connection, week: str) -> bool:
    """True when the digest of ISO week `week` was written."""
    return tx.execute(select(slo_digests.c.week).where(
        slo_digests.c.week == week)).first() is not None


def insert_digest_in(tx: Connection, week: str, digest: dict[str, Any], now: datetime,
                     ) -> None:
    """Record the digest of `week` (its JSON form)."""
    tx.execute(insert(slo_digests).values(week=week, digest=digest, sent_at=now))


def maintenance_window_in(tx: Connection, window_id: str,
                          ) -> tuple[str, MaintenanceWindow] | None:
    """Maintenance window `window_id` with its system id, or None."""
    row = tx.execute(select(_m).where(_m.c.id == window_id)).first()
    if row is None:
        return None
    return row.system_id, MaintenanceWindow(start=utc(row.starts_at), end=utc(row.ends_at),
                                            cancelled=row.cancelled)
