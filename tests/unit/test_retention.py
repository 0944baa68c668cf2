"""Log retention: what is pruned, and what never is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from plugins_for_tests import CorePlugin, SubscriberPlugin
from reactive_core import EntityChange, Host, WorkQueue
from reactive_core._store.schema import (
    entity_changes,
    entity_deliveries,
    entity_transitions,
    work_queue_routes,
)

pytestmark = pytest.mark.anyio

OLD = datetime(2020, 1, 1, tzinfo=UTC)


def age_everything(tx):  # type: ignore[no-untyped-def]
    for table, column in ((entity_changes, "occurred_at"),
                          (entity_transitions, "transitioned_at")):
        tx.execute(update(table).values({column: OLD}))
    tx.execute(update(entity_deliveries).where(entity_deliveries.c.status == "done")
               .values(finished_at=OLD))


async def test_retention_keeps_the_newest_transition_per_field(sqlite_url: str) -> None:
    async def fail(change: EntityChange) -> None:
        if change.id == "b":
            raise RuntimeError("stuck")

    async with Host(database_url=sqlite_url, plugins=[CorePlugin(), SubscriberPlugin(
            "counter", fail, WorkQueue("stuck", max_retries=0))], entry_points=False,
            config={"run_jobs": False, "poll_interval": 0.05}) as host:
        counters = host.entity("counter")
        for n in (1, 2, 3):
            await counters.mutate("a", lambda tx, prev, n=n: {"n": n, "label": "same"})
        await counters.mutate("b", lambda tx, prev: {"n": 7})
        await host.drain()
        await host.run(age_everything)
        since_before = await counters.in_state_since("a", "n")
        counts = await host.prune(older_than=timedelta(0))
        rows = await host.transitions()
        assert sorted((r.entity_id, r.field, r.to_value) for r in rows) == [
            ("a", "label", "same"), ("a", "n", "3"), ("a", "tags", "{}"),
            ("b", "n", "7"), ("b", "tags", "{}"),
        ]
        assert counts["transitions"] == 2
        assert await counters.in_state_since("a", "n") == since_before == OLD
        # b's change still has a dead delivery: kept; a's changes are pruned.
        assert [c.id for c in await host.changes()] == ["b"]
        assert counts["changes"] == 3 and counts["deliveries"] == 3


async def test_pruning_every_change_never_restarts_seq_nor_stalls_the_feed(
    sqlite_url: str,
) -> None:
    seen: list[int] = []

    async def watch(change: EntityChange) -> None:
        seen.append(change.seq)

    async with Host(database_url=sqlite_url, plugins=[CorePlugin(), SubscriberPlugin(
            "counter", watch)], entry_points=False,
            config={"run_jobs": False, "poll_interval": 0.05}) as host:
        counters = host.entity("counter")
        for n in (1, 2, 3):
            await counters.mutate("a", lambda tx, prev, n=n: {"n": n})
        await host.drain()
        await host.run(age_everything)
        assert (await host.prune(older_than=timedelta(0)))["changes"] == 3
        assert await host.changes() == []
        await counters.mutate("a", lambda tx, prev: {"n": 4})
        await host.drain()
        assert seen == [1, 2, 3, 4]  # the running feed saw the new change, seq 4 not 1


async def test_retention_never_drops_a_live_route(sqlite_url: str) -> None:
    handled: list[str] = []

    async def handle(change: EntityChange) -> None:
        handled.append(change.id)

    server_plugins = [CorePlugin(), SubscriberPlugin("counter", handle, WorkQueue("g"))]
    config = {"run_jobs": False, "poll_interval": 0.05, "retention_days": 0.0001}
    async with Host(database_url=sqlite_url, plugins=server_plugins, entry_points=False,
                    config=config) as server:
        # The route was last refreshed an hour ago: long ago by this retention's measure.
        await server.run(lambda tx: tx.execute(update(work_queue_routes).values(
            last_seen_at=datetime.now(UTC) - timedelta(hours=1))))
        counts = await server.prune()
        assert counts["routes"] == 0
        assert await server.read(lambda tx: tx.execute(
            select(func.count()).select_from(work_queue_routes)).scalar()) == 1
        # A client without the group's handler still queues for it, and it runs.
        async with Host(database_url=sqlite_url, plugins=[CorePlugin()], entry_points=False,
                        config={"workers": False}) as client:
            await client.entity("counter").mutate("x", lambda tx, prev: {"n": 1})
        await server.drain()
        assert handled == ["x"]


async def test_retention_drops_a_route_nobody_ran_for_long(sqlite_url: str) -> None:
    async with Host(database_url=sqlite_url, plugins=[CorePlugin()], entry_points=False,
                    config={"run_jobs": False}) as host:
        await host.run(lambda tx: tx.execute(work_queue_routes.insert().values(
            group_name="gone", kind="counter", last_seen_at=OLD)))
        assert (await host.prune())["routes"] == 1
