"""Downtime events from real `health` changes: opening, closing, attribution, splitting.

Health moves through recorded check runs (one failing run makes a system unhealthy
with these thresholds, one passing run heals it); the SLO plugin's work-queue handlers
run on `host.drain()`. A settable clock makes every event time exact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from catalog_plugin import Catalog, CatalogPlugin
from health_plugin import CheckOutcome, HealthPlugin, HealthStatus, Thresholds, health_service
from reactive_core import Host
from slo_plugin import (
    REFRESH_TOPIC,
    SLO_KIND,
    InvalidObjective,
    Objective,
    SloPlugin,
    slo_service,
)

pytestmark = pytest.mark.anyio

EAGER = Thresholds(degraded_min_failures=1, unhealthy_min_failures=1)
DOWN = CheckOutcome(status=HealthStatus.UNHEALTHY, latency_ms=1.0)
UP = CheckOutcome(status=HealthStatus.HEALTHY, latency_ms=1.0)
T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float) -> datetime:
        self.now += timedelta(minutes=minutes)
        return self.now


class World:
    """Systems web -> api -> db (web depends on api, api on db), each with one check."""

    def __init__(self, host: Host, clock: Clock) -> None:
        self.host = host
        self.clock = clock
        self.health = health_service(host)
        self.slo = slo_service(host)

    async def build(self, *systems: str, edges: tuple[tuple[str, str], ...] = ()) -> None:
        catalog = Catalog(self.host)
        for system in systems:
            await catalog.upsert_system(system, name=system.upper())
            await self.health.upsert_check(f"{system}-check", strategy="tcp",
                                           config={"host": "127.0.0.1", "port": 9})
            await self.health.associate(system, f"{system}-check", thresholds=EAGER)
        for source, target in edges:
            await catalog.add_dependency(source, target)

    async def set(self, system: str, up: bool, at_minutes: float | None = None) -> None:
        if at_minutes is not None:
            self.clock.now = T0 + timedelta(minutes=at_minutes)
        await self.health.record_run(f"{system}-check", UP if up else DOWN,
                                     timestamp=self.clock.now)
        await self.host.drain()

    async def objective(self, system: str, **fields: Any) -> str:
        oid = f"{system}-slo"
        await self.slo.upsert_objective(Objective(id=oid, system_id=system, target=99.9,
                                                  window_days=30, **fields))
        return oid

    async def events(self, oid: str) -> list[tuple[float, float | None, str, str | None]]:
        """(start, end) in minutes after T0, attribution and upstream, oldest first."""
        def minutes(at: datetime | None) -> float | None:
            return None if at is None else (at - T0).total_seconds() / 60

        rows = await self.slo.events(oid)
        return [(minutes(e.start), minutes(e.end), e.attribution, e.upstream_system_id)
                for e in reversed(rows)]  # type: ignore[misc]


@pytest.fixture
async def world(sqlite_url: str, anyio_backend: str) -> AsyncIterator[World]:
    clock = Clock()
    async with Host(database_url=sqlite_url, clock=clock, entry_points=False,
                    plugins=[CatalogPlugin, HealthPlugin, SloPlugin],
                    config={"poll_interval": 0.05, "retry_base_seconds": 0.01,
                            "run_jobs": False,
                            "plugins": {"health": {"scheduler": False}}}) as host:
        yield World(host, clock)


async def test_a_self_outage_opens_and_closes_one_event(world: World) -> None:
    await world.build("api")
    oid = await world.objective("api")
    await world.set("api", up=False, at_minutes=10)
    await world.set("api", up=True, at_minutes=25)
    assert await world.events(oid) == [(10, 25, "self", None)]
    state = await world.host.entity(SLO_KIND).get(oid)
    assert state is not None
    assert state.budget_remaining_percent == pytest.approx((43.2 - 15) / 43.2 * 100, rel=1e-9)


async def test_upstream_down_first_makes_the_downstream_event_upstream(world: World) -> None:
    await world.build("web", "api", edges=(("web", "api"),))
    oid = await world.objective("web", dependency_exclusion="self-only")
    await world.set("api", up=False, at_minutes=5)
    await world.set("web", up=False, at_minutes=6)
    assert await world.events(oid) == [(6, None, "upstream", "api")]
    (event,) = await world.slo.events(oid)
    assert event.upstream_system_name == "API"


async def test_upstream_down_during_a_self_outage_splits_it(world: World) -> None:
    await world.build("web", "api", edges=(("web", "api"),))
    oid = await world.objective("web", dependency_exclusion="self-only")
    await world.set("web", up=False, at_minutes=5)
    await world.set("api", up=False, at_minutes=8)
    assert await world.events(oid) == [(5, 8, "self", None), (8, None, "upstream", "api")]
    # The upstream recovers while web is still down: a self event reopens.
    await world.set("api", up=True, at_minutes=12)
    assert await world.events(oid) == [(5, 8, "self", None), (8, 12, "upstream", "api"),
                                       (12, None, "self", None)]
    await world.set("web", up=True, at_minutes=20)
    assert (await world.events(oid))[-1] == (12, 20, "self", None)


async def test_upstream_recovering_after_the_downstream_reopens_nothing(world: World) -> None:
    await world.build("web", "api", edges=(("web", "api"),))
    oid = await world.objective("web", dependency_exclusion="self-only")
    await world.set("api", up=False, at_minutes=5)
    await world.set("web", up=False, at_minutes=6)
    await world.set("web", up=True, at_minutes=9)
    await world.set("api", up=True, at_minutes=11)
    assert await world.events(oid) == [(6, 9, "upstream", "api")]


async def test_strict_objectives_never_split_and_excluded_upstreams_are_ignored(
    world: World,
) -> None:
    await world.build("web", "api", "db", edges=(("web", "api"), ("web", "db")))
    strict = await world.objective("web")
    await world.slo.upsert_objective(Objective(
        id="web-excluding", system_id="web", target=99.9, window_days=30,
        dependency_exclusion="self-only", excluded_dependency_ids=("api",)))
    await world.set("web", up=False, at_minutes=5)
    await world.set("api", up=False, at_minutes=8)
    assert await world.events(strict) == [(5, None, "self", None)]
    assert await world.events("web-excluding") == [(5, None, "self", None)]
    await world.set("db", up=False, at_minutes=9)  # not excluded: splits
    assert await world.events("web-excluding") == [(5, 9, "self", None),
                                                   (9, None, "upstream", "db")]
    assert await world.events(strict) == [(5, None, "self", None)]


async def test_another_upstream_still_down_takes_over_the_blame(world: World) -> None:
    await world.build("web", "api", "db", edges=(("web", "api"), ("web", "db")))
    oid = await world.objective("web", dependency_exclusion="self-only")
    await world.set("api", up=False, at_minutes=1)
    await world.set("db", up=False, at_minutes=2)
    await world.set("web", up=False, at_minutes=3)
    await world.set("api", up=True, at_minutes=4)
    assert await world.events(oid) == [(3, 4, "upstream", "api"),
                                       (4, None, "upstream", "db")]


async def test_two_concurrent_degrade_handlers_open_one_event(world: World) -> None:
    await world.build("api")
    oid = await world.objective("api")
    world.clock.now = T0 + timedelta(minutes=3)
    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(world.slo.system_went_down, "api", world.clock.now)
    # Health never went down: the handlers found it up and recorded nothing open.
    await world.health.record_run("api-check", DOWN, timestamp=world.clock.now)
    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(world.slo.system_went_down, "api", world.clock.now)
    await world.host.drain()
    assert await world.events(oid) == [(3, None, "self", None)]


async def test_an_objective_created_while_its_system_is_down_counts_from_then(
    world: World,
) -> None:
    await world.build("api")
    await world.set("api", up=False, at_minutes=1)
    world.clock.now = T0 + timedelta(minutes=30)
    oid = await world.objective("api")
    assert await world.events(oid) == [(30, None, "self", None)]


async def test_an_orphaned_open_event_closes_when_health_recovered(world: World) -> None:
    # The periodic refresh would reconcile it as soon as the clock jumps: this test
    # shows the reconcile itself, so the refresh is off.
    await world.host.timers.cancel(REFRESH_TOPIC, "all")
    await world.build("api")
    oid = await world.objective("api")
    await world.set("api", up=False, at_minutes=2)
    # Recovery recorded without the handlers running (as if the instance died): its
    # deliveries go in the same transaction, so no dispatcher can take them first.
    world.clock.now = T0 + timedelta(minutes=7)

    def recover_unseen(tx: Any) -> None:
        world.health.record_run_in(tx, "api-check", UP, timestamp=world.clock.now)
        tx.exec_driver_sql("DELETE FROM entity_deliveries WHERE status = 'pending'")

    await world.host.run(recover_unseen)
    assert await world.events(oid) == [(2, None, "self", None)]
    # Open but orphaned: live health says up, so it counts nothing, in the entity and
    # in the service's status alike (both read live health for an open event).
    world.clock.now = T0 + timedelta(minutes=30)
    state = await world.host.entity(SLO_KIND).get(oid)
    view = await world.slo.objective(oid)
    assert state is not None and view is not None
    assert state.budget_remaining_percent == view.status.error_budget_remaining_percent == 100
    world.clock.now = T0 + timedelta(minutes=60)
    await world.slo.reconcile_all()
    assert await world.events(oid) == [(2, 7, "self", None)]


async def test_the_budget_moves_at_each_refresh_while_an_outage_lasts(world: World) -> None:
    await world.build("api")
    oid = await world.objective("api")
    await world.set("api", up=False, at_minutes=0)
    slo = world.host.entity(SLO_KIND)
    before = await slo.get(oid)
    world.clock.advance(10)
    assert await world.slo.refresh() == 1
    after = await slo.get(oid)
    assert before is not None and after is not None
    assert after.budget_remaining_percent == pytest.approx((43.2 - 10) / 43.2 * 100, rel=1e-9)
    changes = await world.host.changes(kind=SLO_KIND, entity_id=oid)
    assert "budgetRemainingPercent" in changes[-1].changed_fields


@pytest.mark.parametrize(("fields", "field"), [
    ({"target": 0}, "target"), ({"target": 101}, "target"), ({"window_days": 0}, "window_days"),
    ({"window_days": 1.5}, "window_days"), ({"window_days": 4000}, "window_days"),
    ({"dependency_exclusion": "sometimes"}, "dependency_exclusion"),
    ({"system_id": "ghost"}, "system_id"),
])
async def test_invalid_objectives_are_refused_naming_the_field(
    world: World, fields: dict[str, Any], field: str,
) -> None:
    await world.build("api")
    raw = {"id": "o", "system_id": "api", "target": 99.9, "window_days": 30, **fields}
    with pytest.raises(InvalidObjective) as refused:
        await world.slo.upsert_objective(raw)
    assert refused.value.field == field and field in str(refused.value)
    assert await world.slo.objectives() == []
    assert await world.host.changes(kind=SLO_KIND) == []


async def test_deleting_an_objective_or_its_system_tombstones_the_entity(world: World) -> None:
    await world.build("api", "db")
    first = await world.objective("api")
    second = await world.objective("db")
    slo = world.host.entity(SLO_KIND)
    assert await world.slo.delete_objective(first)
    assert await slo.get(first) is None
    assert (await world.host.changes(kind=SLO_KIND, entity_id=first))[-1].next is None
    await Catalog(world.host).delete_system("db")
    await world.host.drain()
    assert await slo.get(second) is None
    assert await world.slo.objectives() == []


@pytest.mark.parametrize("backend", ["sqlite_url", "pg_url"])
async def test_window_events_load_as_the_log_holds_them_across_chunks(
        backend: str, request: pytest.FixtureRequest) -> None:
    # The read path loads events a chunk of rows at a time, a column at a time: an
    # objective's events that straddle chunks, an objective without events, an open
    # event and upstream names come out as the event listing has them.
    from sqlalchemy import insert

    from slo_plugin import store
    from slo_plugin.schema import slo_downtime_events

    url = request.getfixturevalue(backend)
    counts = {"a": 600, "b": 0, "c": 1, "d": 700}
    async with Host(database_url=url, entry_points=False,
                    plugins=[CatalogPlugin, HealthPlugin, SloPlugin],
                    config={"run_jobs": False,
                            "plugins": {"health": {"scheduler": False}}}) as host:
        rows = []
        for oid, count in counts.items():
            for k in range(count):
                start = T0 - timedelta(days=20) + timedelta(minutes=10 * k, microseconds=k)
                upstream = f"up-{k % 3}" if k % 4 == 0 else None
                rows.append({
                    "objective_id": oid, "started_at": start,
                    "ended_at": None if oid == "c" else start + timedelta(minutes=3),
                    "duration_seconds": None if oid == "c" else 180.0,
                    "attribution": "upstream" if upstream else "self",
                    "upstream_system_id": upstream,
                    "upstream_system_name": upstream and upstream.upper()})

        def load(tx: Any) -> None:
            for oid in counts:
                store.save_objective_in(tx, Objective(id=oid, system_id="sys", target=99.9,
                                                      window_days=30), T0)
            tx.execute(insert(slo_downtime_events), rows)

        await host.run(load)

        def read(tx: Any) -> tuple[Any, Any]:
            loaded = store.window_events_in(tx, list(counts), T0 - timedelta(days=30))
            listed = {oid: store.events_in(tx, oid, limit=10_000) for oid in counts}
            return loaded, listed

        loaded, listed = await host.read(read)
    for oid, count in counts.items():
        got = [(e.start, e.end, e.attribution, e.upstream_system_id, e.upstream_system_name)
               for e in loaded[oid]]
        want = [(e.event.start, e.event.end, e.event.attribution, e.event.upstream_system_id,
                 e.event.upstream_system_name) for e in reversed(listed[oid])]
        assert len(got) == count and got == want, oid
        assert all(s.tzinfo is not None and s.utcoffset() == timedelta(0) for s, *_ in got)
