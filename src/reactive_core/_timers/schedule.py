"""When a recurring timer fires next: a fixed interval, or a cron expression.

Cron expressions (five fields, evaluated in UTC, plus the `@hourly`-style aliases) are
read by `cronsim`; this module only adds the aliases, the interval arithmetic and
clear errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cronsim import CronSim, CronSimError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ALIASES = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MIN_INTERVAL_SECONDS = 0.01


def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a timezone-aware datetime, received "
                        f"{type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), received naive "
                         f"{value.isoformat()!r}: use e.g. datetime.now(UTC)")
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Every:
    """Every `seconds`, on slots aligned to the Unix epoch (`Every(3600)`: on the hour)."""

    seconds: float

    def __post_init__(self) -> None:
        if (isinstance(self.seconds, bool) or not isinstance(self.seconds, (int, float))
                or not math.isfinite(self.seconds) or self.seconds < MIN_INTERVAL_SECONDS):
            raise ValueError(f"an interval must be a number of seconds >= "
                             f"{MIN_INTERVAL_SECONDS:g}, received {self.seconds!r}")

    def next_after(self, t: datetime) -> datetime:
        """The first slot start strictly after `t`."""
        elapsed = (_aware(t, "t") - _EPOCH).total_seconds()
        slots = math.floor(elapsed / self.seconds) + 1
        return _EPOCH + timedelta(seconds=slots * self.seconds)


@dataclass(frozen=True, slots=True)
class Cron:
    """A five-field cron expression (or an alias such as `@daily`), in UTC."""

    expr: str

    def __post_init__(self) -> None:
        if not isinstance(self.expr, str) or not self.expr.strip():
            raise ValueError(f"a cron expression must be a non-empty string, received "
                             f"{self.expr!r}")
        try:
            CronSim(self._expanded, _EPOCH)
        except CronSimError as exc:
            raise ValueError(f"cron expression {self.expr!r} is not valid ({exc}): expected "
                             f"five fields 'minute hour day-of-month month day-of-week' or "
                             f"one of {', '.join(sorted(_ALIASES))}") from None

    @property
    def _expanded(self) -> str:
        text = self.expr.strip()
        return _ALIASES.get(text.lower(), text)

    def next_after(self, t: datetime) -> datetime:
        """The first firing time strictly after `t`."""
        return next(CronSim(self._expanded, _aware(t, "t"))).astimezone(UTC)

    def latest_until(self, t: datetime) -> datetime:
        """The last firing time at or before `t`."""
        after = _aware(t, "t") + timedelta(microseconds=1)
        return next(CronSim(self._expanded, after, reverse=True)).astimezone(UTC)


Schedule = Every | Cron


def parse_schedule(*, every: float | timedelta | None = None,
                   cron: str | None = None) -> Schedule:
    """`Every(seconds)` or `Cron(expr)`: exactly one of `every` and `cron`."""
    if (every is None) == (cron is None):
        raise ValueError(f"expected exactly one of every= and cron=, received every={every!r}, "
                         f"cron={cron!r}")
    if cron is not None:
        return Cron(cron)
    seconds = every.total_seconds() if isinstance(every, timedelta) else every
    return Every(seconds)  # type: ignore[arg-type]


def latest_slot(schedule: Schedule, *, due: datetime, now: datetime) -> datetime:
    """The most recent slot of `schedule` that is due at `now`, and not before `due`.

    What a job missed while no instance ran is run for: once, for the latest slot.
    """
    if now <= due:
        return due
    if isinstance(schedule, Every):
        missed = math.floor((now - due).total_seconds() / schedule.seconds)
        return due + timedelta(seconds=missed * schedule.seconds)
    return max(due, schedule.latest_until(now))


def next_due(*, due: datetime, now: datetime, every: float | None,
             cron: str | None) -> datetime:
    """When a recurring timer that was due at `due` and fired at `now` fires next.

    An interval timer keeps its cadence (`due` plus whole intervals) and skips the
    slots it missed; a cron timer fires at the next match after both.
    """
    if cron is not None:
        return Cron(cron).next_after(max(due, now))
    assert every is not None
    missed = max(math.floor((now - due).total_seconds() / every), 0)
    return due + timedelta(seconds=(missed + 1) * every)
