"""The work-queue dispatcher: claims this instance's deliveries and runs their handlers.

Each round is one unit of work: record the outcomes gathered since the last round
(done, retry, dead), then claim as many due heads as there are free handler slots.
Claiming only what starts now means an attempt is counted exactly when a handler
starts; a worker that dies mid-handler loses its lease, which then counts as that
attempt, and the row goes to another instance (at-least-once).

A handler's failure — anything it raises, `BaseException`s included, or running past
its timeout — is one failed attempt of that delivery: retried per its `RetryPolicy`,
dead-lettered after the last retry. The host goes on.

Handlers run on a pool of worker tasks (at most `concurrency`, started as needed) rather
than a task each: a worker runs the claimed deliveries one after another, and wakes one
more worker whenever it takes one while others wait, so a handler that waits never holds
up the rest. A worker runs its next delivery only as a task of its own would: after a
handler that failed, left a cancellation pending on the worker, or changed a context
variable, the worker ends and a fresh one (with a fresh copy of the context) takes over.

A handler's timeout is a deadline on its worker's cancel scope rather than a scope (and
an event-loop timer) of its own: the deadline moves only when the running handler needs
it elsewhere, so a handler is cut off between its timeout and a tenth of it past. A
handler cut off fails (`TimeoutError`), whatever it made of the cancellation: raised it,
raised something else instead, or returned; its worker ends.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import anyio.lowlevel
import sniffio
from sqlalchemy import Connection

from .._entities.changes import EntityChange
from .._supervise import call_guarded, cancelled, describe, run_supervised
from .feed import Waker
from .policy import RetryPolicy, WorkQueue
from .queue import (
    ROUTE_REFRESH_SECONDS,
    DeliveryRow,
    Failure,
    Route,
    Settled,
    WorkQueueStore,
)

if TYPE_CHECKING:
    from .._host.registry import Registry
    from .._store.database import Database

logger = logging.getLogger("reactive_core.delivery")

_RETRY_LOCKED = 0.005
"""Seconds before recording again the outcomes whose entity a write held locked."""
_RUN_BEFORE_YIELD = 32
"""Deliveries a worker runs back to back before it lets the event loop run other tasks."""
_FLUSH_ROUNDS = 200
"""How often shutdown tries to record outcomes before leaving them to lease expiry."""
_TIMEOUT_SLACK = 0.1
"""How late, as a share of a handler's timeout, its worker's deadline may cut it off (see
`_bound`): the deadline then moves once per that much time, not once per handler."""

Observer = Callable[[str, str, float, str], None]
"""Told of each handler run: (group, kind, seconds, outcome `done`, `retry` or `dead`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchSettings:
    """How the dispatcher claims, runs and retries."""

    lease_seconds: float
    retry_base_seconds: float
    retry_max_seconds: float
    poll_interval: float
    concurrency: int
    handler_timeout: float
    batch_delay: float = 0.0


class Dispatcher:
    """Claims this instance's work-queue deliveries and runs their handlers."""

    def __init__(self, *, db: Database, queue: WorkQueueStore, registry: Registry, owner: str,
                 settings: DispatchSettings) -> None:
        self._db = db
        self._queue = queue
        self._registry = registry
        self._owner = owner
        self._s = settings
        self._waker = Waker()
        self._running: dict[int, DeliveryRow] = {}
        self._done: list[DeliveryRow] = []
        self._units = anyio.Lock()  # rounds and lease extensions, one at a time
        self._failed: list[Failure] = []
        self._idle = anyio.Event()
        self._idle.set()
        self._rng = random.Random()
        self._ready: deque[tuple[DeliveryRow, EntityChange]] = deque()
        self._sleeping: list[anyio.Event] = []  # idle workers, each waiting on its event
        self._workers = 0
        self._calling = False  # a worker was woken or started and has not run yet
        self._context = contextvars.copy_context()
        self._policies: dict[WorkQueue, RetryPolicy] = {}
        self.observers: list[Observer] = []
        """Called after each handler run here (e.g. `/metrics`' handler durations)."""

    def wake(self) -> None:
        """Claim now rather than at the next interval."""
        self._waker.set()

    @property
    def in_flight(self) -> int:
        """Deliveries running here, or finished here and not yet recorded."""
        return len(self._running) + len(self._done) + len(self._failed)

    @property
    def running(self) -> list[DeliveryRow]:
        """The deliveries whose handlers are running on this instance."""
        return list(self._running.values())

    async def run(self, task_group: anyio.abc.TaskGroup) -> None:
        """Claim and dispatch until cancelled; handlers run in `task_group`."""
        self._context = contextvars.copy_context()
        task_group.start_soon(run_supervised, "work-queue heartbeat", self._heartbeat)
        await run_supervised("work-queue dispatcher", lambda: self._loop(task_group))

    async def _loop(self, task_group: anyio.abc.TaskGroup) -> None:
        while True:
            routes = self._registry.local_routes()
            free = self._s.concurrency - len(self._running)
            wait = self._s.poll_interval
            claimed: list[tuple[DeliveryRow, EntityChange]] = []
            if self._done or self._failed or (routes and free > 0):
                claimed, due_in = await self.round(routes, free)
                if due_in is not None:
                    wait = min(wait, max(due_in, 0.0) + 0.001)
            if claimed and self._idle.is_set():
                self._idle = anyio.Event()
            for delivery, _change in claimed:
                self._running[delivery.id] = delivery
            if claimed:
                self._ready.extend(claimed)
                self._call_worker(task_group)
            if claimed and len(claimed) == free:
                await anyio.lowlevel.checkpoint()
                continue
            await self._waker.wait(wait)
            if self._s.batch_delay > 0:
                # Let a burst of commits and finished handlers gather into one round.
                await anyio.sleep(self._s.batch_delay)

    async def round(self, routes: list[Route], free: int,
                    ) -> tuple[list[tuple[DeliveryRow, EntityChange]], float | None]:
        """Record outcomes, then claim up to `free` deliveries (one unit of work)."""
        done, failed = self._done[:], self._failed[:]

        def unit(tx: Connection) -> tuple[list[tuple[DeliveryRow, EntityChange]], float | None,
                                          Settled]:
            settled = self._queue.settle(tx, owner=self._owner, done=done, failed=failed)
            claimed = self._queue.claim(tx, routes=routes, owner=self._owner,
                                        lease=self._s.lease_seconds, limit=free)
            if claimed or not routes:
                return claimed, None, settled
            return [], self._queue.seconds_until_due(tx, routes), settled

        # Apart from the write path's group commits: a round takes locks on many rows.
        async with self._units:
            claimed, due_in, settled = await self._db.run_apart(unit)
        del self._done[:len(done)]
        del self._failed[:len(failed)]
        if settled.later_done or settled.later_failed:
            # Their entities were being written: record them as soon as that commits.
            self._done.extend(settled.later_done)
            self._failed.extend(settled.later_failed)
            due_in = _RETRY_LOCKED if due_in is None else min(due_in, _RETRY_LOCKED)
        return claimed, due_in

    async def flush(self) -> None:
        """Record the outcomes gathered but not yet recorded (on shutdown)."""
        for _ in range(_FLUSH_ROUNDS):
            if not (self._done or self._failed):
                return
            await self.round([], 0)
            if self._done or self._failed:
                await anyio.sleep(_RETRY_LOCKED)

    async def wait_idle(self) -> None:
        """Return once no handler runs here."""
        await self._idle.wait()

    def _policy(self, sub_delivery: object) -> RetryPolicy:
        if not isinstance(sub_delivery, WorkQueue):
            return _NO_RETRY
        policy = self._policies.get(sub_delivery)
        if policy is None:  # one per subscription, not one per delivery
            policy = self._policies[sub_delivery] = sub_delivery.policy(
                base_seconds=self._s.retry_base_seconds, max_seconds=self._s.retry_max_seconds)
        return policy

    def _call_worker(self, task_group: anyio.abc.TaskGroup) -> None:
        """Wake an idle worker (or start one) for the deliveries waiting, unless one is
        on its way already: it calls the next in turn when it takes a delivery."""
        if not self._ready or self._calling:
            return
        if self._sleeping:
            self._calling = True
            self._sleeping.pop().set()
        elif self._workers < self._s.concurrency:
            self._calling = True
            self._workers += 1
            # In a copy of the dispatcher's context, whichever task calls it.
            self._context.run(task_group.start_soon, self._worker, task_group)

    async def _worker(self, task_group: anyio.abc.TaskGroup) -> None:
        """Run waiting deliveries until one leaves this task unfit to go on."""
        pristine = contextvars.copy_context()
        try:
            while True:
                self._calling = False
                if not await self._run_ready(task_group, pristine):
                    return
                event = anyio.Event()
                self._sleeping.append(event)
                try:
                    await event.wait()
                except BaseException:  # cancelled asleep: nobody may wake it any more
                    if event in self._sleeping:
                        self._sleeping.remove(event)
                    raise
        finally:
            self._workers -= 1
            self._calling = False
            self._call_worker(task_group)

    async def _run_ready(self, task_group: anyio.abc.TaskGroup,
                         pristine: contextvars.Context) -> bool:
        """Run the waiting deliveries under one cancel scope whose deadline bounds the
        running handler; False when the worker must not go on."""
        ran = 0
        with anyio.CancelScope() as watch:
            while self._ready:
                delivery, change = self._ready.popleft()
                self._call_worker(task_group)  # in case this handler waits
                if not await self._handle(delivery, change, watch):
                    if not watch.cancel_called:
                        await _absorb_own_cancel()
                    return False
                if not _unchanged(pristine):
                    return False
                ran += 1
                if ran % _RUN_BEFORE_YIELD == 0:
                    # Handlers that never wait would otherwise hold the event loop
                    # for a whole claim round.
                    await anyio.lowlevel.checkpoint()
            return True
        # The deadline passed between two handlers (the last one ran past its timeout
        # and finished before the cut-off): nothing to record, but the scope is spent.
        return False

    async def _handle(self, delivery: DeliveryRow, change: EntityChange,
                      watch: anyio.CancelScope) -> bool:
        """Run one delivery; False when its worker must not run another (it failed, or
        left a cancellation pending on the task)."""
        try:
            failures = await self._run_one(delivery, change, watch)
            self._failed.extend(failures)
            return not failures and not _cancel_pending()
        finally:
            self._running.pop(delivery.id, None)
            if not self._running:
                self._idle.set()
            self.wake()

    async def _run_one(self, delivery: DeliveryRow, change: EntityChange,
                       watch: anyio.CancelScope) -> list[Failure]:
        sub = self._registry.work_queue_handler(delivery.group, delivery.kind)
        policy = self._policy(sub.delivery if sub is not None else None)
        if delivery.attempts > policy.max_retries + 1:
            # Earlier attempts ended without an outcome: their worker died or hung past
            # the lease. They count: a change that kills its worker must not loop forever.
            error = (f"LeaseExpired: {delivery.attempts - 1} earlier attempts ended without "
                     f"an outcome (worker died or hung past its lease); last error: "
                     f"{delivery.last_error or 'none'}")
            logger.error("work-queue %s delivery %s (%s:%s) dead-lettered: %s", delivery.group,
                         delivery.id, delivery.kind, delivery.entity_id, error)
            return [Failure(delivery, error, None, ran=False)]
        if sub is None:
            error_text = (f"LookupError: no handler for kind {delivery.kind!r} in work-queue "
                          f"group {delivery.group!r} on this instance")
        else:
            timeout = (sub.delivery.timeout_seconds if isinstance(sub.delivery, WorkQueue)
                       and sub.delivery.timeout_seconds is not None else self._s.handler_timeout)
            started = time.perf_counter()
            _bound(watch, timeout)
            try:
                raised = await call_guarded(sub.handler, change)
            except BaseException:
                if not watch.cancel_called:
                    raise  # the host is stopping
                raised = None  # whatever the handler made of its cut-off: see below
            elapsed = time.perf_counter() - started
            if watch.cancel_called:
                error_text = f"TimeoutError: the handler ran longer than {timeout:g}s"
            elif raised is None:
                self._done.append(delivery)
                self._observe(delivery, elapsed, "done")
                return []
            else:
                error_text = describe(raised)
        dead = delivery.attempts > policy.max_retries
        backoff = None if dead else policy.delay(delivery.attempts, self._rng)
        if sub is not None:
            self._observe(delivery, elapsed, "dead" if dead else "retry")
        (logger.error if dead else logger.warning)(
            "work-queue %s delivery %s (%s:%s) failed on attempt %d (%s): %s", delivery.group,
            delivery.id, delivery.kind, delivery.entity_id, delivery.attempts,
            "dead-lettered" if dead else f"retry in {backoff:.2f}s", error_text)
        return [Failure(delivery, error_text, backoff)]

    def _observe(self, delivery: DeliveryRow, seconds: float, outcome: str) -> None:
        for observe in self.observers:
            try:
                observe(delivery.group, delivery.kind, seconds, outcome)
            except Exception:  # an observer never fails a delivery
                logger.exception("work-queue observer %r failed", observe)

    async def _heartbeat(self) -> None:
        every = max(self._s.lease_seconds / 3, 0.05)
        refreshed = anyio.current_time()
        while True:
            await anyio.sleep(every)
            if anyio.current_time() - refreshed > ROUTE_REFRESH_SECONDS:
                refreshed = anyio.current_time()
                await self._db.run(self._queue.record_routes, self._registry.local_routes())
            if self._running:
                async with self._units:
                    await self._db.run_apart(self._extend, list(self._running))

    def _extend(self, tx: Connection, ids: list[int]) -> None:
        self._queue.extend(tx, ids=ids, owner=self._owner, lease=self._s.lease_seconds)


_MISSING = object()
_NO_RETRY = RetryPolicy(max_retries=0)


def _bound(watch: anyio.CancelScope, timeout: float) -> None:
    """Make `watch`'s deadline fall between `timeout` seconds from now and a tenth of it
    later, moving it only when it is outside that window (a timer rescheduled once per
    `_TIMEOUT_SLACK` of the timeout, not once per handler)."""
    earliest = anyio.current_time() + timeout
    slack = timeout * _TIMEOUT_SLACK
    if not earliest <= watch.deadline <= earliest + slack:
        watch.deadline = earliest + slack / 2


def _unchanged(pristine: contextvars.Context) -> bool:
    """True when the running task's context variables are those of `pristine`."""
    now = contextvars.copy_context()
    return len(now) == len(pristine) and all(
        now.get(var, _MISSING) is value for var, value in pristine.items())


async def _absorb_own_cancel() -> None:
    """Take delivery of a cancellation a handler requested on its own task and returned
    (`asyncio.current_task().cancel()`), so that it ends the worker quietly instead of
    reaching the task group; a cancellation of the host itself propagates."""
    if not _cancel_pending():
        return
    try:
        await asyncio.sleep(0)
    except asyncio.CancelledError:
        if cancelled():
            raise
        logger.warning("a work-queue handler cancelled its own task and returned: the "
                       "request was dropped")


def _cancel_pending() -> bool:
    """True when the running asyncio task has a cancellation requested (a handler that
    cancelled its own task and returned): only a task of its own may carry it."""
    if sniffio.current_async_library() != "asyncio":
        return False
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
