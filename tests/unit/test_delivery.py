"""Broadcast and work-queue delivery on SQLite: isolation, order, retries, dead letters."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from plugins_for_tests import CorePlugin, SubscriberPlugin, increment
from reactive_core import (
    Broadcast,
    DeliveryNotFound,
    EntityChange,
    Host,
    WorkQueue,
)

pytestmark = pytest.mark.anyio


def make_host(url: str, *plugins: object, **config: object) -> Host:
    settings = {"poll_interval": 0.05, "retry_base_seconds": 0.01, "run_jobs": False, **config}
    return Host(database_url=url, plugins=[CorePlugin(), *plugins], entry_points=False,
                config=settings)


async def test_broadcast_handlers_see_every_change_and_failures_are_isolated(
    sqlite_url: str,
) -> None:
    good: list[int] = []

    async def failing(change: EntityChange) -> None:
        raise RuntimeError("handler bug")

    async def recording(change: EntityChange) -> None:
        good.append(change.seq)

    async with make_host(sqlite_url, SubscriberPlugin("counter", failing, name="a"),
                         SubscriberPlugin("counter", recording, Broadcast(), name="b")) as host:
        for i in range(5):
            await host.entity("counter").mutate(f"c{i % 2}", increment)
        await host.drain()
        assert good == [c.seq for c in await host.changes()]


async def test_changes_before_start_are_not_broadcast(sqlite_url: str) -> None:
    async with make_host(sqlite_url) as host:
        await host.entity("counter").mutate("old", increment)
    seen: list[str] = []

    async def record(change: EntityChange) -> None:
        seen.append(change.id)

    async with make_host(sqlite_url, SubscriberPlugin("counter", record)) as host:
        await host.entity("counter").mutate("new", increment)
        await host.drain()
    assert seen == ["new"]


async def test_work_queue_retries_then_dead_letters_then_replays(sqlite_url: str) -> None:
    attempts: list[str] = []
    healthy = False

    async def flaky(change: EntityChange) -> None:
        attempts.append(change.change_id)
        if not healthy:
            raise ValueError(f"cannot handle {change.id}")

    async with make_host(sqlite_url, SubscriberPlugin("counter", flaky, WorkQueue("g", max_retries=2))) as host:
        await host.entity("counter").mutate("x", increment)
        await host.drain()
        assert len(attempts) == 3
        dead = await host.deliveries(dead=True)
        assert len(dead) == 1
        assert dead[0].status == "dead" and dead[0].attempts == 3
        assert dead[0].last_error == "ValueError: cannot handle x"
        healthy = True
        replayed = await host.replay(dead[0].id)
        assert replayed.status == "pending" and replayed.attempts == 0
        await host.drain()
        assert len(attempts) == 4
        (row,) = await host.deliveries()
        assert row.status == "done" and row.attempts == 1
        with pytest.raises(DeliveryNotFound, match="has status 'done'"):
            await host.replay(row.id)
        with pytest.raises(DeliveryNotFound, match="does not exist"):
            await host.replay(9999)


async def test_work_queue_keeps_per_entity_order_under_retries(sqlite_url: str) -> None:
    handled: list[tuple[str, int]] = []
    failures = {"a": 2}

    async def handler(change: EntityChange) -> None:
        if failures.get(change.id, 0) > 0 and change.next and change.next["n"] == 1:
            failures[change.id] -= 1
            raise RuntimeError("transient")
        await anyio.sleep(0.001 * (hash(change.change_id) % 5))
        handled.append((change.id, change.next["n"] if change.next else -1))

    async with make_host(sqlite_url, SubscriberPlugin("counter", handler, WorkQueue("g"))) as host:
        async with anyio.create_task_group() as tg:
            for entity in ("a", "b", "c"):
                async def bump(entity: str = entity) -> None:
                    for _ in range(5):
                        await host.entity("counter").mutate(entity, increment)
                tg.start_soon(bump)
        await host.drain()
    for entity in ("a", "b", "c"):
        assert [n for e, n in handled if e == entity] == [1, 2, 3, 4, 5]


async def test_every_group_gets_one_delivery_and_unsubscribe_stops_local_handling(
    sqlite_url: str,
) -> None:
    got: dict[str, list[int]] = {"one": [], "two": []}

    async def one(change: EntityChange) -> None:
        got["one"].append(change.seq)

    async def two(change: EntityChange) -> None:
        got["two"].append(change.seq)

    async with make_host(sqlite_url, SubscriberPlugin("counter", one, WorkQueue("one"), name="1"),
                         SubscriberPlugin("counter", two, WorkQueue("two"), name="2")) as host:
        await host.entity("counter").mutate("a", increment)
        await host.drain()
        assert len(got["one"]) == len(got["two"]) == 1
        assert {d.group for d in await host.deliveries()} == {"one", "two"}

        unsubscribe = host.registry.on_entity_changed("counter", one, delivery=Broadcast())
        unsubscribe()
        await host.entity("counter").mutate("a", increment)
        await host.drain()
        assert len(got["one"]) == 2


async def test_each_delivery_gets_its_own_copy_of_the_logged_change(
    sqlite_url: str,
) -> None:
    # Each delivery gets its own change, parsed from the log: what a handler (or the
    # writer) does to its change object never reaches another group, a retry, or the
    # writer's `Write.change`.
    seen: dict[str, list[EntityChange]] = {"one": [], "two": []}

    async def one(change: EntityChange) -> None:
        seen["one"].append(change)
        if len(seen["one"]) == 1:
            assert change.next is not None
            change.next["n"] = -1  # a handler bug, then a failure: retried
            raise RuntimeError("first attempt fails")

    async def two(change: EntityChange) -> None:
        seen["two"].append(change)

    async with make_host(sqlite_url, SubscriberPlugin("counter", one, WorkQueue("one"), name="1"),
                         SubscriberPlugin("counter", two, WorkQueue("two"), name="2")) as host:
        write = await host.entity("counter").write("a", increment)
        assert write.change is not None and write.change.next is not None
        write.change.next["label"] = "the writer's own edit"  # nobody else's business
        await host.drain()
        logged = [c for c in await host.changes() if c.id == "a"]
        assert len(logged) == 1 and write.change is not None
        assert len(seen["one"]) == 2 and len(seen["two"]) == 1
        retry, other = seen["one"][1], seen["two"][0]
        assert retry == other == logged[0]
        assert retry.next == other.next == {"n": 1, "label": None, "tags": {}}
        assert retry is not seen["one"][0] and other is not seen["one"][0]
        assert all(change is not write.change for changes in seen.values()
                   for change in changes)


async def test_cascading_mutations_are_drained(sqlite_url: str) -> None:
    host_ref: list[Host] = []

    async def cascade(change: EntityChange) -> None:
        if change.id == "first":
            await host_ref[0].entity("counter").mutate("second", increment)

    async with make_host(sqlite_url, SubscriberPlugin("counter", cascade, WorkQueue("c"))) as host:
        host_ref.append(host)
        await host.entity("counter").mutate("first", increment)
        await host.drain()
        assert [c.id for c in await host.changes()] == ["first", "second"]
        assert all(d.status == "done" for d in await host.deliveries())


async def test_clean_shutdown_hands_back_leases(sqlite_url: str) -> None:
    started = anyio.Event()

    async def hang(change: EntityChange) -> None:
        started.set()
        await anyio.sleep_forever()

    async with make_host(sqlite_url, SubscriberPlugin("counter", hang, WorkQueue("g")),
                         shutdown_timeout_seconds=0.2) as host:
        await host.entity("counter").mutate("a", increment)
        with anyio.fail_after(5):
            await started.wait()
    assert host.abandoned == ["delivery 1 (g counter:a)"]
    finished: list[str] = []

    async def finish(change: EntityChange) -> None:
        finished.append(change.id)

    async with make_host(sqlite_url, SubscriberPlugin("counter", finish, WorkQueue("g"))) as host:
        await host.drain()
        (row,) = await host.deliveries()
        # The run cut off by the shutdown counts as an attempt; the lease was handed
        # back, so the next instance ran it at once.
        assert finished == ["a"] and row.status == "done" and row.attempts == 2


async def test_groups_run_elsewhere_get_deliveries_and_expired_leases_count_as_attempts(
    sqlite_url: str,
) -> None:
    handled: list[str] = []

    async def handler(change: EntityChange) -> None:
        handled.append(change.id)

    subscriber = SubscriberPlugin("counter", handler, WorkQueue("g", max_retries=1))
    async with make_host(sqlite_url, subscriber):
        pass  # records the route (g, counter) for the cluster
    async with make_host(sqlite_url) as writer:  # no subscription to g here
        await writer.entity("counter").mutate("poison", increment)
        (row,) = await writer.deliveries()
        assert (row.group, row.status) == ("g", "pending")
        for _ in range(2):  # a worker that dies twice holding the lease
            claimed = await writer.run(lambda tx: writer._queue.claim(
                tx, routes=[("g", "counter")], owner="ghost", lease=0.0, limit=10))
            assert [d.id for d, _ in claimed] == [row.id]
            await anyio.sleep(0.01)
    async with make_host(sqlite_url, subscriber) as host:
        await host.drain()
        (row,) = await host.deliveries()
    assert handled == []
    assert row.status == "dead" and row.attempts == 2  # the two that ran; giving up is not one
    assert row.last_error is not None and row.last_error.startswith("LeaseExpired: 2 earlier")


async def test_a_host_without_workers_writes_but_handles_nothing(sqlite_url: str) -> None:
    from reactive_core import ReactiveCoreError

    handled: list[str] = []

    async def handler(change: EntityChange) -> None:
        handled.append(change.id)

    plugin = SubscriberPlugin("counter", handler, WorkQueue("g"))
    async with make_host(sqlite_url, plugin, workers=False) as client:
        await client.entity("counter").mutate("a", increment)
        with pytest.raises(ReactiveCoreError, match="workers=False"):
            await client.drain()
        await anyio.sleep(0.2)
        (row,) = await client.deliveries()
        assert row.status == "pending" and handled == []
    async with make_host(sqlite_url, plugin) as server:
        await server.drain()
    assert handled == ["a"]


async def test_work_queue_handlers_that_wait_run_side_by_side_up_to_the_limit(
    sqlite_url: str,
) -> None:
    running = 0
    most = 0
    release = anyio.Event()
    handled: list[str] = []

    async def waiting(change: EntityChange) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await release.wait()
        finally:
            running -= 1
        handled.append(change.id)

    async with make_host(sqlite_url, SubscriberPlugin("counter", waiting, WorkQueue("g")),
                         dispatch_concurrency=3) as host:
        for i in range(7):
            await host.entity("counter").mutate(f"e{i}", increment)
        with anyio.fail_after(10):
            while running < 3:
                await anyio.sleep(0.01)
        await anyio.sleep(0.2)  # time enough for a fourth, were the limit not kept
        assert (running, most) == (3, 3)
        release.set()
        await host.drain()
    assert sorted(handled) == [f"e{i}" for i in range(7)]


async def test_a_context_variable_a_handler_sets_is_not_seen_by_the_next(
    sqlite_url: str,
) -> None:
    import contextvars

    marker: contextvars.ContextVar[str | None] = contextvars.ContextVar("marker", default=None)
    seen: list[tuple[str, str | None]] = []

    async def leaky(change: EntityChange) -> None:
        seen.append((change.id, marker.get()))
        marker.set(f"set by {change.id}")

    async with make_host(sqlite_url, SubscriberPlugin("counter", leaky, WorkQueue("g"))) as host:
        for i in range(20):
            await host.entity("counter").mutate(f"e{i % 4}", increment)
        await host.drain()
    assert len(seen) == 20
    assert all(value is None for _, value in seen), seen


async def test_a_handler_that_cancels_its_own_task_leaves_the_others_running(
    sqlite_url: str,
) -> None:
    import asyncio

    handled: list[str] = []

    async def rogue(change: EntityChange) -> None:
        if change.id == "rogue":
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # and returns without awaiting: the request stays pending
        handled.append(change.id)

    async with make_host(sqlite_url, SubscriberPlugin("counter", rogue, WorkQueue("g"))) as host:
        await host.entity("counter").mutate("rogue", increment)
        for i in range(10):
            await host.entity("counter").mutate(f"e{i % 3}", increment)
        await host.drain()
        assert host.running
        await host.entity("counter").mutate("after", increment)
        await host.drain()
    assert sorted(handled) == sorted(["rogue", "after", *(f"e{i % 3}" for i in range(10))])


async def test_a_work_queue_handler_gets_the_change_exactly_as_logged(sqlite_url: str) -> None:
    from plugins_for_tests import Counter
    from reactive_core import Actor

    got: list[EntityChange] = []

    async def record(change: EntityChange) -> None:
        got.append(change)

    async with make_host(sqlite_url, SubscriberPlugin("counter", record, WorkQueue("g"))) as host:
        counters = host.entity("counter")
        await counters.mutate("a", lambda tx, prev: Counter(n=1, label="é \"quoted\" \\ ✓",
                                                             tags={"x": [1, 2.5, None]}))
        await counters.mutate("a", increment, actor=Actor("user", "alice"),
                              reason="line one\nline two")
        await counters.mutate("b", increment)
        await counters.remove("b")
        await host.drain()
        logged = await host.changes()
    assert len(got) == len(logged) == 4
    assert sorted(got, key=lambda c: c.seq) == logged
    assert logged[0].prev is None and logged[-1].next is None


async def test_handlers_that_never_wait_still_let_the_event_loop_run_other_tasks(
    sqlite_url: str,
) -> None:
    handled = 0
    gaps: list[int] = []

    async def quick(change: EntityChange) -> None:
        nonlocal handled
        handled += 1

    async with make_host(sqlite_url, SubscriberPlugin("counter", quick, WorkQueue("g"))) as host:
        counters = host.entity("counter")

        def many(tx: object) -> None:  # one commit: one claim round takes them all
            for i in range(200):
                counters.mutate_in(tx, f"e{i}", increment)  # type: ignore[arg-type]

        async def ticker() -> None:
            last = handled
            while handled < 200:
                await anyio.lowlevel.checkpoint()
                gaps.append(handled - last)
                last = handled

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await host.run(many)
        await host.drain()
    assert handled == 200
    # Between two turns of another task, the workers ran a few slices of 32 handlers
    # each (every worker yields after 32; the other tasks take turns in between), never
    # the whole round of 200 at once.
    assert max(gaps) <= 4 * 32, gaps
