"""Broadcast: every instance tails the change log and calls its own broadcast handlers.

The feed starts at the log's position when the host starts (history is not
replayed) and reads each committed change exactly once, in commit order (how depends
on the database: `_store.backend`). A commit in this process wakes it at once, a
NOTIFY from another instance likewise; polling is the backstop. Handlers of one
instance run one after another, each bounded by a timeout; whatever one raises is
logged and never reaches the others or the feed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio

from .._entities.changes import EntityChange, row_to_change
from .._supervise import call_guarded, describe, run_supervised
from .policy import Broadcast

if TYPE_CHECKING:
    from .._host.registry import Registry
    from .._store.database import Database

logger = logging.getLogger("reactive_core.delivery")

FEED_PAGE = 500


class Waker:
    """A level-triggered wake-up: `set()` from the loop, `wait(timeout)` in one task."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        """Wake the waiting task (or make its next wait return at once)."""
        self._event.set()

    async def wait(self, timeout: float) -> None:
        """Wait for a wake-up or `timeout` seconds, then re-arm."""
        with anyio.move_on_after(timeout):
            await self._event.wait()
        if self._event.is_set():
            self._event = anyio.Event()


class BroadcastFeed:
    """Tails the change feed and calls this instance's broadcast handlers in order."""

    def __init__(self, *, db: Database, registry: Registry, poll_interval: float,
                 handler_timeout: float) -> None:
        self._db = db
        self._registry = registry
        self._poll_interval = poll_interval
        self._handler_timeout = handler_timeout
        self._waker = Waker()
        self._position: Any = None
        self._started = 0
        self._finished = 0
        self._progress = anyio.Event()
        self.head_seq = 0

    def wake(self) -> None:
        """Poll now rather than at the next interval."""
        self._waker.set()

    async def start_position(self) -> None:
        """Remember where the feed stands now; changes before this are not broadcast."""
        self._position = await self._db.read(self._db.backend.feed_start)

    def _read(self, tx: Any, position: Any) -> tuple[Any, list[EntityChange]]:
        new_position, rows = self._db.backend.feed_read(tx, position, FEED_PAGE)
        return new_position, [row_to_change(r) for r in rows]

    async def run(self) -> None:
        """Poll until cancelled; a failed poll is logged and retried with a backoff."""
        await run_supervised("broadcast feed", self._loop)

    async def _loop(self) -> None:
        while True:
            await self.poll_once()
            await self._waker.wait(self._poll_interval)

    async def poll_once(self) -> None:
        """Read every change committed since the last poll and deliver it."""
        self._started += 1
        generation = self._started
        try:
            if not self._registry.has_broadcast:
                # Nobody here listens: move to the head without reading the changes.
                self._position = await self._db.read(self._db.backend.feed_start)
                return
            while True:
                position, changes = await self._db.read(self._read, self._position)
                for change in changes:
                    await self._deliver(change)
                    self.head_seq = max(self.head_seq, change.seq)
                self._position = position
                if len(changes) < FEED_PAGE:
                    break
        finally:
            self._finished = max(self._finished, generation)
            self._progress.set()
            self._progress = anyio.Event()

    async def catch_up(self) -> None:
        """Return once a poll that started after this call has finished."""
        target = self._started + 1
        while self._finished < target:
            progress = self._progress
            self.wake()
            with anyio.move_on_after(self._poll_interval):
                await progress.wait()

    async def _deliver(self, change: EntityChange) -> None:
        for sub in self._registry.subscriptions(change.kind):
            if not isinstance(sub.delivery, Broadcast):
                continue
            error = await call_guarded(sub.handler, change, timeout=self._handler_timeout)
            if error is not None:
                logger.error(
                    "broadcast handler %s failed on %s:%s (change %s): %s",
                    sub.name, change.kind, change.id, change.change_id, describe(error),
                    exc_info=error,
                )
