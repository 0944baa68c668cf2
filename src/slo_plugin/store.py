"""Every statement on the SLO plugin's tables: objectives, downtime events, streaks,
maintenance windows, snapshots, achievements and digests.

Functions take the unit of work's connection (`tx`) and return the plugin's values;
nothing here decides anything (see `downtime` for the rules).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import repeat
from operator import add
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

from .engine import EventColumns
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

_OBJECTIVE_FIELDS = ("id", "system_id", "health_check_configuration_id", "target",
                     "window_days", "dependency_exclusion", "excluded_dependency_ids",
                     "burn_rate_thresholds", "exclude_maintenance")
# Untyped (no result processing): the row's raw values are the parse cache's key.
_OBJECTIVE_COLUMNS: list[Any] = [literal_column(f"{_o.name}.{name}") for name in _OBJECTIVE_FIELDS]
_PARSED: dict[Any, Objective] = {}
"""Objectives parsed from their rows, by the row's raw values: validating one costs ten
times more than reading its row, and a read of many objectives parses each again."""
_PARSED_MAX = 100_000


def _objective(row: Any) -> Objective:
    key: Any = tuple(row)
    try:
        parsed = _PARSED.get(key)
    except TypeError:  # PostgreSQL's driver hands JSON over decoded: unhashable
        key = repr(key)
        parsed = _PARSED.get(key)
    if parsed is None:
        fields = dict(zip(_OBJECTIVE_FIELDS, row, strict=True))
        for name in ("excluded_dependency_ids", "burn_rate_thresholds"):
            if isinstance(fields[name], str):
                fields[name] = json.loads(fields[name])
        fields["excluded_dependency_ids"] = tuple(fields["excluded_dependency_ids"] or ())
        fields["exclude_maintenance"] = bool(fields["exclude_maintenance"])
        parsed = Objective.model_validate(fields)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = parsed
    return parsed


def _objectives_select() -> Any:
    return select(*_OBJECTIVE_COLUMNS).select_from(_o)


def objective_in(tx: Connection, objective_id: str) -> Objective | None:
    """The objective `objective_id`, or None."""
    row = tx.execute(_objectives_select().where(_o.c.id == objective_id)).first()
    return None if row is None else _objective(row)


def objectives_in(tx: Connection, ids: Iterable[str] | None = None, *,
                  system_ids: Iterable[str] | None = None) -> list[Objective]:
    """Objectives by id (all when `ids` and `system_ids` are None), sorted by id."""
    query = _objectives_select().order_by(_o.c.id)
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


_EVENT_COLUMNS: list[Any] = [literal_column(name) for name in (
    "objective_id", "started_at", "ended_at", "attribution", "upstream_system_id",
    "upstream_system_name")]


def window_events_in(tx: Connection, objective_ids: Sequence[str], since: datetime, *,
                     upstreams: bool = True) -> dict[str, EventColumns]:
    """Each objective's events that overlap `[since, …)`, oldest first, as columns.

    With `upstreams` False the upstream ids and names are not read (all None): what a
    budget needs.
    """
    found = dict(iter_window_events_in(tx, objective_ids, since, upstreams=upstreams))
    return {oid: found[oid] if oid in found else EventColumns([], [], [], [], [])
            for oid in objective_ids}


def iter_window_events_in(tx: Connection, objective_ids: Sequence[str], since: datetime, *,
                          upstreams: bool = True) -> Iterator[tuple[str, EventColumns]]:
    """`window_events_in` one objective at a time, as soon as its events are read,
    objectives without events left out.

    Read untyped and parsed here (SQLAlchemy's timestamp processing costs more than the
    query on SQLite), a chunk of rows at a time and a column at a time, in C where it
    can be: transposed, parsed, then cut per objective (rows come grouped by
    objective). Nothing read lives long: holding thousands of rows, or every
    objective's events, at once would have the garbage collector promote them, and a
    read of many objectives then pay for a full collection.
    """
    if not objective_ids:
        return
    # Untyped columns (no result processing); the bound `since` keeps its type.
    columns = _EVENT_COLUMNS if upstreams else _EVENT_COLUMNS[:4]
    query = (select(*columns).select_from(_e)
             .where(_e.c.objective_id.in_(list(objective_ids)),
                    or_(_e.c.ended_at.is_(None), _e.c.ended_at > since))
             .order_by(_e.c.objective_id, _e.c.started_at, _e.c.id))
    current: tuple[str, EventColumns] | None = None
    for chunk in tx.execute(query).partitions(_CHUNK_ROWS):
        columns_of = list(zip(*chunk, strict=True))
        starts, ends = _stamps(columns_of[1]), _stamps(columns_of[2])
        attributions = list(map(_ATTRIBUTIONS.__getitem__, columns_of[3]))
        first = 0
        for oid, count in Counter(columns_of[0]).items():
            last = first + count
            if current is None or current[0] != oid:
                if current is not None:
                    yield current
                current = (oid, EventColumns([], [], [], [], []))
            into = current[1]
            into.starts.extend(starts[first:last])
            into.ends.extend(ends[first:last])
            into.attributions.extend(attributions[first:last])
            if upstreams:
                into.upstream_ids.extend(columns_of[4][first:last])
                into.upstream_names.extend(columns_of[5][first:last])
            else:
                into.upstream_ids.extend([None] * count)
                into.upstream_names.extend([None] * count)
            first = last
    if current is not None:
        yield current


_CHUNK_ROWS = 512


_UTC_SUFFIX = repeat("+00:00")


def _stamps(values: Sequence[Any]) -> list[Any]:
    """`_stamp` of each value (None stays None); naive UTC text, the common case, in one
    pass of C."""
    if not values or not isinstance(values[0], str) or len(values[0]) > 26:
        return [None if value is None else _stamp(value) for value in values]
    missing = [index for index, value in enumerate(values) if value is None] \
        if None in values else []
    text = list(values)
    for index in missing:
        text[index] = text[0]
    try:
        parsed: list[Any] = list(map(datetime.fromisoformat, map(add, text, _UTC_SUFFIX)))
    except (TypeError, ValueError):  # mixed forms: one at a time
        return [None if value is None else _stamp(value) for value in values]
    for index in missing:
        parsed[index] = None
    return parsed


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
