"""The health plugin on PostgreSQL, with two hosts sharing one database (a cluster).

Each host gets its own plugin instances, so the two share nothing but the database,
like two `reactive serve` processes.
"""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import Any

import anyio
import pytest
from sqlalchemy import func, select

from catalog_plugin import Catalog, CatalogPlugin
from health_plugin import (
    CHECK_TOPIC,
    CheckOutcome,
    HealthPlugin,
    HealthStatus,
    InvalidCheck,
    Thresholds,
    health_service,
)
from health_plugin.flaky import FlakyTarget
from health_plugin.scheduler import CheckRunner
from health_plugin.schema import health_check_runs
from reactive_core import Host, Timer, apply_config_text

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]

FAIL = CheckOutcome(status=HealthStatus.UNHEALTHY, latency_ms=1.0)
EAGER = Thresholds(degraded_min_failures=1, unhealthy_min_failures=1)


def make_host(url: str, name: str, **health: Any) -> Host:
    settings = {"scheduler": False, **health}
    return Host(database_url=url, plugins=[CatalogPlugin(), HealthPlugin()],
                entry_points=False, instance_id=name,
                config={"poll_interval": 0.05, "retry_base_seconds": 0.01, "run_jobs": False,
                        "plugins": {"health": settings}})


@asynccontextmanager
async def cluster(url: str, **health: Any) -> AsyncIterator[tuple[Host, Host]]:
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(make_host(url, "host-a", **health))
        second = await stack.enter_async_context(make_host(url, "host-b", **health))
        yield first, second


async def run_count(host: Host) -> int:
    return int(await host.read(lambda tx: tx.execute(
        select(func.count()).select_from(health_check_runs)).scalar_one()))


async def test_concurrent_evaluations_of_one_system_emit_exactly_one_change(
    pg_url: str, anyio_backend: str,
) -> None:
    async with cluster(pg_url) as (a, b):
        await Catalog(a).upsert_system("api", name="API")
        await health_service(a).upsert_check("ping", strategy="tcp",
                                            config={"host": "127.0.0.1", "port": 9})
        await health_service(a).associate("api", "ping", thresholds=EAGER)
        services = [health_service(a), health_service(b)]
        async with anyio.create_task_group() as tg:
            for n in range(12):
                tg.start_soon(services[n % 2].record_run, "ping", FAIL)
        changes = await a.changes(kind="health", entity_id="api")
        assert [(c.prev, c.next) for c in changes] == [
            (None, {"status": "healthy", "healthyChecks": 1, "totalChecks": 1}),
            ({"status": "healthy", "healthyChecks": 1, "totalChecks": 1},
             {"status": "unhealthy", "healthyChecks": 0, "totalChecks": 1}),
        ]
        assert await run_count(a) == 12
        transitions = await services[1].check_transitions("api", "ping")
        assert [t.to_status for t in transitions] == ["healthy", "unhealthy"]


async def test_due_checks_are_claimed_by_exactly_one_instance(
    pg_url: str, anyio_backend: str,
) -> None:
    async with cluster(pg_url, jitter_ratio=0) as (a, b):
        await Catalog(a).upsert_system("api", name="API")
        service = health_service(a)
        for n in range(30):
            await service.upsert_check(f"c{n}", strategy="tcp",
                                       config={"host": "127.0.0.1", "port": 9})
            await service.associate("api", f"c{n}")
        claimed: dict[str, list[str]] = {}

        async def claim(host: Host) -> None:
            for _ in range(3):
                items = await host.run(lambda tx: host._timer_store.claim(
                    tx, topic=CHECK_TOPIC, owner=host.instance_id, lease=60, limit=7))
                claimed.setdefault(host.instance_id, []).extend(t.key for t, _ in items)

        async with anyio.create_task_group() as tg:
            tg.start_soon(claim, a)
            tg.start_soon(claim, b)
        ids = claimed["host-a"] + claimed["host-b"]
        assert len(ids) == 30 and len(set(ids)) == 30  # every due check once, none twice


async def test_two_schedulers_run_each_check_once_per_interval(
    pg_url: str, anyio_backend: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    slots: list[datetime] = []  # the slot (due time) of each firing, on either host
    fire = CheckRunner.fire

    async def recording(runner: CheckRunner, timer: Timer) -> None:
        slots.append(timer.due_at)
        await fire(runner, timer)

    monkeypatch.setattr(CheckRunner, "fire", recording)
    async with (
        FlakyTarget([("ok", 1)]) as target,
        cluster(pg_url, scheduler=True, jitter_ratio=0) as (a, _b),
    ):
        await Catalog(a).upsert_system("api", name="API")
        service = health_service(a)
        await service.upsert_check("web", strategy="http", config={"url": target.url},
                                   interval_seconds=0.2)
        await service.associate("api", "web")
        # Six runs: five intervals, two schedulers. Waited for by count, not by time, so
        # that a slow machine only takes longer.
        with anyio.fail_after(30):
            while await run_count(a) < 6:
                await anyio.sleep(0.02)
        runs = sorted(r.timestamp for r in await service.runs("api"))
    # Never one slot fired twice (once by each scheduler). Start times cannot tell: a
    # firing that started late on a loaded machine is followed by one on time.
    assert len(runs) >= 6 and len(slots) == len(set(slots)), (runs, slots)
    gaps = [(y - x).total_seconds() for x, y in itertools.pairwise(runs)]
    assert sum(gaps) / len(gaps) >= 0.15, runs  # one run per 0.2 s slot (some skipped)


async def test_config_apply_and_catalog_tombstone_cleanup(pg_url: str, anyio_backend: str) -> None:
    text = textwrap.dedent("""\
        systems:
          - {id: api, name: API}
          - {id: web, name: Web}
        checks:
          - {id: ping, strategy: tcp, config: {host: 127.0.0.1, port: 9}}
        associations:
          - {system: api, check: ping}
          - {system: web, check: ping}
        """)
    async with cluster(pg_url) as (a, b):
        report = await apply_config_text(a, text)
        assert "associated check ping with system web (enabled)" in report
        assert await apply_config_text(b, text) == []
        await Catalog(b).delete_system("web")
        for host in (a, b):
            await host.drain()
        assert sorted(await b.entity("health").get_many(["api", "web"])) == ["api"]
        assert await b.entity("health").ids() == ["api"]
        assert [x.system_id for x in await health_service(a).associations()] == ["api"]
        tombstone = (await a.changes(kind="health", entity_id="web"))[-1]
        assert tombstone.next is None


async def test_ids_of_the_longest_allowed_length_work_end_to_end(
    pg_url: str, anyio_backend: str,
) -> None:
    # One identifier rule (up to 255 characters) for systems and checks, on PostgreSQL
    # too: every column holding them is wide enough.
    system_id, check = "s" * 255, "c" * 255
    async with make_host(pg_url, "host-a") as host:
        service = health_service(host)
        await Catalog(host).upsert_system(system_id, name="long")
        await service.upsert_check(check, strategy="tcp",
                                    config={"host": "127.0.0.1", "port": 9})
        await service.associate(system_id, check, thresholds=EAGER)
        await service.record_run(check, FAIL)
        health = await service.status(system_id)
        assert health is not None and health.status == HealthStatus.UNHEALTHY
        with pytest.raises(InvalidCheck, match="has 256 characters"):
            await service.upsert_check(check + "c", strategy="tcp",
                                        config={"host": "127.0.0.1", "port": 9})
