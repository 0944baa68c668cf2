"""Faults the work queue, the feed and the write path survive (SQLite).

Each test reproduces a fault as an attacker would cause it and checks its defined
outcome: a handler that raises anything fails only its own attempt, one unit of a
group commit that raises anything fails alone, transient database errors in the
background loops delay work but never end the host.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import anyio
import pytest
from sqlalchemy.exc import OperationalError

from plugins_for_tests import BOTH, CorePlugin, SubscriberPlugin, increment
from reactive_core import EntityChange, Host, RetryPolicy, WorkQueue

pytestmark = pytest.mark.anyio

RAISED = [
    RuntimeError("boom"), asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(3),
    type("Custom", (BaseException,), {})("mine"),
]
RAISED_IDS = ["exception", "cancelled", "keyboard-interrupt", "system-exit", "custom-base"]


def make_host(url: str, *plugins: object, **config: Any) -> Host:
    settings = {"poll_interval": 0.05, "retry_base_seconds": 0.01, "run_jobs": False,
                "shutdown_timeout_seconds": 0.5, **config}
    return Host(database_url=url, plugins=[CorePlugin(), *plugins], entry_points=False,
                config=settings)


@pytest.mark.parametrize("raised", RAISED, ids=RAISED_IDS)
async def test_a_work_queue_handler_raising_anything_is_retried_then_dead_lettered(
    sqlite_url: str, raised: BaseException,
) -> None:
    attempts: list[str] = []
    handled: list[str] = []

    async def handler(change: EntityChange) -> None:
        if change.id == "poison":
            attempts.append(change.change_id)
            raise raised
        handled.append(change.id)

    queue = WorkQueue("g", retry=RetryPolicy(max_retries=2, base_seconds=0.01))
    async with make_host(sqlite_url, SubscriberPlugin("counter", handler, queue)) as host:
        counters = host.entity("counter")
        await counters.mutate("poison", increment)
        await counters.mutate("fine", increment)
        await host.drain()
        await counters.mutate("later", increment)  # the host still delivers
        await host.drain()
        dead = await host.deliveries(dead=True)
    assert len(attempts) == 3 and len(set(attempts)) == 1  # 1 run + 2 retries, one change
    assert handled == ["fine", "later"]
    assert [(d.entity_id, d.attempts) for d in dead] == [("poison", 3)]
    assert dead[0].last_error is not None and dead[0].last_error.startswith(type(raised).__name__)


@pytest.mark.parametrize("raised", RAISED, ids=RAISED_IDS)
async def test_a_broadcast_handler_raising_anything_is_logged_and_the_others_still_run(
    sqlite_url: str, raised: BaseException, caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    async def bad(change: EntityChange) -> None:
        raise raised

    async def good(change: EntityChange) -> None:
        seen.append(change.id)

    async with make_host(sqlite_url, SubscriberPlugin("counter", bad, name="bad"),
                         SubscriberPlugin("counter", good, name="good")) as host:
        for entity in ("a", "b"):
            await host.entity("counter").mutate(entity, increment)
        await host.drain()
    assert seen == ["a", "b"]
    failures = [r for r in caplog.records if "broadcast handler" in r.getMessage()]
    assert len(failures) == 2 and type(raised).__name__ in failures[0].getMessage()


@BOTH
async def test_a_handler_running_past_its_timeout_fails_that_attempt(sqlite_url: str) -> None:
    runs: list[int] = []

    async def slow(change: EntityChange) -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            await anyio.sleep(10)

    queue = WorkQueue("g", timeout_seconds=0.1)
    async with make_host(sqlite_url, SubscriberPlugin("counter", slow, queue)) as host:
        await host.entity("counter").mutate("a", increment)
        await host.drain()
        (row,) = await host.deliveries()
    assert runs == [0, 1]
    assert (row.status, row.attempts) == ("done", 2)


@BOTH
@pytest.mark.parametrize("reaction", ["raises-another-error", "returns"])
async def test_a_handler_cut_off_at_its_timeout_fails_whatever_it_makes_of_the_cut_off(
    sqlite_url: str, reaction: str,
) -> None:
    async def stubborn(change: EntityChange) -> None:
        try:
            await anyio.sleep(10)
        except BaseException:  # noqa: BLE001 - what a careless handler does
            if reaction == "raises-another-error":
                raise ValueError("interrupted") from None
            return

    queue = WorkQueue("g", timeout_seconds=0.1, retry=RetryPolicy(max_retries=0))
    async with make_host(sqlite_url, SubscriberPlugin("counter", stubborn, queue)) as host:
        with anyio.fail_after(5):
            await host.entity("counter").mutate("a", increment)
            await host.drain()
        (row,) = await host.deliveries()
    assert (row.status, row.attempts) == ("dead", 1)
    assert row.last_error == "TimeoutError: the handler ran longer than 0.1s"


@BOTH
async def test_a_short_timeout_after_a_long_one_in_the_same_worker_still_cuts_off(
    sqlite_url: str,
) -> None:
    """The two deliveries of one change are claimed together and run by one worker, the
    long-timeout group's first (it never waits, so no other worker takes the second):
    the short-timeout handler is cut off after its own 0.2 s, not the other's 300 s."""
    handled: list[str] = []

    async def quick(change: EntityChange) -> None:
        handled.append(change.id)

    async def stuck(change: EntityChange) -> None:
        await anyio.sleep(10)

    async with make_host(
        sqlite_url,
        SubscriberPlugin("counter", quick, WorkQueue("a-long", timeout_seconds=300),
                         name="quick"),
        SubscriberPlugin("counter", stuck, WorkQueue(
            "b-short", timeout_seconds=0.2, retry=RetryPolicy(max_retries=0)), name="stuck"),
    ) as host:
        with anyio.fail_after(10):
            await host.entity("counter").mutate("e", increment)
            await host.drain()
        dead = await host.deliveries(dead=True)
    assert handled == ["e"]
    assert [(d.group, d.entity_id) for d in dead] == [("b-short", "e")]
    assert dead[0].last_error == "TimeoutError: the handler ran longer than 0.2s"


@BOTH
async def test_a_workers_deadline_follows_each_handler_within_a_tenth_of_its_timeout(
) -> None:
    from reactive_core._delivery.dispatcher import _bound

    with anyio.CancelScope() as watch:
        _bound(watch, 4.0)  # the window: 4 to 4.4 s from now
        first = watch.deadline
        assert anyio.current_time() + 4.0 <= first <= anyio.current_time() + 4.4
        await anyio.sleep(0.01)
        _bound(watch, 4.0)
        assert watch.deadline == first  # still in its window: the timer is not moved
        await anyio.sleep(0.25)  # past the middle of the window, where it was set
        _bound(watch, 4.0)
        assert watch.deadline > first  # later handlers need it later
        assert anyio.current_time() + 4.0 <= watch.deadline
        _bound(watch, 0.2)
        assert watch.deadline <= anyio.current_time() + 0.22  # a shorter timeout
    assert not watch.cancel_called


async def test_one_unit_raising_keyboard_interrupt_fails_alone_in_its_group_commit(
    sqlite_url: str,
) -> None:
    outcomes: dict[str, str] = {}

    def interrupt(tx: Any, prev: Any) -> Any:
        raise KeyboardInterrupt

    async with make_host(sqlite_url) as host:
        counters = host.entity("counter")
        # Hold the writer so that the eight writes below queue up into one batch.
        gate = threading.Event()

        async def hold() -> None:
            await host.run(lambda tx: gate.wait(5))

        async def write(entity: str) -> None:
            try:
                await counters.mutate(entity, interrupt if entity == "e3" else increment)
                outcomes[entity] = "committed"
            except KeyboardInterrupt:
                outcomes[entity] = "KeyboardInterrupt"

        async with anyio.create_task_group() as tg:
            tg.start_soon(hold)
            await anyio.sleep(0.05)
            for n in range(8):
                tg.start_soon(write, f"e{n}")
            await anyio.sleep(0.05)
            gate.set()
        stored = await counters.all()
    assert outcomes == {f"e{n}": ("KeyboardInterrupt" if n == 3 else "committed")
                        for n in range(8)}
    assert sorted(stored) == [f"e{n}" for n in range(8) if n != 3]


async def test_a_caller_leading_the_writer_returns_while_others_keep_writing(
    sqlite_url: str,
) -> None:
    """The caller that leads the group commit hands the writer over once its own unit is
    committed, instead of committing everybody's units for as long as they come."""
    async with make_host(sqlite_url) as host:
        counters = host.entity("counter")
        gate = threading.Event()
        streamed = 0
        stop = anyio.Event()
        seen_by_leader: list[int] = []

        async def stream() -> None:
            nonlocal streamed
            while not stop.is_set() and streamed < 300:
                await counters.mutate("s", increment)
                streamed += 1

        async def lead() -> None:
            # The writer is idle: this caller leads, and holds its batch until the
            # stream's first write is queued behind it.
            await host.run(lambda tx: gate.wait(5))
            seen_by_leader.append(streamed)
            stop.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(lead)
            await anyio.sleep(0.05)
            tg.start_soon(stream)
            await anyio.sleep(0.05)
            gate.set()
        stored = await counters.get("s")
    assert seen_by_leader[0] <= 2, seen_by_leader  # 300 when the leader kept the writer
    assert stored is not None and stored.n == streamed


async def test_the_feed_and_the_dispatcher_survive_transient_database_errors(
    sqlite_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    broadcast: list[str] = []
    queued: list[str] = []

    async def watch(change: EntityChange) -> None:
        broadcast.append(change.id)

    async def work(change: EntityChange) -> None:
        queued.append(change.id)

    async with make_host(sqlite_url, SubscriberPlugin("counter", watch, name="watch"),
                         SubscriberPlugin("counter", work, WorkQueue("g"), name="work")) as host:
        failures = {"feed": 3, "claim": 3}

        def flaky(name: str, real: Any) -> Any:
            def call(*args: Any, **kwargs: Any) -> Any:
                if failures[name] > 0:
                    failures[name] -= 1
                    raise OperationalError("SELECT …", {}, Exception("database is locked"))
                return real(*args, **kwargs)
            return call

        host.feed._read = flaky("feed", host.feed._read)  # type: ignore[method-assign]
        host._queue.claim = flaky("claim", host._queue.claim)  # type: ignore[method-assign]
        caplog.set_level(logging.ERROR, "reactive_core.supervise")
        for entity in ("a", "b", "c"):
            await host.entity("counter").mutate(entity, increment)
        await host.drain(timeout=20)
    assert failures == {"feed": 0, "claim": 0}
    assert broadcast == ["a", "b", "c"] and sorted(queued) == ["a", "b", "c"]
    restarts = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("broadcast feed failed") for m in restarts)
    assert any(m.startswith("work-queue dispatcher failed") for m in restarts)


async def test_a_unit_failing_mid_result_leaves_no_stale_reader_behind(
    sqlite_url: str, anyio_backend: str, caplog: pytest.LogCaptureFixture,
) -> None:
    # SQLite keeps the read snapshot of a statement left open by a unit that raised
    # while iterating it, even after ROLLBACK: a pooled reader reused afterwards would
    # miss every later commit. Here the error is logged with its traceback (as jobs and
    # timers do), which keeps the half-read result alive.
    from sqlalchemy import text

    log = logging.getLogger("test.stale")

    async with Host(database_url=sqlite_url, plugins=[], entry_points=False,
                    config={"run_jobs": False}) as host:
        await host.run(lambda tx: tx.exec_driver_sql("CREATE TABLE t (x INTEGER)"))
        await host.run(lambda tx: tx.exec_driver_sql(
            "INSERT INTO t VALUES (1), (2), (3)"))

        def check(x: int) -> int:
            if x == 2:
                raise LookupError("stop halfway")
            return x

        def half_read(tx: Any) -> list[int]:
            return [check(row.x) for row in tx.execute(text("SELECT x FROM t ORDER BY x"))]

        for _ in range(6):  # every pooled reader, and the writer
            for unit in (host.read, host.run):
                try:
                    await unit(half_read)
                except LookupError:
                    log.exception("a unit failed")
        for n in range(4, 10):
            await host.run(lambda tx, n=n: tx.exec_driver_sql(f"INSERT INTO t VALUES ({n})"))
            counts = [await host.read(lambda tx: tx.exec_driver_sql(
                "SELECT count(*) FROM t").scalar_one()) for _ in range(8)]
            assert counts == [n] * 8
