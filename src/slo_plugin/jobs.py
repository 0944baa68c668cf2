"""The SLO plugin's scheduled jobs, once per cluster: the daily round and the weekly
digest; and the achievements a recovery may have earned.

**Daily** (`slo-daily`, UTC midnight). The run at `slot` closes the UTC day before
`slot`'s date (`closed_day`): the midnight run of 3 November closes 2 November. Each
objective, in a unit of work of its own (one that fails is logged and the others go
on; the job then raises, so the runner gives it its one retry and records the error):

1. its open event is reconciled with live health (an orphan closes at the moment
   health recovered);
2. one snapshot per (objective, closed day) from its status at that moment;
   `streak_days` is the streak before this run's update;
3. its streak, once per closed day (`last_date`): not breaching and no open downtime
   adds a day; breaching resets it to 0 (the best streak and the day it ended are
   kept); open downtime that does not breach (yet) leaves it as it is — the day is
   neither clean nor lost, and the budget judges it once the outage is over. The
   streak counts the days the job judged: a day no instance ran is not counted.

All three are one mutation of the objective's `slo` entity, so `currentStreak` and
`bestStreak` move in its change log. A second run for the same day writes nothing.
Then each system's achievements (a unit of work per system), then the retention of
downtime events: closed events that ended before the longest objective window go.

**Achievements** of a system are judged on all its objectives (see
`achievement_context`) and unlocked once each (`milestones.unlock_in`): creating the
`slo-achievement` entity fires `slo.achievement_unlocked`. The recovery handler calls
`evaluate_achievements_for` too, so `rapid_recovery` does not wait for midnight.

**Weekly digest** (`slo-weekly-digest`, Monday 09:00 UTC): the `slo-digest` entity of
the ISO week the run's slot falls in (`2026-W48`), once: counts of objectives breaching,
at risk (not breaching, at most 20 % of the budget left) and healthy, and the top and
worst three by budget left (ties by objective id; with fewer than six objectives the
two lists share some). Without objectives there is no digest.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from reactive_core import after_commit

from . import store
from .achievements import Achievement, AchievementContext, evaluate_achievements
from .derivers import ACHIEVEMENT_KIND, DIGEST_KIND
from .engine import EventLike
from .milestones import DigestEntry, DigestState, unlock_in
from .models import Attribution, Objective, SloStatus, as_utc
from .service import SloError

if TYPE_CHECKING:
    from reactive_core import EntityHandle, Host

    from .service import SloService

logger = logging.getLogger("slo_plugin.jobs")

DAILY_JOB = "slo-daily"
DAILY_CRON = "0 0 * * *"
WEEKLY_DIGEST_JOB = "slo-weekly-digest"
WEEKLY_DIGEST_CRON = "0 9 * * 1"
AT_RISK_PERCENT = 20.0
"""Budget left at or below which a non-breaching objective is at risk."""
DIGEST_SIZE = 3
"""How many objectives the digest's top and worst lists name."""


def closed_day(slot: datetime) -> date:
    """The UTC day the daily run at `slot` closes: the last whole day before it."""
    return as_utc(slot).date() - timedelta(days=1)


def iso_week(slot: datetime) -> str:
    """The ISO week `slot` falls in, as `2026-W48`."""
    year, week, _ = as_utc(slot).isocalendar()
    return f"{year}-W{week:02d}"


def next_streak(streak: store.Streak, day: date, status: SloStatus) -> store.Streak:
    """The streak after judging `day` on `status` (unchanged when `day` was judged)."""
    if streak.last_date is not None and streak.last_date >= day:
        return streak
    if status.is_breaching:
        return replace(streak, current=0, last_date=day)
    if status.has_open_downtime:
        return replace(streak, last_date=day)
    current = streak.current + 1
    if current > streak.best:
        return store.Streak(current=current, best=current, best_end=day, last_date=day)
    return replace(streak, current=current, last_date=day)


def snapshot_values(status: SloStatus, streak_before: store.Streak, taken_at: datetime,
                    ) -> dict[str, Any]:
    """The columns of a daily snapshot (besides objective and date)."""
    return {"availability": status.current_availability,
            "budget_remaining_percent": status.error_budget_remaining_percent,
            "consumed_minutes": status.error_budget_consumed_minutes,
            "is_breaching": status.is_breaching, "streak_days": streak_before.current,
            "taken_at": taken_at}


def _outages(events: Sequence[EventLike]) -> list[tuple[datetime, datetime | None]]:
    """Events merged where they touch or overlap (a split is one outage, as are the
    events several objectives of a system record for it); None ends an open one."""
    merged: list[tuple[datetime, datetime | None]] = []
    for event in sorted(events, key=lambda e: e.start):
        if merged:
            start, end = merged[-1]
            if end is None or event.start <= end:
                merged[-1] = (start, None if end is None or event.end is None
                              else max(end, event.end))
                continue
        merged.append((event.start, event.end))
    return merged


def achievement_context(statuses: Sequence[SloStatus], streaks: Sequence[store.Streak],
                        events: Sequence[EventLike]) -> AchievementContext:
    """What a system's achievements are judged on, from its objectives' statuses, their
    streaks and their events in their windows.

    The streak is the longest current one, the availability the best, the budget
    the least left; `fastest_recovery_seconds` is the shortest closed outage, an
    outage being the system's events merged where they touch (the closed half of a
    split is not a recovery).
    """
    closed = [(end - start).total_seconds() for start, end in _outages(events)
              if end is not None]
    return AchievementContext(
        objective_count=len(statuses),
        streak_days=max((s.current for s in streaks), default=0),
        best_availability=max((s.current_availability for s in statuses), default=0.0),
        budget_remaining_percent=min(
            (s.error_budget_remaining_percent for s in statuses), default=0.0),
        has_zero_downtime=not events,
        has_upstream_only_downtime=bool(events) and all(
            e.attribution is Attribution.UPSTREAM for e in events),
        fastest_recovery_seconds=min(closed, default=None))


def build_digest(week: str, rows: Sequence[tuple[Objective, SloStatus, str | None]],
                 ) -> DigestState:
    """The digest of `week` from each objective's status and its system's name."""
    breaching = sum(1 for _, s, _ in rows if s.is_breaching)
    at_risk = sum(1 for _, s, _ in rows if not s.is_breaching
                  and s.error_budget_remaining_percent <= AT_RISK_PERCENT)
    entries = [DigestEntry(objective_id=o.id, system_id=o.system_id, system_name=name,
                           budget_remaining_percent=s.error_budget_remaining_percent,
                           availability=s.current_availability) for o, s, name in rows]
    top = sorted(entries, key=lambda e: (-e.budget_remaining_percent, e.objective_id))
    worst = sorted(entries, key=lambda e: (e.budget_remaining_percent, e.objective_id))
    return DigestState(week=week, objectives=len(rows), breaching=breaching, at_risk=at_risk,
                       healthy=len(rows) - breaching - at_risk,
                       top=tuple(top[:DIGEST_SIZE]), worst=tuple(worst[:DIGEST_SIZE]))


class SloJobs:
    """The daily and weekly jobs of one host's SLO plugin, and achievements on demand."""

    def __init__(self, *, host: Host, service: SloService) -> None:
        self._host = host
        self._service = service
        self._achievements: EntityHandle[Any] = host.entity(ACHIEVEMENT_KIND)
        self._digests: EntityHandle[DigestState] = host.entity(DIGEST_KIND)

    # -- daily ------------------------------------------------------------------------------

    async def daily(self, host: Host, slot: datetime) -> None:
        """The `slo-daily` job (signature `(host, slot)`): see the module's docstring."""
        day = closed_day(slot)
        failed: list[str] = []
        for objective_id in await self._host.read(store.objective_ids_in):
            try:
                await self._host.run(self._close_day_in, objective_id, day)
            except Exception:
                logger.exception("slo-daily: objective %s failed for %s", objective_id, day)
                failed.append(f"objective {objective_id}")
        for system_id in await self._host.read(store.objective_system_ids_in):
            try:
                await self._host.run(self._unlock_in, system_id)
            except Exception:
                logger.exception("slo-daily: achievements of system %s failed", system_id)
                failed.append(f"achievements of {system_id}")
        try:
            pruned = await self._host.run(self._prune_in)
            logger.info("slo-daily %s: pruned %d downtime events", day, pruned)
        except Exception:
            logger.exception("slo-daily: pruning downtime events failed")
            failed.append("retention")
        if failed:
            raise SloError(f"slo-daily for {day}: {len(failed)} unit(s) failed ("
                           f"{', '.join(failed)}); the others were done, see the log")

    def _close_day_in(self, tx: Connection, objective_id: str, day: date) -> None:
        """Reconcile, snapshot and streak of one objective for `day`, as one mutation."""
        service = self._service
        now = self._host.clock()

        def write(inner: Connection) -> None:
            objective = store.objective_in(inner, objective_id)
            if objective is None:
                return
            service._rules.reconcile_in(inner, objective, now)
            found = service.reader.statuses_in(inner, [objective_id], now).get(objective_id)
            if found is None:
                return
            _, status = found
            streak = store.streaks_in(inner, [objective_id]).get(objective_id, store.Streak())
            if not store.snapshot_exists_in(inner, objective_id, day):
                store.insert_snapshot_in(inner, objective_id, day,
                                         snapshot_values(status, streak, now))
            after = next_streak(streak, day, status)
            if after != streak:
                store.save_streak_in(inner, objective_id, after)

        service._mutate_in(tx, objective_id, write, reason=f"daily job for {day}")

    def _prune_in(self, tx: Connection) -> int:
        """Delete closed downtime events that ended before the longest objective window."""
        longest = store.longest_window_in(tx)
        if longest is None:
            return 0
        return store.prune_events_in(tx, self._host.clock() - timedelta(days=longest))

    # -- achievements -----------------------------------------------------------------------

    async def evaluate_achievements_for(self, system_id: str) -> None:
        """Unlock what the system's objectives have earned (each achievement once; its
        entity's creation fires `slo.achievement_unlocked`). Called on recovery."""
        await self._host.run(self._unlock_in, system_id)

    def _unlock_in(self, tx: Connection, system_id: str) -> list[Achievement]:
        """Unlock the system's earned achievements inside `tx`; the newly unlocked ones."""
        now = self._host.clock()
        objectives = store.objectives_in(tx, system_ids=[system_id])
        if not objectives:
            return []
        ids = [o.id for o in objectives]
        statuses = self._service.reader.statuses_in(tx, ids, now)
        streaks = store.streaks_in(tx, ids)
        longest = max(o.window_days for o in objectives)
        events = store.window_events_in(tx, ids, now - timedelta(days=longest))
        in_window = [e for o in objectives for e in events[o.id]
                     if e.end is None or e.end > now - timedelta(days=o.window_days)]
        ctx = achievement_context([s for _, s in statuses.values()],
                                  [streaks.get(i, store.Streak()) for i in ids], in_window)
        after_commit(tx, self._service.invalidate)
        return [a for a in evaluate_achievements(ctx)
                if unlock_in(tx, self._achievements, system_id, a.value, now)]

    # -- weekly digest ----------------------------------------------------------------------

    async def weekly_digest(self, host: Host, slot: datetime) -> None:
        """The `slo-weekly-digest` job (signature `(host, slot)`)."""
        digest = await self._host.run(self._digest_in, iso_week(slot))
        if digest is not None:
            logger.info("slo digest %s: %d objectives, %d breaching, %d at risk",
                        digest.week, digest.objectives, digest.breaching, digest.at_risk)

    def _digest_in(self, tx: Connection, week: str) -> DigestState | None:
        """Create the digest of `week` unless it exists or there is no objective."""
        self._digests.lock_in(tx, week)
        if store.digest_exists_in(tx, week):
            return None
        ids = store.objective_ids_in(tx)
        if not ids:
            return None
        now = self._host.clock()
        statuses = self._service.reader.statuses_in(tx, ids, now)
        names = self._service.surroundings.names_in(
            tx, sorted({o.system_id for o, _ in statuses.values()}))
        digest = build_digest(week, [(o, s, names.get(o.system_id))
                                     for o, s in statuses.values()])
        after_commit(tx, self._service.invalidate)

        def apply(inner: Connection, _prev: object) -> DigestState | None:
            store.insert_digest_in(inner, week, digest.model_dump(mode="json"), now)
            return self._digests.get_in(inner, week)

        return self._digests.mutate_in(tx, week, apply, reason=f"weekly digest {week}")
