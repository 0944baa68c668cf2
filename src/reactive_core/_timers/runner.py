"""The timer runner: fires this instance's share of due timers, once per cluster.

Each topic registered with `registry.on_timer` has a handler, a concurrency limit, a
lease and a retry policy. The runner claims due timers of the topics it handles (never
more than can start now, so an attempt is counted when a firing starts), runs their
handlers in the host's task group and extends the leases of long firings. Each round
is one unit of work: record the outcomes of the firings finished since the last round
(re-arm, delete, retry, keep dead), then claim what is due. A firing whose outcome was
not yet recorded when its instance died fires again (at least once per slot). The
runner sleeps until the next deadline, woken early by firings finishing, timers armed
in this process or (PostgreSQL) NOTIFY from another instance.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

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


@dataclass(frozen=True, slots=True)
class _Outcome:
    """A finished firing to record: finished (error None, or the last failure), or retry."""

    timer: Timer
    claimed_at: datetime
    error: str | None
    backoff: float | None


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
                 poll_interval: float, batch_delay: float = 0.0) -> None:
        self._db = db
        self._store = store
        self._topics = topics
        self._owner = owner
        self._poll_interval = poll_interval
        self._batch_delay = batch_delay
        self._waker = Waker()
        self._firing: dict[tuple[str, str], Timer] = {}
        self._outcomes: list[_Outcome] = []
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
            claimed: list[tuple[Timer, datetime]] = []
            due_in: float | None = None
            if wanted or self._outcomes:
                claimed, due_in = await self.round(wanted, topics)
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
            if self._batch_delay > 0:
                await anyio.sleep(self._batch_delay)  # gather finishing firings

    async def round(self, wanted: dict[str, int], topics: dict[str, TimerTopic],
                    ) -> tuple[list[tuple[Timer, datetime]], float | None]:
        """Record the outcomes gathered so far, then claim up to `wanted` per topic."""
        outcomes = self._outcomes[:]
        result = await self._db.run_apart(self._round_unit, outcomes, wanted, topics)
        del self._outcomes[:len(outcomes)]
        return result

    def _round_unit(self, tx: Connection, outcomes: list[_Outcome], wanted: dict[str, int],
                    topics: dict[str, TimerTopic],
                    ) -> tuple[list[tuple[Timer, datetime]], float | None]:
        for outcome in outcomes:
            if outcome.backoff is None:
                self._store.finish(tx, outcome.timer, self._owner, outcome.claimed_at,
                                   outcome.error)
            else:
                assert outcome.error is not None
                self._store.retry(tx, outcome.timer, self._owner, outcome.error,
                                  outcome.backoff)
        claimed: list[tuple[Timer, datetime]] = []
        for name, free in wanted.items():
            claimed += self._store.claim(tx, topic=name, owner=self._owner,
                                         lease=topics[name].lease_seconds, limit=free)
        return claimed, (self._store.seconds_until_due(tx, sorted(wanted)) if wanted else None)

    async def flush(self) -> None:
        """Record the outcomes gathered but not yet recorded (on shutdown)."""
        if self._outcomes:
            await self.round({}, {})

    async def _fire(self, topic: TimerTopic, timer: Timer, claimed_at: datetime) -> None:
        try:
            self._outcomes.append(await self._fire_one(topic, timer, claimed_at))
        finally:
            self._firing.pop((timer.topic, timer.key), None)
            if not self._firing:
                self._idle.set()
            self.wake()

    async def _fire_one(self, topic: TimerTopic, timer: Timer, claimed_at: datetime,
                        ) -> _Outcome:
        if timer.attempts > topic.retry.max_retries + 1:
            error = (f"LeaseExpired: {timer.attempts - 1} earlier firings ended without an "
                     f"outcome (instance died or hung past its lease); last error: "
                     f"{timer.last_error or 'none'}")
            logger.error("timer %s:%s given up: %s", timer.topic, timer.key, error)
            return _Outcome(timer, claimed_at, error, None)
        raised = await call_guarded(topic.handler, timer, timeout=topic.timeout_seconds)
        self.fired += 1
        if raised is None:
            return _Outcome(timer, claimed_at, None, None)
        text = describe(raised)
        if timer.attempts <= topic.retry.max_retries:
            backoff = topic.retry.delay(timer.attempts, self._rng)
            logger.warning("timer %s:%s failed on attempt %d (retry in %.2fs): %s",
                           timer.topic, timer.key, timer.attempts, backoff, text)
            return _Outcome(timer, claimed_at, text, backoff)
        logger.error("timer %s:%s failed on attempt %d, %s: %s", timer.topic, timer.key,
                     timer.attempts, "skipping to its next slot" if timer.recurring else
                     "kept as dead", text)
        return _Outcome(timer, claimed_at, text, None)

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
                await self._db.run_apart(self._store.extend, timers, self._owner, lease)

    async def wait_idle(self) -> None:
        """Return once no firing runs here."""
        await self._idle.wait()

    @property
    def firing(self) -> list[Timer]:
        """The timers firing on this instance now."""
        return list(self._firing.values())

