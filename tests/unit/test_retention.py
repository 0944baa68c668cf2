"""Log retention and scheduled jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from plugins_for_tests import CorePlugin, SubscriberPlugin
from reactive_core import EntityChange, Host, WorkQueue
from reactive_core._jobs import Scheduler, prune_logs
from reactive_core._schema import entity_changes, entity_deliveries, entity_transitions, job_runs

pytestmark = pytest.mark.anyio


async def test_retention_keeps_the_newest_transition_per_field(sqlite_url: str) -> None:
    async def fail(change: EntityChange) -> None:
        raise RuntimeError("stuck")

    async with Host(database_url=sqlite_url, plugins=[CorePlugin(), SubscriberPlugin(
            "counter", fail, WorkQueue("stuck", max_retries=0))], entry_points=False,
            config={"run_jobs": False, "poll_interval": 0.05}) as host:
        counters = host.entity("counter")
        for n in (1, 2, 3):
            await counters.mutate("a", lambda tx, prev, n=n: {"n": n, "label": "same"})
        await counters.mutate("b", lambda tx, prev: {"n": 7})
        await host.drain()
        old = datetime(2020, 1, 1, tzinfo=UTC)

        def age_everything(tx):  # type: ignore[no-untyped-def]
            for table, column in ((entity_changes, "occurred_at"),
                                  (entity_transitions, "transitioned_at")):
                tx.execute(update(table).values({column: old}))
            tx.execute(update(entity_deliveries).where(entity_deliveries.c.entity_id == "a")
                       .values(status="done", finished_at=old))

        await host.db.run(age_everything)
        since_before = await counters.in_state_since("a", "n")
        counts = await host.db.run(lambda tx: prune_logs(tx, older_than=datetime.now(UTC)))
        rows = await host.transitions()
        assert sorted((r.entity_id, r.field, r.to_value) for r in rows) == [
            ("a", "label", "same"), ("a", "n", "3"), ("a", "tags", "{}"),
            ("b", "n", "7"), ("b", "tags", "{}"),
        ]
        assert counts["transitions"] == 2
        assert await counters.in_state_since("a", "n") == since_before == old
        # b's change still has a dead delivery: kept; a's changes are pruned.
        assert [c.id for c in await host.changes()] == ["b"]
        assert counts["changes"] == 3 and counts["deliveries"] == 3


async def test_a_job_slot_runs_once_across_instances(sqlite_url: str) -> None:
    runs: list[tuple[str, datetime]] = []

    class Jobs:
        name = "jobs"

        def __init__(self, label: str) -> None:
            self.label = label

        from reactive_core import hookimpl

        @hookimpl
        def reactive_register(self, registry):  # type: ignore[no-untyped-def]
            async def job(host: Host, slot: datetime) -> None:
                runs.append((self.label, slot))
            registry.add_job("nightly", job, cron="0 0 * * *")

    config = {"run_jobs": False}
    async with Host(database_url=sqlite_url, plugins=[Jobs("a")], entry_points=False,
                    config=config) as a, Host(database_url=sqlite_url, plugins=[Jobs("b")],
                                              entry_points=False, config=config) as b:
        slot = datetime(2026, 11, 23, tzinfo=UTC)
        sched_a = Scheduler(host=a, instance="a")
        sched_b = Scheduler(host=b, instance="b")
        assert await sched_a.run_slot(a.registry.jobs["nightly"], slot)
        assert not await sched_b.run_slot(b.registry.jobs["nightly"], slot)
        assert await sched_b.run_slot(b.registry.jobs["nightly"], slot + timedelta(days=1))
        assert runs == [("a", slot), ("b", slot + timedelta(days=1))]

        def rows(tx):  # type: ignore[no-untyped-def]
            return tx.execute(job_runs.select().order_by(job_runs.c.slot)).all()
        stored = await a.db.read(rows)
        assert [(r.slot, r.instance, r.error) for r in stored] == [
            ("2026-11-23T00:00:00Z", "a", None), ("2026-11-24T00:00:00Z", "b", None)]


async def test_the_scheduler_catches_up_the_latest_missed_slot(sqlite_url: str) -> None:
    import anyio

    ran = anyio.Event()

    class Jobs:
        name = "jobs"

        from reactive_core import hookimpl

        @hookimpl
        def reactive_register(self, registry):  # type: ignore[no-untyped-def]
            async def job(host: Host, slot: datetime) -> None:
                ran.set()
            registry.add_job("hourly", job, every=timedelta(hours=1))

    async with Host(database_url=sqlite_url, plugins=[Jobs()], entry_points=False,
                    config={"poll_interval": 0.05}):
        with anyio.fail_after(5):
            await ran.wait()
