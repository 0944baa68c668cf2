"""Durable timers on SQLite: fired once per cluster, across restarts, cancellable, re-armable;
scheduled jobs built on them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from reactive_core import (
    Host,
    RetryPolicy,
    Timer,
    TimerError,
    TimerStatus,
    hookimpl,
)

pytestmark = pytest.mark.anyio

FAST = {"poll_interval": 0.05, "run_jobs": False, "shutdown_timeout_seconds": 0.5}


class TimerPlugin:
    """Handles one timer topic with `handler`."""

    def __init__(self, topic: str, handler: Callable[[Timer], Awaitable[None]],
                 name: str = "timers", **options: Any) -> None:
        self.topic = topic
        self.handler = handler
        self.name = name
        self.options = options

    @hookimpl
    def reactive_register(self, registry: Any) -> None:
        registry.on_timer(self.topic, self.handler, **self.options)


class Fired:
    """Records firings: (timer, when it fired)."""

    def __init__(self) -> None:
        self.items: list[tuple[Timer, datetime]] = []
        self._changed = anyio.Event()

    async def __call__(self, timer: Timer) -> None:
        self.items.append((timer, datetime.now(UTC)))
        self._changed.set()
        self._changed = anyio.Event()

    async def wait(self, count: int, timeout: float = 5.0) -> None:
        with anyio.fail_after(timeout):
            while len(self.items) < count:
                await self._changed.wait()

    @property
    def keys(self) -> list[str]:
        return [t.key for t, _ in self.items]


def host(url: str, *plugins: object, instance_id: str | None = None, **config: Any) -> Host:
    return Host(database_url=url, plugins=list(plugins), entry_points=False,
                config={**FAST, **config}, instance_id=instance_id)


async def test_a_one_shot_timer_fires_with_its_payload_then_is_gone(sqlite_url: str) -> None:
    fired = Fired()
    async with host(sqlite_url, TimerPlugin("t", fired)) as h:
        armed = await h.timers.schedule("t", "k1", after=0.05, payload={"n": [1, 2]})
        assert armed.status is TimerStatus.SCHEDULED and not armed.recurring
        await fired.wait(1)
        timer, _ = fired.items[0]
        assert (timer.topic, timer.key, timer.payload, timer.due_at) == (
            "t", "k1", {"n": [1, 2]}, armed.due_at)
        await anyio.sleep(0.1)
        assert await h.timers.get("t", "k1") is None
        assert len(fired.items) == 1


async def test_each_timer_fires_once_across_two_hosts(sqlite_url: str) -> None:
    fired_a, fired_b = Fired(), Fired()
    async with host(sqlite_url, TimerPlugin("t", fired_a), instance_id="a") as a, \
            host(sqlite_url, TimerPlugin("t", fired_b), instance_id="b") as b:
        for n in range(40):
            await (a if n % 2 else b).timers.schedule("t", f"k{n}", after=0.05)
        with anyio.fail_after(10):
            while len(fired_a.items) + len(fired_b.items) < 40:
                await anyio.sleep(0.02)
        await anyio.sleep(0.2)
    keys = fired_a.keys + fired_b.keys
    assert sorted(keys) == sorted(f"k{n}" for n in range(40))  # each exactly once


async def test_a_timer_survives_a_restart_and_fires_at_its_original_deadline(
    sqlite_url: str,
) -> None:
    deadline = datetime.now(UTC) + timedelta(seconds=0.8)
    async with host(sqlite_url) as h:  # nothing handles "t" here: it only arms
        await h.timers.schedule("t", "k", at=deadline, payload="later")
    fired = Fired()
    async with host(sqlite_url, TimerPlugin("t", fired)):
        await fired.wait(1)
    timer, when = fired.items[0]
    assert timer.due_at == deadline and timer.payload == "later"
    assert deadline <= when < deadline + timedelta(seconds=0.5)


async def test_a_deadline_that_passed_while_down_fires_at_once(sqlite_url: str) -> None:
    deadline = datetime.now(UTC) + timedelta(seconds=0.05)
    async with host(sqlite_url) as h:
        await h.timers.schedule("t", "k", at=deadline)
    await anyio.sleep(0.3)  # nobody runs: the deadline passes
    fired = Fired()
    started = datetime.now(UTC)
    async with host(sqlite_url, TimerPlugin("t", fired)):
        await fired.wait(1)
    timer, when = fired.items[0]
    assert timer.due_at == deadline
    assert when - started < timedelta(seconds=0.5)


async def test_cancel_by_key(sqlite_url: str) -> None:
    fired = Fired()
    async with host(sqlite_url, TimerPlugin("t", fired)) as h:
        await h.timers.schedule("t", "gone", after=0.2)
        await h.timers.schedule("t", "kept", after=0.2)
        assert await h.timers.cancel("t", "gone") is True
        assert await h.timers.cancel("t", "gone") is False
        await fired.wait(1)
        await anyio.sleep(0.2)
    assert fired.keys == ["kept"]


async def test_rearming_keeps_one_timer_per_key(sqlite_url: str) -> None:
    fired = Fired()
    async with host(sqlite_url, TimerPlugin("t", fired)) as h:
        first = await h.timers.schedule("t", "k", after=30, payload=1)
        second = await h.timers.schedule("t", "k", after=0.05, payload=2)
        assert second.version == first.version + 1
        assert [t.key for t in await h.timers.list("t")] == ["k"]
        await fired.wait(1)
        await anyio.sleep(0.2)
    assert [t.payload for t, _ in fired.items] == [2]


async def test_a_handler_that_rearms_its_own_timer_keeps_the_new_schedule(
    sqlite_url: str,
) -> None:
    fired = Fired()
    holder: dict[str, Host] = {}

    async def again(timer: Timer) -> None:
        await fired(timer)
        if timer.payload < 3:
            await holder["host"].timers.schedule("t", "k", after=0.02, payload=timer.payload + 1)

    async with host(sqlite_url, TimerPlugin("t", again)) as h:
        holder["host"] = h
        await h.timers.schedule("t", "k", after=0.02, payload=1)
        await fired.wait(3)
        await anyio.sleep(0.1)
        assert await h.timers.get("t", "k") is None
    assert [t.payload for t, _ in fired.items] == [1, 2, 3]


async def test_a_recurring_timer_keeps_its_cadence(sqlite_url: str) -> None:
    fired = Fired()
    async with host(sqlite_url, TimerPlugin("t", fired)) as h:
        armed = await h.timers.schedule("t", "tick", every=0.1)
        await fired.wait(4)
        timer = await h.timers.get("t", "tick")
        assert timer is not None and timer.fired_count >= 3 and timer.recurring
    # Each firing is re-armed on the timer's grid, not from when it ran (no drift); a
    # firing that ran later than the next slots (a busy machine) skips them.
    slots = [t.due_at for t, _ in fired.items]
    steps = [(slot - armed.due_at) / timedelta(seconds=0.1) for slot in slots]
    assert steps[0] == 0 and steps == sorted(set(steps)), steps
    assert all(abs(step - round(step)) < 1e-6 for step in steps), steps


async def test_a_cron_timer_is_armed_at_the_next_match(sqlite_url: str) -> None:
    async with host(sqlite_url) as h:
        timer = await h.timers.schedule("t", "nightly", cron="0 0 * * *")
        now = datetime.now(UTC)
        midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
        assert timer.due_at == midnight and timer.cron == "0 0 * * *"


@pytest.mark.parametrize("raised", [
    RuntimeError("boom"), asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(3),
    type("Custom", (BaseException,), {})("mine"),
], ids=["exception", "cancelled", "keyboard-interrupt", "system-exit", "custom-base"])
async def test_a_failing_handler_is_retried_then_kept_dead_and_the_host_goes_on(
    sqlite_url: str, raised: BaseException,
) -> None:
    attempts: list[int] = []
    healthy = Fired()

    async def fail(timer: Timer) -> None:
        attempts.append(timer.attempts)
        raise raised

    plugins = [TimerPlugin("bad", fail, retry=RetryPolicy(max_retries=2, base_seconds=0.01),
                           name="bad"),
               TimerPlugin("good", healthy, name="good")]
    async with host(sqlite_url, *plugins) as h:
        await h.timers.schedule("bad", "k", after=0)
        with anyio.fail_after(5):
            while (t := await h.timers.get("bad", "k")) is None or t.status != "dead":
                await anyio.sleep(0.02)
        assert attempts == [1, 2, 3]
        assert t.last_error is not None and type(raised).__name__ in t.last_error
        assert [x.key for x in await h.timers.list(status=TimerStatus.DEAD)] == ["k"]
        # The host is alive: other timers still fire.
        await h.timers.schedule("good", "after", after=0)
        await healthy.wait(1)


async def test_bad_timers_are_refused_with_clear_errors(sqlite_url: str) -> None:
    async with host(sqlite_url) as h:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"after": 1, "key": ""}, "key '' is empty"),
            ({"after": 1, "key": "x" * 256}, "has 256 characters: expected printable text of 1 to 255"),
            ({"after": 1, "key": "a\nb"}, r"non-printable character U\+000A at position 1"),
            ({"at": datetime(2030, 1, 1)}, "timezone-aware"),
            ({"after": -1}, "after must be a number of seconds >= 0"),
            ({"every": 0}, "every must be a number of seconds"),
            ({"cron": "61 * * * *"}, "cron expression '61 \\* \\* \\* \\*' is not valid"),
            ({"every": 5, "cron": "@daily"}, "every= or cron=, not both"),
            ({"after": 1, "payload": {"x": object()}}, "payload must be a JSON value"),
            ({"after": 1, "payload": float("nan")}, "payload must be a JSON value"),
            ({}, "expected when it fires"),
        ]
        for kwargs, message in cases:
            key = kwargs.pop("key", "k")
            with pytest.raises(TimerError, match=message):
                await h.timers.schedule("t", key, **kwargs)
        assert await h.timers.list() == []


async def test_jobs_fire_once_per_slot_and_catch_up_a_slot_missed_while_down(
    sqlite_url: str,
) -> None:
    runs: list[tuple[str, datetime]] = []

    class Jobs:
        name = "jobs"

        def __init__(self, label: str) -> None:
            self.label = label

        @hookimpl
        def reactive_register(self, registry: Any) -> None:
            async def job(_host: Host, slot: datetime) -> None:
                runs.append((self.label, slot))
            registry.add_job("hourly", job, every=timedelta(hours=1))

    # An instance running two hours in the past arms the job for its next slot...
    past = datetime.now(UTC) - timedelta(hours=2)
    async with Host(database_url=sqlite_url, plugins=[Jobs("past")], entry_points=False,
                    config={"poll_interval": 0.05}, clock=lambda: past):
        pass
    first_missed = past.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    slot = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    assert first_missed < slot
    # ...which has passed by the time two instances start now: it runs once, at once,
    # for the latest of the slots it missed.
    async with Host(database_url=sqlite_url, plugins=[Jobs("a")], entry_points=False,
                    config={"poll_interval": 0.05}) as a, \
            Host(database_url=sqlite_url, plugins=[Jobs("b")], entry_points=False,
                 config={"poll_interval": 0.05}):
        with anyio.fail_after(5):
            while not runs:
                await anyio.sleep(0.02)
        await anyio.sleep(0.2)
        assert [when for _, when in runs] == [slot]
        timer = await a.timers.get("job:hourly", "schedule")
        assert timer is not None and timer.due_at > datetime.now(UTC)
        assert timer.due_at.minute == 0 and timer.due_at.second == 0
