"""Retention: raw runs fold into hourly aggregates; the newest 100 runs and states stay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, func, select

from catalog_plugin import Catalog
from health_plugin import CheckOutcome, HealthService, HealthStatus, Thresholds, health_service
from health_plugin.retention import p95, run_retention_in
from health_plugin.schema import health_check_run_aggregates, health_check_runs
from plugins_for_tests import make_health_host
from reactive_core import Host

pytestmark = pytest.mark.anyio

BASE = datetime(2025, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=20)  # three runs an hour


make_host = make_health_host


@pytest.fixture
async def host(sqlite_url: str, anyio_backend: str) -> AsyncIterator[Host]:
    async with make_host(sqlite_url) as running:
        yield running


def outcome(index: int) -> CheckOutcome:
    status = HealthStatus.UNHEALTHY if index % 3 == 0 else HealthStatus.HEALTHY
    return CheckOutcome(status=status, latency_ms=float(index))


async def seed(host: Host, count: int, check_id: str = "ping") -> HealthService:
    service = health_service(host)
    if await Catalog(host).get_system("api") is None:
        await Catalog(host).upsert_system("api", name="API")
    await service.upsert_check(check_id, strategy="tcp", config={"host": "127.0.0.1", "port": 9})
    await service.associate("api", check_id,
                            thresholds=Thresholds(degraded_min_failures=1,
                                                  unhealthy_min_failures=1))

    def record(tx: Connection) -> None:
        for i in range(count):
            service.record_run_in(tx, check_id, outcome(i), timestamp=BASE + i * STEP)

    await host.run(record)
    return service


async def test_old_runs_fold_into_whole_hour_aggregates(host: Host) -> None:
    service = await seed(host, 150)  # 50 hours of runs, the newest at BASE + 49h40m
    health_before = await host.entity("health").get("api")
    changes_before = len(await host.changes(kind="health"))

    counts = await host.run(lambda tx: run_retention_in(
        tx, now=BASE + timedelta(hours=60), raw_retention=timedelta(hours=24),
        transition_retention=timedelta(days=3650)))

    # The 100 newest runs start with run 50 (BASE + 16h40m): only the 16 whole hours
    # before BASE + 16h may go, although the 24-hour cut-off alone would allow more.
    assert counts == {"runs": 48, "buckets": 16, "transitions": 0}
    rows = await host.read(lambda tx: tx.execute(
        select(health_check_run_aggregates).order_by(health_check_run_aggregates.c.bucket_start)
    ).all())
    assert [r.bucket_start.replace(tzinfo=UTC) for r in rows] == [
        BASE + timedelta(hours=h) for h in range(16)]
    for hour, row in enumerate(rows):
        latencies = [float(3 * hour + k) for k in range(3)]
        assert (row.run_count, row.healthy_count) == (3, 2)
        assert (row.latency_sum_ms, row.latency_count) == (sum(latencies), 3)
        assert row.p95_latency_ms == max(latencies)
    left = await host.read(lambda tx: tx.execute(
        select(func.count()).select_from(health_check_runs)).scalar())
    assert left == 102
    assert len(await service.runs("api", limit=1000)) == 102
    # Retention never changes health: the evaluated runs are all still there.
    assert await host.entity("health").get("api") == health_before
    assert len(await host.changes(kind="health")) == changes_before

    again = await host.run(lambda tx: run_retention_in(
        tx, now=BASE + timedelta(hours=60), raw_retention=timedelta(hours=24),
        transition_retention=timedelta(days=3650)))
    assert again == {"runs": 0, "buckets": 0, "transitions": 0}


async def test_a_check_with_fewer_than_100_runs_keeps_them_all(host: Host) -> None:
    await seed(host, 99)
    counts = await host.run(lambda tx: run_retention_in(
        tx, now=BASE + timedelta(days=365), raw_retention=timedelta(hours=1),
        transition_retention=timedelta(days=3650)))
    assert counts["runs"] == 0


async def test_old_check_transitions_go_but_the_newest_per_check_stays(host: Host) -> None:
    service = await seed(host, 12)  # with one-failure thresholds the check flips often
    await seed(host, 3, check_id="other")
    before = await service.check_transitions("api")
    assert len(before) > 4
    counts = await host.run(lambda tx: run_retention_in(
        tx, now=datetime.now(UTC) + timedelta(days=1), raw_retention=timedelta(days=3650),
        transition_retention=timedelta(hours=1)))
    after = await service.check_transitions("api")
    assert counts["transitions"] == len(before) - 2
    newest = {c: max((t for t in before if t.configuration_id == c),
                     key=lambda t: (t.transitioned_at, t.id)) for c in ("ping", "other")}
    assert sorted(after, key=lambda t: t.id) == sorted(newest.values(), key=lambda t: t.id)


async def test_the_retention_job_uses_the_host_settings(host: Host) -> None:
    await seed(host, 5)
    job = host.registry.jobs["health.retention"]
    await job.fn(host, datetime.now(UTC))  # 7 days of raw runs by default: keeps all
    assert len(await health_service(host).runs("api")) == 5


def test_p95_is_the_nearest_rank() -> None:
    assert p95([]) is None
    assert p95([5.0]) == 5.0
    assert p95([float(i) for i in range(1, 101)]) == 95.0
    assert p95([float(i) for i in range(1, 21)]) == 19.0
