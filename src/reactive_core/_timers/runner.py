"""The timer runner: fires this instance's share of due timers, once per cluster.

Each topic registered with `registry.on_timer` has a handler, a concurrency limit, a
lease and a retry policy. The runner claims due timers of the topics it handles (never
more than can start now, so an attempt is counted when a firing starts), runs their
handlers in the host's task group, extends the leases of long firings, and records
each outcome in a unit of work of its own. It sleeps until the next deadline, woken
early by timers armed in this process or (PostgreSQL) NOTIFY from another instance.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.lowlevel
from sqlalchemy import Connection

from .._delivery.feed import Waker
from .._delivery.policy import RetryPolicy
from .._supervise import call_guarded, describe, run_supervised
from .timers import Timer, TimerStore

if TYPE_CHECKING:
    from .._store.database import Database

logger = logging.getLogger("reactive_core.timers")

TimerHandler = Callable[[Timer], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerTopic:
    """What `registry.on_timer` declared for one topic."""

    topic: str
    handler: TimerHandler
    concurrency: int
    lease_seconds: float
    retry: RetryPolicy
    timeout_seconds: float | None
    plugin: str | None

    @property
    def name(self) -> str:
        """The handler's qualified name, for logs."""
        return getattr(self.handler, "__qualname__", repr(self.handler))


class TimerRunner:
    """Claims and fires due timers of the topics this instance handles."""

    def __init__(self, *, db: Database, store: TimerStore,
                 topics: Callable[[], dict[str, TimerTopic]], owner: str,
                 poll_interval: float) -> None:
        self._db = db
        self._store = store
        self._topics = topics
        self._owner = owner
        self._poll_interval = poll_interval
        self._waker = Waker()
        self._firing: dict[tuple[str, str], Timer] = {}
        self._idle = anyio.Event()
        self._idle.set()
        self._rng = random.Random()
        self.fired = 0

    def wake(self) -> None:
        """Look for due timers now."""
        self._waker.set()

    def _free(self, topic: TimerTopic) -> int:
        busy = sum(1 for t in self._firing if t[0] == topic.topic)
        return topic.concurrency - busy

    async def run(self, task_group: anyio.abc.TaskGroup) -> None:
        """Fire due timers until cancelled; firings run in `task_group`."""
        task_group.start_soon(run_supervised, "timer lease heartbeat", self._heartbeat)
        await run_supervised("timer runner", lambda: self._loop(task_group))

    async def _loop(self, task_group: anyio.abc.TaskGroup) -> None:
        while True:
            topics = self._topics()
            wanted = {name: self._free(t) for name, t in topics.items() if self._free(t) > 0}
            claimed, due_in = (await self._db.run(self._claim_round, wanted, topics) if wanted
                               else ([], None))
            for timer, claimed_at in claimed:
                self._firing[(timer.topic, timer.key)] = timer
                self._idle = anyio.Event()
                task_group.start_soon(self._fire, topics[timer.topic], timer, claimed_at)
            wait = self._poll_interval
            if due_in is not None:
                wait = min(wait, max(due_in, 0.0) + 0.001)
            if claimed:
                await anyio.lowlevel.checkpoint()
                continue
            await self._waker.wait(wait)

    def _claim_round(self, tx: Connection, wanted: dict[str, int],
                     topics: dict[str, TimerTopic],
                     ) -> tuple[list[tuple[Timer, datetime]], float | None]:
        claimed: list[tuple[Timer, datetime]] = []
        for name, free in wanted.items():
            claimed += self._store.claim(tx, topic=name, owner=self._owner,
                                         lease=topics[name].lease_seconds, limit=free)
        return claimed, self._store.seconds_until_due(tx, sorted(wanted))

    async def _fire(self, topic: TimerTopic, timer: Timer, claimed_at: datetime) -> None:
        try:
            await self._fire_one(topic, timer, claimed_at)
        except Exception:  # the lease expires and the timer fires again
            logger.exception("recording the firing of timer %s:%s failed", timer.topic,
                             timer.key)
        finally:
            self._firing.pop((timer.topic, timer.key), None)
            if not self._firing:
                self._idle.set()
            self.wake()

    async def _fire_one(self, topic: TimerTopic, timer: Timer, claimed_at: datetime) -> None:
        store, owner = self._store, self._owner
        if timer.attempts > topic.retry.max_retries + 1:
            error = (f"LeaseExpired: {timer.attempts - 1} earlier firings ended without an "
                     f"outcome (instance died or hung past its lease); last error: "
                     f"{timer.last_error or 'none'}")
            logger.error("timer %s:%s given up: %s", timer.topic, timer.key, error)
            await self._db.run(store.finish, timer, owner, claimed_at, error)
            return
        raised = await call_guarded(topic.handler, timer, timeout=topic.timeout_seconds)
        self.fired += 1
        if raised is None:
            await self._db.run(store.finish, timer, owner, claimed_at, None)
            return
        text = describe(raised)
        if timer.attempts <= topic.retry.max_retries:
            backoff = topic.retry.delay(timer.attempts, self._rng)
            logger.warning("timer %s:%s failed on attempt %d (retry in %.2fs): %s",
                           timer.topic, timer.key, timer.attempts, backoff, text)
            await self._db.run(store.retry, timer, owner, text, backoff)
            return
        logger.error("timer %s:%s failed on attempt %d, %s: %s", timer.topic, timer.key,
                     timer.attempts, "skipping to its next slot" if timer.recurring else
                     "kept as dead", text)
        await self._db.run(store.finish, timer, owner, claimed_at, text)

    async def _heartbeat(self) -> None:
        while True:
            topics = self._topics()
            leases = [t.lease_seconds for t in topics.values()] or [30.0]
            await anyio.sleep(max(min(leases) / 3, 0.05))
            by_topic: dict[str, list[Timer]] = {}
            for (name, _), timer in list(self._firing.items()):
                by_topic.setdefault(name, []).append(timer)
            for name, timers in by_topic.items():
                lease = topics[name].lease_seconds if name in topics else 30.0
                await self._db.run(self._store.extend, timers, self._owner, lease)

    async def wait_idle(self) -> None:
        """Return once no firing runs here."""
        await self._idle.wait()

    @property
    def firing(self) -> list[Timer]:
        """The timers firing on this instance now."""
        return list(self._firing.values())


def describe_topics(topics: dict[str, TimerTopic]) -> list[dict[str, Any]]:
    """The registered topics, for `doctor`."""
    return [{"topic": t.topic, "handler": t.name, "plugin": t.plugin,
             "concurrency": t.concurrency} for t in topics.values()]
