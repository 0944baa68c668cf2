"""Faults the work queue survives on PostgreSQL: handlers raising anything, skewed clocks,
a long backlog behind busy heads, connections killed under a running host."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.lowlevel
import psycopg
import pytest
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from reactive_core import EntityChange, Host, RetryPolicy, WorkQueue, hookimpl
from reactive_core._store.backend import lock_key

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

KIND = "item"


class Item(BaseModel):
    model_config = ConfigDict(frozen=True)

    n: int


def bump(_tx: Any, prev: Item | None) -> Item:
    return Item(n=(prev.n if prev else 0) + 1)


class Plugin:
    name = "faults"

    def __init__(self, *subscriptions: tuple[Any, Any]) -> None:
        self.subscriptions = subscriptions

    @hookimpl
    def reactive_register(self, registry: Any) -> None:
        registry.define_entity(KIND, state=Item)
        for handler, delivery in self.subscriptions:
            registry.on_entity_changed(KIND, handler, delivery=delivery)


def make_host(url: str, *subscriptions: tuple[Any, Any], instance_id: str = "a",
              clock: Any = None, **config: Any) -> Host:
    settings = {"poll_interval": 0.05, "retry_base_seconds": 0.01, "run_jobs": False,
                "shutdown_timeout_seconds": 0.5, **config}
    return Host(database_url=url, plugins=[Plugin(*subscriptions)], entry_points=False,
                config=settings, instance_id=instance_id, clock=clock)


@pytest.mark.parametrize("raised", [asyncio.CancelledError(), KeyboardInterrupt()],
                         ids=["cancelled", "keyboard-interrupt"])
async def test_a_handler_raising_base_exceptions_is_dead_lettered_and_the_host_goes_on(
    pg_url: str, raised: BaseException,
) -> None:
    handled: list[str] = []

    async def handler(change: EntityChange) -> None:
        if change.id == "poison":
            raise raised
        handled.append(change.id)

    queue = WorkQueue("g", retry=RetryPolicy(max_retries=1, base_seconds=0.01))
    async with make_host(pg_url, (handler, queue)) as host:
        await host.entity(KIND).mutate("poison", bump)
        await host.entity(KIND).mutate("fine", bump)
        await host.drain()
        (dead,) = await host.deliveries(dead=True)
    assert (dead.entity_id, dead.attempts) == ("poison", 2) and handled == ["fine"]


async def test_an_instance_whose_clock_runs_ahead_never_steals_a_live_lease(pg_url: str) -> None:
    runs: Counter[str] = Counter()

    async def slow(change: EntityChange) -> None:
        runs[change.change_id] += 1
        await anyio.sleep(1.5)  # longer than the lease: heartbeats keep it alive

    ahead = 25.0
    async with make_host(pg_url, (slow, WorkQueue("g")), instance_id="a",
                         lease_seconds=1.0, dispatch_concurrency=4) as a, \
            make_host(pg_url, (slow, WorkQueue("g")), instance_id="b",
                      lease_seconds=1.0, dispatch_concurrency=4,
                      clock=lambda: datetime.now(UTC) + timedelta(seconds=ahead)) as b:
        for n in range(8):
            await a.entity(KIND).mutate(f"e{n}", bump)
        await a.drain(timeout=30)
        await b.drain(timeout=30)
        rows = await a.deliveries()
    assert len(runs) == 8 and set(runs.values()) == {1}, runs  # no change ran twice
    assert {(r.status, r.attempts) for r in rows} == {("done", 1)}


def _rows_examined(plan: dict[str, Any]) -> int:
    total = 0
    stack = [plan["Plan"]]
    while stack:
        node = stack.pop()
        loops = int(node.get("Actual Loops", 1))
        total += int(node.get("Actual Rows", 0)) * loops
        total += int(node.get("Rows Removed by Filter", 0)) * loops
        stack.extend(node.get("Plans", []))
    return total


async def test_a_claim_reads_the_due_heads_not_the_backlog_behind_them(pg_url: str) -> None:
    async with make_host(pg_url, (lambda c: anyio.lowlevel.checkpoint(), WorkQueue("g")),
                         workers=False) as host:
        # 5 entities with 900 pending deliveries each; every head is leased by an
        # instance still running it (a lease leaves `available_at` alone: a claim is a
        # HOT update), so nothing is claimable now.
        await host.run(lambda tx: tx.execute(text("""
            INSERT INTO entity_deliveries (change_seq, group_name, kind, entity_id, status,
                ready, attempts, available_at, created_at)
            SELECT n, 'g', 'item', 'e' || (n % 5), 'pending', n <= 5, 0, now(), now()
            FROM generate_series(1, 4500) AS n""")))
        await host.run(lambda tx: tx.execute(text(
            "UPDATE entity_deliveries SET lease_owner = 'busy', attempts = 1, "
            "lease_expires_at = now() + interval '1 hour' WHERE ready")))
        statement = host._queue._claim_statement((("g", KIND),))
        compiled = statement.compile(dialect=postgresql.dialect())  # type: ignore[no-untyped-call]

        def explain(tx: Any) -> dict[str, Any]:
            cur = tx.connection.dbapi_connection.cursor()
            cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + compiled.string,
                        {"g0": "g", "k0": KIND, "owner": "me", "lease": 30.0, "limit": 16})
            plan = cur.fetchone()[0]
            tx.rollback()
            return plan[0] if isinstance(plan, list) else json.loads(plan)[0]

        plan = await host.run(explain)
    assert _rows_examined(plan) < 50, plan


async def test_claims_extensions_and_releases_add_no_index_entries(pg_url: str) -> None:
    """A lease lives in columns no index holds: PostgreSQL makes each a HOT update, and
    a claim passes over leased heads until their lease runs out."""
    async with make_host(pg_url, (lambda c: anyio.lowlevel.checkpoint(), WorkQueue("g")),
                         workers=False) as host:
        for n in range(6):
            await host.entity(KIND).mutate(f"e{n}", bump)
        queue, routes = host._queue, [("g", KIND)]

        def updates(tx: Any) -> tuple[int, int]:
            row = tx.execute(text(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
                "WHERE relname = 'entity_deliveries'")).one()
            return int(row[0]), int(row[1])

        def lease_round(tx: Any) -> dict[str, Any]:
            first = queue.claim(tx, routes=routes, owner="a", lease=30.0, limit=4)
            after_claim = updates(tx)
            queue.extend(tx, ids=[d.id for d, _ in first], owner="a", lease=60.0)
            after_extend = updates(tx)
            # The 4 leased heads are passed over; the other 2 are claimed.
            second = queue.claim(tx, routes=routes, owner="b", lease=30.0, limit=10)
            nothing = queue.claim(tx, routes=routes, owner="b", lease=30.0, limit=10)
            due_in = queue.seconds_until_due(tx, routes)
            released = queue.release(tx, "a")
            again = queue.claim(tx, routes=routes, owner="c", lease=30.0, limit=10)
            return {"first": first, "after_claim": after_claim, "after_extend": after_extend,
                    "second": second, "nothing": nothing, "due_in": due_in,
                    "released": released, "again": again, "end": updates(tx)}

        got = await host.run(lease_round)
        rows = {r.id: r for r in await host.deliveries()}
    assert len(got["first"]) == 4 and got["after_claim"] == (4, 4)
    assert got["after_extend"] == (8, 8)
    assert len(got["second"]) == 2 and not got["nothing"]
    # Every head is leased: the next one comes due when the first lease ends (30 s).
    assert 25 < got["due_in"] <= 30.5, got["due_in"]
    assert got["released"] == 4
    assert sorted(d.id for d, _ in got["again"]) == sorted(d.id for d, _ in got["first"])
    assert got["end"] == (18, 18)  # 4 + 4 + 2 + 4 + 4 updates, every one HOT
    for delivery, _change in got["again"]:
        row = rows[delivery.id]
        assert (row.lease_owner, row.attempts) == ("c", 2)
        assert row.available_at is not None and row.available_at <= row.created_at + timedelta(
            seconds=1)


async def test_a_claim_takes_over_a_head_whose_lease_ran_out(pg_url: str) -> None:
    async with make_host(pg_url, (lambda c: anyio.lowlevel.checkpoint(), WorkQueue("g")),
                         workers=False) as host:
        await host.entity(KIND).mutate("e0", bump)
        queue, routes = host._queue, [("g", KIND)]
        first = await host.run(lambda tx: queue.claim(tx, routes=routes, owner="a",
                                                      lease=0.2, limit=1))
        assert await host.run(lambda tx: queue.claim(tx, routes=routes, owner="b",
                                                     lease=30.0, limit=1)) == []
        due_in = await host.run(lambda tx: queue.seconds_until_due(tx, routes))
        assert due_in is not None and due_in <= 0.2
        await anyio.sleep(0.3)
        taken = await host.run(lambda tx: queue.claim(tx, routes=routes, owner="b",
                                                      lease=30.0, limit=1))
        # The first instance's outcome no longer counts: it lost its lease.
        settled = await host.run(lambda tx: queue.settle(tx, owner="a",
                                                         done=[first[0][0]], failed=[]))
        rows = await host.deliveries()
    assert [d.id for d, _ in taken] == [first[0][0].id] and settled.recorded == 0
    assert [(r.status, r.lease_owner, r.attempts) for r in rows] == [("pending", "b", 2)]


async def test_the_host_goes_on_when_its_database_connections_are_killed(pg_url: str) -> None:
    broadcast: list[int] = []
    queued: list[int] = []

    async def watch(change: EntityChange) -> None:
        broadcast.append(change.seq)

    async def work(change: EntityChange) -> None:
        queued.append(change.seq)

    admin = pg_url.replace("postgresql+psycopg://", "postgresql://")

    def kill_others() -> int:
        with psycopg.connect(admin, autocommit=True) as conn:
            return len(conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall())

    async with make_host(pg_url, (watch, None), (work, WorkQueue("g"))) as host:
        written: list[int] = []
        for round_ in range(3):
            for n in range(5):
                # A write after the kill finds its pooled connection dead before anything
                # committed: it runs again on a fresh connection, the caller never knows.
                write = await host.entity(KIND).write(f"e{n}", bump)
                assert write.change is not None
                written.append(write.change.seq)
            assert await anyio.to_thread.run_sync(kill_others) >= 1, round_
            await anyio.sleep(0.2)
        await host.drain(timeout=30)
    assert sorted(broadcast) == sorted(written) == sorted(queued)


async def test_a_unit_of_work_rolled_back_by_a_deadlock_runs_again(pg_url: str) -> None:
    runs: Counter[str] = Counter()

    def unit(tx: Any, name: str, first: str, second: str) -> str:
        runs[name] += 1
        host.lock_in(tx, "test", first)
        time.sleep(0.3)  # both hold their first lock before either asks for its second
        host.lock_in(tx, "test", second)
        tx.execute(text("INSERT INTO entity_state (kind, entity_id, state, updated_at) "
                        "VALUES ('item', :id, '{\"n\": 1}', now())"), {"id": name})
        return name

    async with make_host(pg_url) as host:
        async with anyio.create_task_group() as tg:
            results: list[str] = []

            async def run(name: str, first: str, second: str) -> None:
                results.append(await host.run(unit, name, first, second))

            tg.start_soon(run, "a", "x", "y")
            tg.start_soon(run, "b", "y", "x")
        assert sorted(results) == ["a", "b"]
        assert sorted(await host.entity(KIND).ids()) == ["a", "b"]  # each written once
    assert sorted(runs.values()) == [1, 2]  # the deadlock's victim ran again


async def test_recording_outcomes_never_deadlocks_with_group_committed_writes(
    pg_url: str,
) -> None:
    # Thirty-two writers, each on entities of its own, group-committed in several lanes,
    # while the dispatcher records finished handlers of those same entities. Recording
    # a finished head takes its entity's lock without waiting, in a transaction of its
    # own: no lock cycle with a batch that holds several entities' locks.
    handled = Counter[str]()

    async def work(change: EntityChange) -> None:
        await anyio.sleep(0.002)  # heads stay pending while the next writes enqueue
        handled[change.id] += 1

    writers, writes = 32, 40
    async with make_host(pg_url, (work, WorkQueue("g")), poll_interval=0.01) as host:
        async def writer(w: int) -> None:
            for n in range(writes):
                await host.entity(KIND).mutate(f"w{w}-{n % 3}", bump)

        async with anyio.create_task_group() as tg:
            for w in range(writers):
                tg.start_soon(writer, w)
        await host.drain()
        assert sum(handled.values()) == writers * writes
        assert await host.deliveries(dead=True) == []
    # The host's connections are closed: their statistics are flushed.
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        (deadlocks,) = conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone() or (None,)
    assert deadlocks == 0


async def test_the_dispatcher_never_waits_for_a_write_holding_an_entity(pg_url: str) -> None:
    # A write holds its entity's lock until its group commit ends. Recording that
    # entity's finished delivery waits for it, without holding up other entities' work.
    handled: list[str] = []

    async def work(change: EntityChange) -> None:
        handled.append(change.id)

    admin = pg_url.replace("postgresql+psycopg://", "postgresql://")
    async with make_host(pg_url, (work, WorkQueue("g"))) as host:
        await host.entity(KIND).mutate("held", bump)
        with psycopg.connect(admin) as writing:
            writing.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(KIND, "held"),))
            with anyio.fail_after(10):
                while "held" not in handled:
                    await anyio.sleep(0.01)
                await host.entity(KIND).mutate("other", bump)
                while "other" not in handled:
                    await anyio.sleep(0.01)
                # "other" recorded; "held" ran but is recorded only once the lock is free.
                while [d.entity_id for d in await host.deliveries(status="pending")] != [
                        "held"]:
                    await anyio.sleep(0.01)
            writing.rollback()
        with anyio.fail_after(10):
            await host.drain()
        assert await host.deliveries(status="pending") == []
        assert sorted(handled) == ["held", "other"]


async def test_log_filters_that_no_write_can_store_match_nothing(pg_url: str) -> None:
    async with make_host(pg_url) as host:
        await host.entity(KIND).mutate("a", bump)
        for bad in ("a\x00", "\ud800"):
            assert await host.changes(kind=KIND, entity_id=bad) == []
            assert await host.transitions(kind=KIND, entity_id=bad) == []
            assert await host.transitions(kind=KIND, field=bad) == []
        assert len(await host.changes(kind=KIND, entity_id="a")) == 1
