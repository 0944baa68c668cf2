"""Durable timers: "call this topic's handler with this payload at time T", once per cluster.

A timer is a row keyed by `(topic, key)`: arming it again replaces it (one timer per
key), cancelling deletes it. It fires once per cluster — claimed with a lease, like a
delivery — at its deadline, or at once when the deadline passed while no instance was
running. A recurring timer (`every` seconds or a `cron` expression) is re-armed after
each firing; a one-shot timer is deleted once its handler returned. A handler that
fails is retried per its topic's `RetryPolicy`; then a one-shot timer is kept as dead
(listed, not fired again) and a recurring one skips to its next slot.

Arming writes inside a unit of work (`schedule_in`, `cancel_in`), so a plugin can arm a
timer in the same transaction as the write that calls for it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, delete, select, text, update

from .._clock import Clock, as_utc, as_utc_or_none
from .._entities.ids import MAX_ID_LENGTH, MAX_NAME_LENGTH, id_problem
from .._errors import ReactiveCoreError
from .._store.backend import Backend
from .._store.group_commit import after_commit
from .._store.schema import timers as _t
from .schedule import MIN_INTERVAL_SECONDS, Cron, next_due

if TYPE_CHECKING:
    from .._store.database import Database

MAX_KEY_LENGTH = MAX_ID_LENGTH


class TimerError(ReactiveCoreError, ValueError):
    """A timer was armed with something invalid (a bad key, time, interval, cron, payload)."""


class TimerStatus(StrEnum):
    """Where a timer stands."""

    SCHEDULED = "scheduled"
    """Waiting for its deadline, firing, or backing off before a retry."""
    DEAD = "dead"
    """A one-shot timer whose handler failed on every attempt: kept, not fired again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Timer:
    """One durable timer, as its handler receives it and as listings show it."""

    topic: str
    key: str
    due_at: datetime
    """The deadline this firing is for (for a recurring timer: the slot)."""
    every_seconds: float | None
    cron: str | None
    payload: Any
    status: TimerStatus
    attempts: int
    fired_count: int
    last_error: str | None
    last_fired_at: datetime | None
    lease_owner: str | None
    version: int

    @property
    def recurring(self) -> bool:
        """True for interval and cron timers."""
        return self.every_seconds is not None or self.cron is not None


def timer_from_row(row: Any) -> Timer:
    """A `reactive_timers` row as a `Timer`."""
    return Timer(
        topic=row.topic, key=row.key, due_at=as_utc(row.due_at),
        every_seconds=None if row.every_seconds is None else float(row.every_seconds),
        cron=row.cron, payload=row.payload, status=TimerStatus(row.status),
        attempts=int(row.attempts), fired_count=int(row.fired_count), last_error=row.last_error,
        last_fired_at=as_utc_or_none(row.last_fired_at), lease_owner=row.lease_owner,
        version=int(row.version))


def _seconds(value: float | timedelta, what: str, minimum: float) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
            or not math.isfinite(seconds) or seconds < minimum):
        raise TimerError(f"{what} must be a number of seconds >= {minimum:g} (or a "
                         f"timedelta), received {value!r}")
    return float(seconds)


class Timers:
    """Arm, cancel and list durable timers: `host.timers`."""

    def __init__(self, *, db: Database, backend: Backend, clock: Clock,
                 wake: Callable[[], None]) -> None:
        self._db = db
        self._b = backend
        self._clock = clock
        self._wake = wake

    # -- arming -------------------------------------------------------------------

    def schedule_in(
        self, tx: Connection, topic: str, key: str, *, at: datetime | None = None,
        after: float | timedelta | None = None, every: float | timedelta | None = None,
        cron: str | None = None, payload: Any = None,
    ) -> Timer:
        """Arm timer `(topic, key)` inside `tx`, replacing any timer of that key.

        When: `at` (an aware datetime) or `after` (seconds from now); a recurring timer
        (`every` seconds, or `cron`) without either first fires at its next slot (`every`
        seconds from now; the next cron match). `payload` is any JSON value; the handler
        receives it back.
        """
        if (problem := id_problem(topic, MAX_NAME_LENGTH)) is not None:
            raise TimerError(f"timer topic {topic!r:.80} {problem}: expected a name of "
                             f"printable text, 1 to {MAX_NAME_LENGTH} characters")
        if (problem := id_problem(key, MAX_KEY_LENGTH)) is not None:
            raise TimerError(f"timer key {key!r:.80} {problem}: expected printable text of "
                             f"1 to {MAX_KEY_LENGTH} characters without surrounding whitespace "
                             f"or control characters")
        if at is not None and after is not None:
            raise TimerError(f"timer {topic}:{key}: expected at= or after=, not both")
        every_seconds = None if every is None else _seconds(
            every, f"timer {topic}:{key} every", MIN_INTERVAL_SECONDS)
        if every_seconds is not None and cron is not None:
            raise TimerError(f"timer {topic}:{key}: expected every= or cron=, not both")
        if cron is not None:
            try:
                Cron(cron)
            except ValueError as exc:
                raise TimerError(f"timer {topic}:{key}: {exc}") from None
        try:
            json.dumps(payload, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TimerError(f"timer {topic}:{key}: payload must be a JSON value (dicts, "
                             f"lists, strings, finite numbers, booleans, None), received "
                             f"{type(payload).__name__}: {exc}") from None
        now = self._clock()
        if at is not None:
            if not isinstance(at, datetime) or at.tzinfo is None:
                raise TimerError(f"timer {topic}:{key}: at must be a timezone-aware datetime, "
                                 f"received {at!r}")
            due = as_utc(at)
        elif after is not None:
            due = now + timedelta(seconds=_seconds(after, f"timer {topic}:{key} after", 0.0))
        elif every_seconds is not None:
            due = now + timedelta(seconds=every_seconds)
        elif cron is not None:
            due = Cron(cron).next_after(now)
        else:
            raise TimerError(f"timer {topic}:{key}: expected when it fires: at=, after=, "
                             f"every= or cron=")
        values = {"due_at": due, "available_at": due, "every_seconds": every_seconds,
                  "cron": cron, "payload": payload, "status": TimerStatus.SCHEDULED.value,
                  "attempts": 0, "lease_owner": None, "lease_expires_at": None,
                  "last_error": None, "updated_at": now}
        stmt = self._b.upsert(_t)
        tx.execute(stmt.values(topic=topic, key=key, version=1, fired_count=0, created_at=now,
                               **values).on_conflict_do_update(
            index_elements=[_t.c.topic, _t.c.key],
            set_={**values, "version": _t.c.version + 1}))
        self._b.notify(tx)
        after_commit(tx, self._wake)
        row = tx.execute(select(_t).where(_t.c.topic == topic, _t.c.key == key)).one()
        return timer_from_row(row)

    async def schedule(
        self, topic: str, key: str, *, at: datetime | None = None,
        after: float | timedelta | None = None, every: float | timedelta | None = None,
        cron: str | None = None, payload: Any = None,
    ) -> Timer:
        """`schedule_in`, in a unit of work of its own."""
        return await self._db.run(lambda tx: self.schedule_in(
            tx, topic, key, at=at, after=after, every=every, cron=cron, payload=payload))

    def cancel_in(self, tx: Connection, topic: str, key: str) -> bool:
        """Cancel timer `(topic, key)` inside `tx`; True when there was one.

        A firing in progress finishes, but the timer is not re-armed.
        """
        result = tx.execute(delete(_t).where(_t.c.topic == topic, _t.c.key == key))
        return bool(result.rowcount)

    async def cancel(self, topic: str, key: str) -> bool:
        """`cancel_in`, in a unit of work of its own."""
        return await self._db.run(self.cancel_in, topic, key)

    # -- reading --------------------------------------------------------------------

    def get_in(self, tx: Connection, topic: str, key: str) -> Timer | None:
        """Timer `(topic, key)`, or None."""
        row = tx.execute(select(_t).where(_t.c.topic == topic, _t.c.key == key)).first()
        return None if row is None else timer_from_row(row)

    async def get(self, topic: str, key: str) -> Timer | None:
        """`get_in`, in a read unit of work."""
        return await self._db.read(self.get_in, topic, key)

    async def list(self, topic: str | None = None, *, status: TimerStatus | None = None,
                   limit: int = 100) -> list[Timer]:
        """Timers by deadline (soonest first), optionally of one topic and status."""
        query = select(_t).order_by(_t.c.due_at, _t.c.topic, _t.c.key).limit(limit)
        if topic is not None:
            query = query.where(_t.c.topic == topic)
        if status is not None:
            query = query.where(_t.c.status == TimerStatus(status).value)

        def read(tx: Connection) -> list[Timer]:
            return [timer_from_row(r) for r in tx.execute(query)]

        return await self._db.read(read)


_TIMER_TYPES: dict[str, Any] = {
    **{name: _t.c[name].type for name in (
        "due_at", "available_at", "lease_expires_at", "last_fired_at", "created_at",
        "updated_at", "payload", "every_seconds", "attempts", "version", "fired_count")},
    "claimed_at": _t.c.due_at.type,
}


class TimerStore:
    """The timer runner's statements: claim, finish, fail, release."""

    def __init__(self, backend: Backend, clock: Clock) -> None:
        self._b = b = backend
        self._clock = clock
        scheduled = TimerStatus.SCHEDULED.value
        self._claim = text(
            f"UPDATE reactive_timers SET lease_owner = :owner, attempts = attempts + 1, "
            f"available_at = {b.later('lease')}, lease_expires_at = {b.later('lease')} "
            f"WHERE (topic, key) IN (SELECT topic, key FROM (SELECT topic, key, available_at "
            f"FROM reactive_timers WHERE topic = :topic AND status = '{scheduled}' "
            f"AND available_at <= {b.now} ORDER BY available_at LIMIT :limit"
            f"{b.skip_locked}) AS due) RETURNING *, {b.now} AS claimed_at"
        ).columns(**_TIMER_TYPES)
        mine = ("topic = :topic AND key = :key AND version = :version "
                "AND lease_owner = :owner")
        self._retry = text(
            f"UPDATE reactive_timers SET available_at = {b.later('backoff')}, "
            f"lease_owner = NULL, lease_expires_at = NULL, last_error = :error WHERE {mine}")
        self._extend = text(
            f"UPDATE reactive_timers SET available_at = {b.later('lease')}, "
            f"lease_expires_at = {b.later('lease')} WHERE {mine}")
        self._release = text(
            f"UPDATE reactive_timers SET available_at = {b.now}, lease_owner = NULL, "
            f"lease_expires_at = NULL WHERE lease_owner = :owner")
        self._due_in = text(
            f"SELECT {b.seconds_until('min(available_at)')} FROM reactive_timers "
            f"WHERE {b.in_list('topic', 'topics')} AND status = '{scheduled}'")

    def claim(self, tx: Connection, *, topic: str, owner: str, lease: float,
              limit: int) -> list[tuple[Timer, datetime]]:
        """Lease up to `limit` due timers of `topic`; each with the claim's time."""
        rows = tx.execute(self._claim, {"topic": topic, "owner": owner, "limit": limit,
                                        **self._b.times(self._clock(), lease=lease)}).all()
        return [(timer_from_row(r), as_utc(r.claimed_at)) for r in rows]

    def seconds_until_due(self, tx: Connection, topics: list[str]) -> float | None:
        """Seconds until the earliest timer of `topics` is claimable; None when none is."""
        if not topics:
            return None
        value = tx.execute(self._due_in, {"topics": self._b.list_param(topics),
                                          **self._b.times(self._clock())}).scalar()
        return None if value is None else float(value)

    def _mine(self, timer: Timer, owner: str) -> Any:
        return and_(_t.c.topic == timer.topic, _t.c.key == timer.key,
                    _t.c.version == timer.version, _t.c.lease_owner == owner)

    def finish(self, tx: Connection, timer: Timer, owner: str, fired_at: datetime,
               error: str | None = None) -> None:
        """After a firing (successful, or failed for the last time): delete a one-shot
        timer (or keep it dead, with `error`), re-arm a recurring one at its next slot.

        A timer re-armed or cancelled while it fired is left as it now is.
        """
        if not timer.recurring:
            if error is None:
                tx.execute(delete(_t).where(self._mine(timer, owner)))
            else:
                tx.execute(update(_t).where(self._mine(timer, owner)).values(
                    status=TimerStatus.DEAD.value, lease_owner=None, lease_expires_at=None,
                    last_error=error, last_fired_at=fired_at, updated_at=fired_at))
            return
        due = next_due(due=timer.due_at, now=fired_at, every=timer.every_seconds,
                       cron=timer.cron)
        tx.execute(update(_t).where(self._mine(timer, owner)).values(
            due_at=due, available_at=due, attempts=0, lease_owner=None, lease_expires_at=None,
            last_error=error, fired_count=_t.c.fired_count + 1, last_fired_at=fired_at,
            updated_at=fired_at))

    @staticmethod
    def _key(timer: Timer, owner: str) -> dict[str, Any]:
        return {"topic": timer.topic, "key": timer.key, "version": timer.version,
                "owner": owner}

    def retry(self, tx: Connection, timer: Timer, owner: str, error: str,
              backoff: float) -> None:
        """A failed firing with retries left: claimable again in `backoff` seconds."""
        tx.execute(self._retry, {**self._key(timer, owner), "error": error,
                                 **self._b.times(self._clock(), backoff=backoff)})

    def extend(self, tx: Connection, timers: list[Timer], owner: str, lease: float) -> None:
        """Push the leases of timers still firing to `lease` seconds from now."""
        times = self._b.times(self._clock(), lease=lease)
        for timer in timers:
            tx.execute(self._extend, {**self._key(timer, owner), **times})

    def release(self, tx: Connection, owner: str) -> int:
        """Hand back every lease `owner` holds (shutdown)."""
        result = tx.execute(self._release, {"owner": owner, **self._b.times(self._clock())})
        return int(result.rowcount or 0)
