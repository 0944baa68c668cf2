"""Schema migrations on PostgreSQL: fresh databases, a release-0.1.0 database upgraded in
place, hosts refusing a database that is behind, and hosts starting together."""

from __future__ import annotations

import anyio
import pytest

from fixtures.migration_support import (
    check_upgraded_release,
    histories,
    load_release,
    plugins,
    schema_differences,
    snapshot,
    upgraded_host,
)
from reactive_core import ConfigError, Host

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]


async def test_a_fresh_database_runs_every_revision_and_matches_the_models(
        pg_url: str) -> None:
    async with upgraded_host(pg_url, workers=False):
        pass
    assert schema_differences(pg_url, histories()) == []


async def test_a_release_0_1_0_database_upgrades_in_place_with_its_data(pg_url: str) -> None:
    load_release(pg_url)
    before = snapshot(pg_url)
    await check_upgraded_release(pg_url, before)
    assert schema_differences(pg_url, histories()) == []


async def test_migrate_false_refuses_a_database_that_is_behind(pg_url: str) -> None:
    load_release(pg_url)
    with pytest.raises(ConfigError, match=r"reactive_core at 0001 \(head 0002") as refused:
        async with upgraded_host(pg_url, migrate=False):
            pass
    assert "reactive db upgrade" in str(refused.value)


async def test_hosts_starting_together_on_a_fresh_database_all_come_up(pg_url: str) -> None:
    """Each waits for the schema lock; the first migrates, the others find it done."""
    up: list[str] = []
    stop = anyio.Event()

    async def run(name: str) -> None:
        async with Host(database_url=pg_url, plugins=plugins(), entry_points=False,
                        instance_id=name, config={"poll_interval": 0.05, "run_jobs": False}):
            up.append(name)
            await stop.wait()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(run, f"host-{i}")
            while len(up) < 3:
                await anyio.sleep(0.01)
            stop.set()
    assert sorted(up) == ["host-0", "host-1", "host-2"]
    assert schema_differences(pg_url, histories()) == []
