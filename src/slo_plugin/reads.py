"""The read side of `SloService`, served from the core's read-through cache.

Concurrent misses of one key load once; every engine write empties the cache before
any subscriber is woken (see `service`), so a read right after a downtime opened
never waits for a TTL to see it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection

from . import store
from .models import Objective, SloStatus

if TYPE_CHECKING:
    from reactive_core import Host, ReadThroughCache

    from .entity import SloReader
    from .surroundings import Surroundings


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectiveView:
    """An objective with its status now, its streak and its system's name."""

    objective: Objective
    status: SloStatus
    current_streak: int
    best_streak: int
    best_streak_end: date | None
    system_name: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EventView:
    """A downtime event as listed: newest first, with its duration so far."""

    id: int
    objective_id: str
    start: datetime
    end: datetime | None
    duration_seconds: float | None
    attribution: str
    upstream_system_id: str | None
    upstream_system_name: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """One objective's day: its status at the daily job."""

    objective_id: str
    date: date
    availability: float
    budget_remaining_percent: float
    consumed_minutes: float
    is_breaching: bool
    streak_days: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Milestone:
    """An unlocked achievement, with its system's name."""

    system_id: str
    system_name: str | None
    achievement: str
    unlocked_at: datetime


class SloReads:
    """Cached reads of objectives, events, snapshots, streaks and achievements."""

    _host: Host
    _cache: ReadThroughCache[object]
    _reader: SloReader
    _around: Surroundings

    def _views_in(self, tx: Connection, ids: list[str]) -> list[ObjectiveView]:
        statuses = self._reader.statuses_in(tx, ids)
        streaks = store.streaks_in(tx, list(statuses))
        names = self._around.names_in(tx, sorted({o.system_id for o, _ in statuses.values()}))
        views = []
        for oid in sorted(statuses):
            objective, status = statuses[oid]
            streak = streaks.get(oid, store.Streak())
            views.append(ObjectiveView(
                objective=objective, status=status, current_streak=streak.current,
                best_streak=streak.best, best_streak_end=streak.best_end,
                system_name=names.get(objective.system_id)))
        return views

    async def _cached(self, key: str, read: Any) -> Any:
        async def load() -> object:
            return await self._host.read(read)

        return await self._cache.get(key, load)

    async def objectives(self) -> list[ObjectiveView]:
        """Every objective with its status, by id."""
        return cast(list[ObjectiveView], await self._cached(
            "objectives", lambda tx: self._views_in(tx, store.objective_ids_in(tx))))

    async def objective(self, objective_id: str) -> ObjectiveView | None:
        """One objective with its status; None when there is none."""
        views = cast(list[ObjectiveView], await self._cached(
            f"objective:{objective_id}", lambda tx: self._views_in(tx, [objective_id])))
        return views[0] if views else None

    async def objectives_of(self, system_id: str) -> list[ObjectiveView]:
        """The objectives of one system, by id."""
        return (await self.objectives_of_many([system_id]))[system_id]

    async def objectives_of_many(self, system_ids: Iterable[str]) -> dict[str, list[ObjectiveView]]:
        """The objectives of each system (every requested id present, maybe empty)."""
        wanted = sorted(set(system_ids))

        def read(tx: Connection) -> dict[str, list[ObjectiveView]]:
            ids = [o.id for o in store.objectives_in(tx, system_ids=wanted)]
            found: dict[str, list[ObjectiveView]] = {sid: [] for sid in wanted}
            for view in self._views_in(tx, ids):
                found[view.objective.system_id].append(view)
            return found

        return cast(dict[str, list[ObjectiveView]], await self._cached(
            "systems:" + "\x1f".join(wanted), read))

    async def events(self, objective_id: str, *, limit: int = 50,
                     before_id: int | None = None) -> list[EventView]:
        """The objective's downtime events, newest first."""
        def read(tx: Connection) -> list[EventView]:
            return [EventView(
                id=e.id, objective_id=e.objective_id, start=e.event.start, end=e.event.end,
                duration_seconds=None if e.event.end is None
                else (e.event.end - e.event.start).total_seconds(),
                attribution=e.event.attribution.value,
                upstream_system_id=e.event.upstream_system_id,
                upstream_system_name=e.event.upstream_system_name)
                for e in store.events_in(tx, objective_id, limit=limit, before_id=before_id)]

        return cast(list[EventView], await self._cached(
            f"events:{objective_id}:{limit}:{before_id}", read))

    async def snapshots(self, objective_id: str, *, start: date | None = None,
                        end: date | None = None) -> list[Snapshot]:
        """The objective's daily snapshots in `[start, end]`, oldest first."""
        def read(tx: Connection) -> list[Snapshot]:
            return [Snapshot(
                objective_id=r.objective_id, date=r.date, availability=r.availability,
                budget_remaining_percent=r.budget_remaining_percent,
                consumed_minutes=r.consumed_minutes, is_breaching=r.is_breaching,
                streak_days=r.streak_days)
                for r in store.snapshots_in(tx, objective_id, start, end)]

        return cast(list[Snapshot], await self._cached(
            f"snapshots:{objective_id}:{start}:{end}", read))

    async def streak(self, objective_id: str) -> store.Streak | None:
        """The objective's streak; None when there is no such objective."""
        def read(tx: Connection) -> store.Streak | None:
            if store.objective_in(tx, objective_id) is None:
                return None
            return store.streaks_in(tx, [objective_id]).get(objective_id, store.Streak())

        return cast(store.Streak | None, await self._cached(f"streak:{objective_id}", read))

    async def achievements(self, system_id: str | None = None) -> list[Milestone]:
        """Unlocked achievements (of one system, or all), newest first."""
        return await self._milestones(None if system_id is None else [system_id], None)

    async def milestones(self, *, limit: int = 20) -> list[Milestone]:
        """The most recent unlocks across systems, with system names."""
        return await self._milestones(None, limit)

    async def _milestones(self, system_ids: list[str] | None, limit: int | None,
                          ) -> list[Milestone]:
        def read(tx: Connection) -> list[Milestone]:
            rows = store.achievements_in(tx, system_ids)
            if limit is not None:
                rows = rows[:limit]
            names = self._around.names_in(tx, sorted({r.system_id for r in rows}))
            return [Milestone(system_id=r.system_id, system_name=names.get(r.system_id),
                              achievement=r.achievement, unlocked_at=store.utc(r.unlocked_at))
                    for r in rows]

        return cast(list[Milestone], await self._cached(
            f"milestones:{system_ids}:{limit}", read))
