"""The SLO plugin's jobs: the daily round (reconcile, snapshot, streak, achievements,
retention), achievements on recovery, and the weekly digest.

The registered job functions are called directly with their slot, the host's clock set
to that slot; health moves through recorded check runs and the handlers run on
`host.drain()`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from catalog_plugin import Catalog, CatalogPlugin
from health_plugin import CheckOutcome, HealthPlugin, HealthStatus, Thresholds, health_service
from reactive_core import Host
from slo_plugin import (
    ACHIEVEMENT_KIND,
    ACHIEVEMENT_UNLOCKED,
    DIGEST_KIND,
    SLO_KIND,
    WEEKLY_DIGEST,
    Attribution,
    DowntimeEvent,
    Objective,
    SloError,
    SloPlugin,
    compute_status,
    slo_service,
)
from slo_plugin.jobs import achievement_context, closed_day, iso_week, next_streak
from slo_plugin.schema import slo_objectives
from slo_plugin.store import Streak

pytestmark = pytest.mark.anyio

EAGER = Thresholds(degraded_min_failures=1, unhealthy_min_failures=1)
DOWN = CheckOutcome(status=HealthStatus.UNHEALTHY, latency_ms=1.0)
UP = CheckOutcome(status=HealthStatus.HEALTHY, latency_ms=1.0)
T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # a Monday
MIDNIGHT = datetime(2026, 11, 3, tzinfo=UTC)   # the first daily slot after T0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class World:
    """Catalog systems with one check each; the SLO service and its jobs."""

    def __init__(self, host: Host, clock: Clock) -> None:
        self.host = host
        self.clock = clock
        self.health = health_service(host)
        self.slo = slo_service(host)

    async def build(self, *systems: str, edges: tuple[tuple[str, str], ...] = (),
                    names: dict[str, str] | None = None) -> None:
        catalog = Catalog(self.host)
        for system in systems:
            await catalog.upsert_system(system, name=(names or {}).get(system, system.upper()))
            await self.health.upsert_check(f"{system}-check", strategy="tcp",
                                           config={"host": "127.0.0.1", "port": 9})
            await self.health.associate(system, f"{system}-check", thresholds=EAGER)
        for source, target in edges:
            await catalog.add_dependency(source, target)

    async def set(self, system: str, up: bool, at: datetime) -> None:
        self.clock.now = at
        await self.health.record_run(f"{system}-check", UP if up else DOWN, timestamp=at)
        await self.host.drain()

    async def objective(self, oid: str, system: str, **fields: Any) -> str:
        fields = {"target": 99.9, "window_days": 30, **fields}
        await self.slo.upsert_objective(Objective(id=oid, system_id=system, **fields))
        return oid

    async def daily(self, slot: datetime) -> None:
        self.clock.now = slot
        await self.host.registry.jobs["slo-daily"].fn(self.host, slot)
        await self.host.drain()

    async def weekly(self, slot: datetime) -> None:
        self.clock.now = slot
        await self.host.registry.jobs["slo-weekly-digest"].fn(self.host, slot)
        await self.host.drain()

    async def unlocked(self) -> list[tuple[str, str]]:
        """(entity id, trigger ids) of every achievement change, in order."""
        return [(c.id, ",".join(self.host.derive_triggers(c)))
                for c in await self.host.changes(kind=ACHIEVEMENT_KIND)]


@pytest.fixture
async def world(sqlite_url: str, anyio_backend: str) -> AsyncIterator[World]:
    clock = Clock()
    async with Host(database_url=sqlite_url, clock=clock, entry_points=False,
                    plugins=[CatalogPlugin, HealthPlugin, SloPlugin],
                    config={"poll_interval": 0.05, "retry_base_seconds": 0.01,
                            "run_jobs": False,
                            "plugins": {"health": {"scheduler": False}}}) as host:
        yield World(host, clock)


def day(n: int) -> datetime:
    """The n-th daily slot after T0 (n = 1: midnight at the end of T0's day)."""
    return MIDNIGHT + timedelta(days=n - 1)


# -- registration and days ------------------------------------------------------------------

async def test_the_jobs_are_registered_once_per_cluster_on_their_utc_schedules(
    world: World,
) -> None:
    jobs = world.host.registry.jobs
    assert jobs["slo-daily"].cron == "0 0 * * *"
    assert jobs["slo-weekly-digest"].cron == "0 9 * * 1"
    assert jobs["slo-daily"].plugin == jobs["slo-weekly-digest"].plugin == "slo"


def test_a_daily_run_closes_the_day_before_its_slot_and_a_digest_names_its_iso_week(
) -> None:
    assert closed_day(datetime(2026, 11, 3, tzinfo=UTC)) == date(2026, 11, 2)
    assert closed_day(datetime(2026, 1, 1, tzinfo=UTC)) == date(2025, 12, 31)
    assert iso_week(datetime(2026, 11, 23, 9, tzinfo=UTC)) == "2026-W48"
    assert iso_week(datetime(2027, 1, 4, 9, tzinfo=UTC)) == "2027-W01"
    assert iso_week(datetime(2021, 1, 4, 9, tzinfo=UTC)) == "2021-W01"


# -- streaks ----------------------------------------------------------------------------------

def _status(*, breaching: bool = False, open_downtime: bool = False) -> Any:
    objective = Objective(id="o", system_id="s", target=99, window_days=1)
    end = None if open_downtime else T0
    minutes = 20 if breaching else 1
    events = [DowntimeEvent(start=T0 - timedelta(minutes=minutes), end=end,
                            attribution="self")]
    return compute_status(objective, events, now=T0, currently_down=open_downtime)


def test_the_streak_rule_adds_resets_or_keeps_once_per_day() -> None:
    clean, breaching, open_not_breaching = (
        _status(), _status(breaching=True), _status(open_downtime=True))
    assert not open_not_breaching.is_breaching and open_not_breaching.has_open_downtime
    d1, d2, d3, d4 = (date(2026, 11, n) for n in (1, 2, 3, 4))
    s = next_streak(Streak(), d1, clean)
    assert s == Streak(current=1, best=1, best_end=d1, last_date=d1)
    assert next_streak(s, d1, clean) == s  # the same day again: nothing
    s = next_streak(s, d2, clean)
    assert s == Streak(current=2, best=2, best_end=d2, last_date=d2)
    s = next_streak(s, d3, open_not_breaching)
    assert s == Streak(current=2, best=2, best_end=d2, last_date=d3)
    s = next_streak(s, d4, breaching)
    assert s == Streak(current=0, best=2, best_end=d2, last_date=d4)
    assert next_streak(s, d3, clean) == s  # an older day after a newer one: nothing


async def test_streaks_over_several_days_through_the_daily_job(world: World) -> None:
    await world.build("api")
    # 99 % over one day: 14.4 minutes allowed.
    oid = await world.objective("api-slo", "api", target=99, window_days=1)
    await world.daily(day(1))
    await world.daily(day(2))
    streak = await world.slo.streak(oid)
    assert streak == Streak(current=2, best=2, best_end=date(2026, 11, 3),
                            last_date=date(2026, 11, 3))
    # Down 10 minutes before midnight and still down: not breaching, not clean.
    await world.set("api", up=False, at=day(3) - timedelta(minutes=10))
    await world.daily(day(3))
    assert await world.slo.streak(oid) == Streak(
        current=2, best=2, best_end=date(2026, 11, 3), last_date=date(2026, 11, 4))
    # Still down a day later: breaching, reset; the best streak is kept.
    await world.daily(day(4))
    assert await world.slo.streak(oid) == Streak(
        current=0, best=2, best_end=date(2026, 11, 3), last_date=date(2026, 11, 5))
    await world.set("api", up=True, at=day(4) + timedelta(minutes=5))
    await world.daily(day(5))  # 5 minutes in the window: clean again
    assert await world.slo.streak(oid) == Streak(
        current=1, best=2, best_end=date(2026, 11, 3), last_date=date(2026, 11, 6))

    changes = (await world.host.changes(kind=SLO_KIND, entity_id=oid))[1:]  # after create
    streaks = [(c.next or {}).get("currentStreak") for c in changes
               if "currentStreak" in c.changed_fields]
    assert streaks == [1, 2, 0, 1]
    assert [(c.next or {}).get("bestStreak") for c in changes
            if "bestStreak" in c.changed_fields] == [1, 2]


# -- snapshots ----------------------------------------------------------------------------------

async def test_a_snapshot_holds_the_status_at_the_run_and_the_streak_before_it(
    world: World,
) -> None:
    await world.build("api")
    oid = await world.objective("api-slo", "api")
    await world.daily(day(1))
    await world.set("api", up=False, at=day(1) + timedelta(hours=1))
    await world.set("api", up=True, at=day(1) + timedelta(hours=1, minutes=10))
    await world.daily(day(2))
    first, second = await world.slo.snapshots(oid)
    assert (first.date, first.streak_days, first.consumed_minutes) == (date(2026, 11, 2), 0, 0)
    assert first.availability == 100 and first.budget_remaining_percent == 100
    assert second.date == date(2026, 11, 3)
    assert second.streak_days == 1  # the streak before the run that made it 2
    assert second.consumed_minutes == pytest.approx(10)
    assert second.availability == pytest.approx((43200 - 10) / 43200 * 100)
    assert second.budget_remaining_percent == pytest.approx(76.85185185185185)
    assert second.is_breaching is False
    assert (await world.slo.streak(oid)) == Streak(
        current=2, best=2, best_end=date(2026, 11, 3), last_date=date(2026, 11, 3))

    await world.set("api", up=False, at=day(2) + timedelta(hours=1))
    await world.set("api", up=True, at=day(2) + timedelta(hours=1, minutes=50))
    await world.daily(day(3))
    third = (await world.slo.snapshots(oid, start=date(2026, 11, 4)))[0]
    assert third.is_breaching is True and third.budget_remaining_percent == 0
    assert third.consumed_minutes == pytest.approx(60)


async def test_a_second_run_for_the_same_day_writes_nothing(world: World) -> None:
    await world.build("api")
    oid = await world.objective("api-slo", "api")
    await world.daily(day(1))
    before = await world.host.changes()
    snapshots = await world.slo.snapshots(oid)
    await world.daily(day(1))
    world.clock.now = day(1) + timedelta(hours=3)  # a late retry of the same slot
    await world.host.registry.jobs["slo-daily"].fn(world.host, day(1))
    assert await world.host.changes() == before
    assert await world.slo.snapshots(oid) == snapshots
    assert len(snapshots) == 1
    assert (await world.slo.streak(oid)) == Streak(
        current=1, best=1, best_end=date(2026, 11, 2), last_date=date(2026, 11, 2))


async def test_the_daily_job_closes_an_orphaned_event_when_health_recovered(
    world: World,
) -> None:
    await world.build("api")
    oid = await world.objective("api-slo", "api")
    await world.set("api", up=False, at=T0 + timedelta(minutes=2))
    # Recovery recorded without the handlers running (as if the instance died).
    world.clock.now = T0 + timedelta(minutes=7)
    await world.health.record_run("api-check", UP, timestamp=world.clock.now)
    await world.host.run(lambda tx: tx.exec_driver_sql(
        "DELETE FROM entity_deliveries WHERE status = 'pending'"))
    await world.daily(day(1))
    (event,) = await world.slo.events(oid)
    assert (event.start, event.end) == (T0 + timedelta(minutes=2), T0 + timedelta(minutes=7))
    (snapshot,) = await world.slo.snapshots(oid)
    assert snapshot.consumed_minutes == pytest.approx(5)
    assert (await world.slo.streak(oid) or Streak()).current == 1  # no open downtime


# -- one failing objective ----------------------------------------------------------------------

async def test_a_failing_objective_does_not_stop_the_others(world: World) -> None:
    await world.build("a", "b", "c")
    for system in ("a", "b", "c"):
        await world.objective(f"{system}-slo", system)
    # b's row can no longer be read as an objective (warning above critical).
    await world.host.run(lambda tx: tx.execute(
        update(slo_objectives).where(slo_objectives.c.id == "b-slo").values(
            burn_rate_thresholds={"warning": 90, "critical": 10,
                                  "fast_burn_multiplier": 5})))
    with pytest.raises(SloError, match=r"objective b-slo.*achievements of b"):
        await world.daily(day(1))
    for good in ("a-slo", "c-slo"):
        assert [s.date for s in await world.slo.snapshots(good)] == [date(2026, 11, 2)]
        assert (await world.slo.streak(good) or Streak()).current == 1
    assert {c.id.split(":")[0] for c in await world.host.changes(kind=ACHIEVEMENT_KIND)} == {
        "a", "c"}


# -- achievements -------------------------------------------------------------------------------

async def test_every_unlock_fires_once_from_the_daily_job_and_on_recovery(
    world: World,
) -> None:
    await world.build("api")
    await world.objective("api-slo", "api")
    await world.daily(day(1))
    first = ["api:first_steps", "api:budget_miser", "api:clean_sheet"]
    assert await world.unlocked() == [(key, ACHIEVEMENT_UNLOCKED) for key in first]
    (change, *_) = await world.host.changes(kind=ACHIEVEMENT_KIND)
    assert world.host.trigger_payload(change)["systemName"] == "API"
    assert world.host.trigger_payload(change)["achievement"] == "first_steps"

    await world.daily(day(2))
    assert len(await world.unlocked()) == 3  # nothing twice

    # A two-minute outage: the recovery handler unlocks rapid_recovery at once.
    await world.set("api", up=False, at=day(2) + timedelta(hours=1))
    await world.set("api", up=True, at=day(2) + timedelta(hours=1, minutes=2))
    assert (await world.unlocked())[3:] == [("api:rapid_recovery", ACHIEVEMENT_UNLOCKED)]

    for n in range(3, 7):
        await world.daily(day(n))
    assert (await world.slo.streak("api-slo") or Streak()).current == 6
    assert len(await world.unlocked()) == 4  # 6 days: no iron_uptime yet
    await world.daily(day(7))
    assert (await world.unlocked())[4:] == [("api:iron_uptime", ACHIEVEMENT_UNLOCKED)]
    for n in (8, 9):
        await world.daily(day(n))
    await world.set("api", up=False, at=day(9) + timedelta(hours=1))
    await world.set("api", up=True, at=day(9) + timedelta(hours=1, minutes=1))
    assert len(await world.unlocked()) == 5
    assert [m.achievement for m in await world.slo.achievements("api")] == [
        "iron_uptime", "rapid_recovery", "clean_sheet", "budget_miser", "first_steps"]


async def test_upstream_only_downtime_and_full_coverage_unlock_on_recovery(
    world: World,
) -> None:
    await world.build("web", "api", edges=(("web", "api"),), names={"web": "Web shop"})
    for n in range(3):
        await world.objective(f"web-{n}", "web", dependency_exclusion="self-only")
    await world.set("api", up=False, at=T0 + timedelta(minutes=1))
    await world.set("web", up=False, at=T0 + timedelta(minutes=2))
    await world.set("web", up=True, at=T0 + timedelta(minutes=4))
    assert await world.unlocked() == [
        (f"web:{a}", ACHIEVEMENT_UNLOCKED) for a in (
            "first_steps", "full_coverage", "budget_miser", "cascade_breaker",
            "rapid_recovery")]
    changes = await world.host.changes(kind=ACHIEVEMENT_KIND)
    assert {world.host.trigger_payload(c)["systemName"] for c in changes} == {"Web shop"}


def test_a_split_outage_is_one_recovery_and_upstream_only_means_every_event() -> None:
    self_part = DowntimeEvent(start=T0, end=T0 + timedelta(minutes=2), attribution="self")
    upstream_part = DowntimeEvent(start=T0 + timedelta(minutes=2),
                                  end=T0 + timedelta(minutes=10), attribution="upstream",
                                  upstream_system_id="api")
    short = DowntimeEvent(start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=1, seconds=300),
                          attribution="upstream", upstream_system_id="api")
    still_open = DowntimeEvent(start=T0 + timedelta(hours=2), end=None,
                               attribution="upstream")
    status = _status()
    split = achievement_context([status], [Streak(current=3)], [self_part, upstream_part])
    assert split.fastest_recovery_seconds == 600  # not the 120 s of the self part
    assert not split.has_upstream_only_downtime and not split.has_zero_downtime
    both = achievement_context([status, status], [Streak(current=3), Streak(current=9)],
                               [upstream_part, short, still_open])
    assert both.fastest_recovery_seconds == 300
    assert both.has_upstream_only_downtime and both.objective_count == 2
    assert both.streak_days == 9
    none = achievement_context([status], [Streak()], [])
    assert none.has_zero_downtime and not none.has_upstream_only_downtime
    assert none.fastest_recovery_seconds is None
    assert achievement_context([status], [Streak()], [still_open]).fastest_recovery_seconds is None
    assert Attribution.UPSTREAM == still_open.attribution


# -- retention ----------------------------------------------------------------------------------

async def test_events_are_kept_as_long_as_the_longest_window(world: World) -> None:
    await world.build("a", "b")
    await world.objective("a-slo", "a", window_days=7)
    short = await world.objective("b-slo", "b", window_days=1)
    await world.set("b", up=False, at=T0)
    await world.set("b", up=True, at=T0 + timedelta(minutes=10))
    await world.set("b", up=False, at=T0 + timedelta(days=5))
    await world.set("b", up=True, at=T0 + timedelta(days=5, minutes=10))
    await world.set("b", up=False, at=T0 + timedelta(days=9))
    await world.daily(day(10))  # 7 days back: T0 + 2.5 d
    assert [(e.start, e.end) for e in await world.slo.events(short)] == [
        (T0 + timedelta(days=9), None),
        (T0 + timedelta(days=5), T0 + timedelta(days=5, minutes=10))]


# -- weekly digest ------------------------------------------------------------------------------

DIGEST_SLOT = datetime(2026, 11, 9, 9, tzinfo=UTC)  # Monday 09:00 UTC, week 46


async def test_the_digest_counts_and_orders_objectives_with_their_system_names(
    world: World,
) -> None:
    # 95 % over 30 days: 2,160 minutes allowed. Downtime minutes per system:
    outages = {"b": 216, "c": 1728, "d": 1727, "e": 2161, "g": 2160}
    names = {"a": "Alpha", "b": "Bravo", "c": "Charlie", "d": "Delta", "e": "Echo",
             "f": "Foxtrot", "g": "Golf"}
    await world.build(*names, names=names)
    for system in names:
        await world.objective(f"o-{system}", system, target=95)
    for system in outages:
        await world.set(system, up=False, at=T0)
    for system, minutes in sorted(outages.items(), key=lambda kv: kv[1]):
        await world.set(system, up=True, at=T0 + timedelta(minutes=minutes))
    await world.weekly(DIGEST_SLOT)

    (change,) = await world.host.changes(kind=DIGEST_KIND)
    assert change.id == "2026-W46"
    assert world.host.derive_triggers(change) == [WEEKLY_DIGEST]
    payload = world.host.trigger_payload(change)
    assert (payload["objectives"], payload["breaching"], payload["atRisk"],
            payload["healthy"]) == (7, 1, 2, 4)  # e; c (20 %) and g (0 %); a b d f

    def listed(entries: list[dict[str, Any]]) -> list[tuple[str, str, float]]:
        return [(e["objectiveId"], e["systemName"], e["budgetRemainingPercent"])
                for e in entries]

    assert listed(payload["top"]) == [("o-a", "Alpha", 100.0), ("o-f", "Foxtrot", 100.0),
                                      ("o-b", "Bravo", pytest.approx(90.0))]
    assert listed(payload["worst"]) == [("o-e", "Echo", 0.0), ("o-g", "Golf", 0.0),
                                        ("o-c", "Charlie", pytest.approx(20.0))]
    digest = await world.host.entity(DIGEST_KIND).get("2026-W46")
    assert digest is not None and digest.at_risk == 2 and digest.worst[0].system_id == "e"


async def test_the_digest_is_sent_once_per_week(world: World) -> None:
    await world.build("api")
    await world.objective("api-slo", "api")
    await world.weekly(DIGEST_SLOT)
    await world.weekly(DIGEST_SLOT)
    world.clock.now = DIGEST_SLOT + timedelta(days=1)  # a late retry of the same slot
    await world.host.registry.jobs["slo-weekly-digest"].fn(world.host, DIGEST_SLOT)
    assert [c.id for c in await world.host.changes(kind=DIGEST_KIND)] == ["2026-W46"]
    await world.weekly(DIGEST_SLOT + timedelta(days=7))
    assert [c.id for c in await world.host.changes(kind=DIGEST_KIND)] == [
        "2026-W46", "2026-W47"]


async def test_no_objectives_no_digest(world: World) -> None:
    await world.build("api")
    await world.weekly(DIGEST_SLOT)
    assert await world.host.changes(kind=DIGEST_KIND) == []
    assert await world.host.entity(DIGEST_KIND).ids() == []
