"""Several hosts on one PostgreSQL database: the cluster guarantees of SPEC §1.3 and §3.

Every test opens real hosts against a fresh database (`pg_url`). A "cluster" is two
`Host` objects in this process, each with its own plugin instance and its own
bookkeeping; they share nothing but the database, exactly like two `reactive serve`
processes. The one exception is the frozen-worker test, which runs host A on its own
event loop in a worker thread so that blocking that loop really stops A's heartbeats.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import pytest
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection

from reactive_core import Broadcast, EntityChange, Host, WorkQueue, hookimpl

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]

KIND = "tally"
Handler = Callable[[EntityChange], Awaitable[None]]
Subscription = tuple[Handler, Broadcast | WorkQueue]


class Count(BaseModel):
    """A store-backed counter state."""

    model_config = ConfigDict(frozen=True)

    n: int


def bump(tx: Connection, prev: Count | None) -> Count:
    return Count(n=(prev.n if prev is not None else 0) + 1)


class ClusterPlugin:
    """Defines the store-backed kind `tally` and subscribes this host's handlers to it."""

    name = "cluster-test"

    def __init__(self, subscriptions: Sequence[Subscription]) -> None:
        self.subscriptions = list(subscriptions)

    @hookimpl
    def reactive_register(self, registry: Any) -> None:
        registry.define_entity(KIND, state=Count)
        for handler, delivery in self.subscriptions:
            registry.on_entity_changed(KIND, handler, delivery=delivery)


def make_host(
    pg_url: str, *subscriptions: Subscription, instance_id: str, **config: Any,
) -> Host:
    settings: dict[str, Any] = {
        "poll_interval": 0.05, "retry_base_seconds": 0.01, "lease_seconds": 1.0,
        "run_jobs": False, "shutdown_timeout_seconds": 0.3, **config,
    }
    return Host(database_url=pg_url, plugins=[ClusterPlugin(subscriptions)],
                entry_points=False, config=settings, instance_id=instance_id)


def assert_gapless_chain(changes: list[EntityChange], total: int) -> None:
    """Changes (in seq order) count 1..total, each continuing exactly where the last ended."""
    assert len(changes) == total
    seqs = [c.seq for c in changes]
    assert seqs == sorted(seqs) and len(set(seqs)) == total
    for k, change in enumerate(changes, start=1):
        prev_n = None if change.prev is None else change.prev["n"]
        assert prev_n == (None if k == 1 else k - 1), f"change {k} has prev {change.prev}"
        assert change.next == {"n": k}, f"change {k} has next {change.next}"


def assert_per_entity_seq_order(seen: list[tuple[str, int]]) -> None:
    """For every entity, the (entity, seq) pairs in handling order have increasing seqs."""
    by_entity: dict[str, list[int]] = {}
    for entity_id, seq in seen:
        by_entity.setdefault(entity_id, []).append(seq)
    for entity_id, seqs in by_entity.items():
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), (entity_id, seqs)


@dataclass
class Recorder:
    """One host's own bookkeeping of the changes its handler saw."""

    seen: list[EntityChange] = field(default_factory=list)

    async def handle(self, change: EntityChange) -> None:
        self.seen.append(change)

    @property
    def ids(self) -> list[str]:
        return [c.change_id for c in self.seen]


# -- 1, 2: concurrent mutations of one entity serialize ------------------------------


async def test_concurrent_increments_on_one_host_lose_nothing(pg_url: str) -> None:
    async with make_host(pg_url, instance_id="host-a") as host:
        handle = host.entity(KIND)
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(handle.mutate, "x", bump)
        assert await handle.get("x") == Count(n=50)
        assert_gapless_chain(await host.changes(kind=KIND, entity_id="x"), 50)


async def test_concurrent_increments_across_two_hosts_lose_nothing(pg_url: str) -> None:
    async with make_host(pg_url, instance_id="host-a") as host_a, \
            make_host(pg_url, instance_id="host-b") as host_b:
        async with anyio.create_task_group() as tg:
            for _ in range(25):
                tg.start_soon(host_a.entity(KIND).mutate, "x", bump)
                tg.start_soon(host_b.entity(KIND).mutate, "x", bump)
        assert await host_a.entity(KIND).get("x") == Count(n=50)
        assert await host_b.entity(KIND).get("x") == Count(n=50)
        assert_gapless_chain(await host_b.changes(kind=KIND, entity_id="x"), 50)


# -- 3: broadcast reaches every instance exactly once, in per-entity order -----------


async def test_broadcast_reaches_every_host_exactly_once_in_entity_order(pg_url: str) -> None:
    rec_a, rec_b = Recorder(), Recorder()
    async with make_host(pg_url, (rec_a.handle, Broadcast()), instance_id="host-a") as host_a, \
            make_host(pg_url, (rec_b.handle, Broadcast()), instance_id="host-b") as host_b:
        async with anyio.create_task_group() as tg:
            for round_ in range(5):
                for e in range(12):
                    tg.start_soon(host_a.entity(KIND).mutate, f"e{e}", bump)
                    tg.start_soon(host_b.entity(KIND).mutate, f"e{(e + round_) % 12}", bump)
        await host_a.drain(timeout=20)
        await host_b.drain(timeout=20)

        logged = await host_a.changes(kind=KIND)
        assert len(logged) == 120
        expected = {c.change_id for c in logged}
        for rec in (rec_a, rec_b):
            assert len(rec.ids) == len(expected), Counter(rec.ids).most_common(3)
            assert set(rec.ids) == expected
            assert_per_entity_seq_order([(c.id, c.seq) for c in rec.seen])


# -- 4: a work queue shared by two hosts handles each change exactly once ------------


async def test_work_queue_across_two_hosts_handles_each_change_once_in_entity_order(
    pg_url: str,
) -> None:
    ticket = itertools.count()  # global handling order, across both hosts
    handled: list[tuple[int, str, str, str, int]] = []  # (order, host, change_id, entity, seq)
    in_flight: set[str] = set()
    overlaps: list[str] = []
    backlog_ready = anyio.Event()  # handlers wait until all 200 changes are queued

    class Worker:
        def __init__(self, host: str) -> None:
            self.host = host
            self.mine: list[str] = []  # this host's own bookkeeping

        async def handle(self, change: EntityChange) -> None:
            await backlog_ready.wait()
            if change.id in in_flight:
                overlaps.append(change.id)
            in_flight.add(change.id)
            handled.append((next(ticket), self.host, change.change_id, change.id, change.seq))
            self.mine.append(change.change_id)
            try:
                await anyio.sleep(random.uniform(0, 0.004))
            finally:
                in_flight.discard(change.id)

    work_a, work_b = Worker("host-a"), Worker("host-b")
    config = {"dispatch_concurrency": 12}  # more workers in flight than entities
    async with make_host(pg_url, (work_a.handle, WorkQueue("g")), instance_id="host-a",
                         **config) as host_a, \
            make_host(pg_url, (work_b.handle, WorkQueue("g")), instance_id="host-b",
                      **config) as host_b:
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                for e in range(20):
                    tg.start_soon(host_a.entity(KIND).mutate, f"e{e}", bump)
                    tg.start_soon(host_b.entity(KIND).mutate, f"e{e}", bump)
        backlog_ready.set()
        await host_a.drain(timeout=30)
        await host_b.drain(timeout=30)

        logged = await host_a.changes(kind=KIND)
        assert len(logged) == 200
        counts = Counter(change_id for _, _, change_id, _, _ in handled)
        assert set(counts) == {c.change_id for c in logged}
        assert max(counts.values()) == 1, counts.most_common(3)
        assert overlaps == []
        assert_per_entity_seq_order([(entity, seq) for _, _, _, entity, seq in sorted(handled)])
        assert work_a.mine and work_b.mine, (len(work_a.mine), len(work_b.mine))
        deliveries = await host_b.deliveries(group="g", limit=1000)
        assert len(deliveries) == 200
        assert {(d.status, d.attempts, d.lease_owner) for d in deliveries} == {("done", 1, None)}


# -- 5: retries, dead letters, replay, order under retries ---------------------------


async def test_failing_delivery_is_retried_dead_lettered_then_replayed(pg_url: str) -> None:
    @dataclass
    class Flaky:
        healthy: bool = False
        attempts: list[str] = field(default_factory=list)
        handled: list[str] = field(default_factory=list)

        async def handle(self, change: EntityChange) -> None:
            self.attempts.append(change.change_id)
            if not self.healthy:
                raise RuntimeError(f"downstream refused {change.id}")
            self.handled.append(change.change_id)

    flaky_a, flaky_b = Flaky(), Flaky()
    queue = WorkQueue("g", max_retries=2)
    async with make_host(pg_url, (flaky_a.handle, queue), instance_id="host-a") as host_a, \
            make_host(pg_url, (flaky_b.handle, queue), instance_id="host-b") as host_b:
        await host_a.entity(KIND).mutate("x", bump)
        await host_a.drain(timeout=10)
        await host_b.drain(timeout=10)
        (change,) = await host_a.changes(kind=KIND)
        assert len(flaky_a.attempts) + len(flaky_b.attempts) == 3
        assert set(flaky_a.attempts + flaky_b.attempts) == {change.change_id}

        (dead,) = await host_b.deliveries(dead=True)
        assert (dead.status, dead.attempts, dead.change_seq) == ("dead", 3, change.seq)
        assert dead.last_error == "RuntimeError: downstream refused x"

        flaky_a.healthy = flaky_b.healthy = True
        await host_b.replay(dead.id)
        await host_a.drain(timeout=10)
        await host_b.drain(timeout=10)
        assert flaky_a.handled + flaky_b.handled == [change.change_id]
        assert await host_a.deliveries(dead=True) == []
        (row,) = await host_a.deliveries(group="g")
        assert (row.id, row.status, row.attempts) == (dead.id, "done", 1)


async def test_later_change_waits_while_an_earlier_one_is_retried(pg_url: str) -> None:
    log: list[tuple[str, int, str]] = []  # (event, n, host) in the order it happened
    second_committed = anyio.Event()
    failures = {"left": 2}  # a flaky downstream both hosts talk to

    def worker(host: str) -> Handler:
        async def handle(change: EntityChange) -> None:
            n = change.next["n"] if change.next else -1
            log.append(("start", n, host))
            if n == 1:
                await second_committed.wait()  # so change 2 is queued during change 1's retries
                if failures["left"]:
                    failures["left"] -= 1
                    log.append(("fail", n, host))
                    raise ConnectionError("downstream unavailable")
            await anyio.sleep(0.01)
            log.append(("done", n, host))

        return handle

    async with make_host(pg_url, (worker("host-a"), WorkQueue("g")),
                         instance_id="host-a") as host_a, \
            make_host(pg_url, (worker("host-b"), WorkQueue("g")),
                      instance_id="host-b") as host_b:
        await host_a.entity(KIND).mutate("x", bump)
        await host_b.entity(KIND).mutate("x", bump)
        second_committed.set()
        await host_a.drain(timeout=10)
        await host_b.drain(timeout=10)

        events = [(event, n) for event, n, _ in log]
        assert events == [("start", 1), ("fail", 1), ("start", 1), ("fail", 1),
                          ("start", 1), ("done", 1), ("start", 2), ("done", 2)]
        first, second = await host_a.changes(kind=KIND)
        rows = {d.change_seq: d for d in await host_b.deliveries(group="g")}
        assert (rows[first.seq].status, rows[first.seq].attempts) == ("done", 3)
        assert rows[first.seq].last_error is None
        assert (rows[second.seq].status, rows[second.seq].attempts) == ("done", 1)


# -- 6: a delivery whose worker goes away is finished by another host ----------------


async def test_host_stopping_mid_handler_hands_its_delivery_to_another(pg_url: str) -> None:
    a_started, never = anyio.Event(), anyio.Event()
    a_seen: list[str] = []
    a_cancelled: list[str] = []
    rec_b = Recorder()

    async def stuck(change: EntityChange) -> None:
        a_seen.append(change.change_id)
        a_started.set()
        try:
            await never.wait()
        except anyio.get_cancelled_exc_class():
            a_cancelled.append(change.change_id)
            raise

    host_a = make_host(pg_url, (stuck, WorkQueue("g")), instance_id="host-a")
    stop_a, a_stopped = anyio.Event(), anyio.Event()

    async def run_a(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with host_a:
            task_status.started()
            await stop_a.wait()
        a_stopped.set()

    async with anyio.create_task_group() as tg:
        await tg.start(run_a)
        await host_a.entity(KIND).mutate("x", bump)
        with anyio.fail_after(10):
            await a_started.wait()
        async with make_host(pg_url, (rec_b.handle, WorkQueue("g")),
                             instance_id="host-b") as host_b:
            # A's heartbeats keep its lease alive past lease_seconds: B must not steal it.
            await anyio.sleep(1.5)
            assert rec_b.ids == []
            (leased,) = await host_b.deliveries(group="g")
            assert (leased.status, leased.lease_owner) == ("pending", "host-a")

            stop_a.set()
            with anyio.fail_after(10):
                await a_stopped.wait()
            await host_b.drain(timeout=10)

            assert a_cancelled == a_seen
            assert rec_b.ids == a_seen
            (row,) = await host_b.deliveries(group="g")
            # A cut off the run when its shutdown deadline passed: that run counts as an
            # attempt, and its lease was handed back at once for B to take over.
            assert host_a.abandoned == [f"delivery {row.id} (g {KIND}:x)"]
            assert (row.status, row.attempts, row.lease_owner) == ("done", 2, None)


async def test_frozen_host_loses_its_lease_and_another_finishes_the_delivery(
    pg_url: str,
) -> None:
    """Host A runs on its own event loop in a worker thread; its handler then blocks that
    whole loop (like a stopped process), so no heartbeat can extend its lease. A thaws
    while B is still handling the delivery: A's late outcome must not touch B's lease."""
    claimed, thaw, stop = threading.Event(), threading.Event(), threading.Event()
    a_seen: list[str] = []
    a_done = anyio.Event()
    b_seen: list[str] = []
    b_started, b_release = anyio.Event(), anyio.Event()

    async def freeze(change: EntityChange) -> None:
        a_seen.append(change.change_id)
        claimed.set()
        thaw.wait(30)  # deliberately blocking: A's event loop stops here

    async def slow_b(change: EntityChange) -> None:
        b_seen.append(change.change_id)
        b_started.set()
        await b_release.wait()

    async def run_a() -> None:
        async with make_host(pg_url, (freeze, WorkQueue("g")), instance_id="host-a") as host_a:
            await host_a.entity(KIND).mutate("x", bump)
            while not stop.is_set():
                await anyio.sleep(0.02)

    async def run_a_in_thread() -> None:
        try:
            await anyio.to_thread.run_sync(anyio.run, run_a)
        finally:
            a_done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_a_in_thread)
        try:
            assert await anyio.to_thread.run_sync(claimed.wait, 10), "host A claimed nothing"
            async with make_host(pg_url, (slow_b, WorkQueue("g")),
                                 instance_id="host-b") as host_b:
                with anyio.fail_after(10):  # A's 1 s lease runs out; B takes over
                    await b_started.wait()
                assert b_seen == a_seen

                # A wakes up mid-way through B's run, finishes late, and shuts down.
                thaw.set()
                stop.set()
                with anyio.fail_after(10):
                    await a_done.wait()
                (row,) = await host_b.deliveries(group="g")
                assert (row.status, row.attempts, row.lease_owner) == ("pending", 2, "host-b")

                b_release.set()
                await host_b.drain(timeout=10)
                (row,) = await host_b.deliveries(group="g")
                assert (row.status, row.attempts, row.lease_owner) == ("done", 2, None)
                assert b_seen == a_seen
        finally:
            thaw.set()
            stop.set()


# -- 7, 8: the broadcast feed across hosts -------------------------------------------


async def test_notify_wakes_other_hosts_long_before_the_poll_interval(pg_url: str) -> None:
    arrived: dict[str, anyio.Event] = {}

    async def on_change(change: EntityChange) -> None:
        arrived.setdefault(change.change_id, anyio.Event()).set()

    async with make_host(pg_url, instance_id="host-a", poll_interval=30.0) as host_a, \
            make_host(pg_url, (on_change, Broadcast()), instance_id="host-b",
                      poll_interval=30.0):
        # The first change may be picked up by B's start-up poll; the later ones can only
        # reach B's idle feed through LISTEN/NOTIFY (or the 30 s poll, too late here).
        for i in range(3):
            await host_a.entity(KIND).mutate(f"x{i}", bump)
            (change,) = await host_a.changes(kind=KIND, entity_id=f"x{i}")
            with anyio.fail_after(5):
                await arrived.setdefault(change.change_id, anyio.Event()).wait()


async def test_feed_delivers_a_lower_seq_that_commits_after_a_higher_one(pg_url: str) -> None:
    rec_a, rec_b = Recorder(), Recorder()
    taken, commit = threading.Event(), threading.Event()
    y_seen = anyio.Event()

    async def watch_b(change: EntityChange) -> None:
        await rec_b.handle(change)
        if change.id == "y":
            y_seen.set()

    async with make_host(pg_url, (rec_a.handle, Broadcast()), instance_id="host-a") as host_a, \
            make_host(pg_url, (watch_b, Broadcast()), instance_id="host-b") as host_b:
        handle = host_a.entity(KIND)

        def write_x_and_hold_the_commit() -> None:
            with host_a._db.engine.connect() as conn:
                tx = conn.begin()
                try:
                    handle.mutate_in(conn, "x", bump)  # takes its seq now
                    taken.set()
                    if not commit.wait(15):
                        raise TimeoutError("never told to commit")
                    tx.commit()
                finally:
                    if tx.is_active:
                        tx.rollback()

        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, write_x_and_hold_the_commit)
            try:
                assert await anyio.to_thread.run_sync(taken.wait, 10)
                await host_a.entity(KIND).mutate("y", bump)
                with anyio.fail_after(5):
                    await y_seen.wait()  # B's feed has moved past y's (higher) seq
            finally:
                commit.set()

        await host_a.drain(timeout=10)
        await host_b.drain(timeout=10)
        (x_change,) = await host_a.changes(kind=KIND, entity_id="x")
        (y_change,) = await host_a.changes(kind=KIND, entity_id="y")
        assert x_change.seq < y_change.seq
        for rec in (rec_a, rec_b):
            assert sorted(rec.ids) == sorted([x_change.change_id, y_change.change_id])
        assert rec_b.ids == [y_change.change_id, x_change.change_id]


# -- a work-queue group is a cluster-wide subscription -------------------------------


async def test_work_queue_group_on_another_host_receives_changes_written_here(
    pg_url: str,
) -> None:
    rec_b = Recorder()
    async with make_host(pg_url, instance_id="host-a") as host_a, \
            make_host(pg_url, (rec_b.handle, WorkQueue("audit")), instance_id="host-b") as host_b:
        await host_a.entity(KIND).mutate("x", bump)
        (change,) = await host_a.changes(kind=KIND)
        with anyio.fail_after(3):
            while not rec_b.seen:
                await host_b.drain(timeout=3)
                await anyio.sleep(0.05)
        assert rec_b.ids == [change.change_id]
