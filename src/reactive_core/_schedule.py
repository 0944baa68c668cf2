"""Time arithmetic for scheduled jobs that run once per cluster per slot.

A scheduled job runs at most once per *slot*: the scheduler computes the slot
that is due now (``Schedule.slot_at``), turns it into a stable string
(``slot_key``) and claims a unique ``(job, slot)`` database row; whichever
instance inserts the row runs the job.  This module only does the time part:
pure functions over timezone-aware UTC datetimes, no I/O.

Two kinds of schedule exist:

* ``Every(seconds, offset=...)`` -- fixed-length slots aligned to the Unix
  epoch plus ``offset``.
* ``Cron(expr)`` -- standard 5-field cron (``minute hour day-of-month month
  day-of-week``) evaluated in UTC, plus the ``@hourly``-style aliases.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from bisect import bisect_left, bisect_right
from calendar import monthrange
from dataclasses import dataclass, field
from datetime import MAXYEAR, MINYEAR, date, datetime, timedelta, timezone

__all__ = [
    "CRON_LOOKBACK",
    "Cron",
    "Every",
    "Schedule",
    "parse_schedule",
    "slot_key",
]

_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_ONE_MINUTE = timedelta(minutes=1)
_US_PER_SECOND = 1_000_000

#: How far back ``Cron.slot_at`` searches for the latest firing time.  A
#: schedule whose previous firing is older than this (only possible for
#: Feb-29-only expressions) has no due slot, so ``slot_at`` returns ``None``.
CRON_LOOKBACK = timedelta(days=367)

#: ``next_after`` never needs to look further ahead than this many years for a
#: satisfiable expression (the longest gap is Feb 29 across a skipped leap year
#: such as 2096 -> 2104).
_MAX_FORWARD_YEARS = 12


def _require_utc(value: datetime, name: str) -> datetime:
    """Return ``value`` converted to UTC, rejecting naive datetimes.

    Aware datetimes in other zones are converted; naive ones raise
    ``ValueError`` because their meaning is ambiguous across instances.
    """
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a timezone-aware datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{name} must be a timezone-aware UTC datetime, got naive {value.isoformat()!r}; "
            "use e.g. datetime.now(timezone.utc)"
        )
    return value.astimezone(_UTC)


def slot_key(slot: datetime) -> str:
    """Return the ISO-8601 UTC string used as the database key for ``slot``.

    Whole-second slots render as ``"2026-11-23T00:00:00Z"``; sub-second slots
    (possible with fractional ``Every`` periods) keep their microseconds, e.g.
    ``"2026-11-23T00:00:00.500000Z"``.  The form is deterministic for a given
    instant, so every instance derives the same key.
    """
    utc = _require_utc(slot, "slot")
    return utc.replace(tzinfo=None).isoformat() + "Z"


class Schedule(ABC):
    """When a scheduled job is due: a sequence of firing times (slot starts)."""

    __slots__ = ()

    @abstractmethod
    def slot_at(self, now: datetime) -> datetime | None:
        """Return the start of the latest slot due at or before ``now``.

        That is the most recent firing time ``<= now`` (a firing exactly at
        ``now`` counts), or ``None`` if there is none yet.  ``now`` must be
        timezone-aware; the result is in UTC.
        """

    @abstractmethod
    def next_after(self, t: datetime) -> datetime:
        """Return the first firing time strictly after ``t`` (in UTC).

        ``t`` must be timezone-aware.
        """


# ---------------------------------------------------------------------------
# Every
# ---------------------------------------------------------------------------


def _to_microseconds(dt: datetime) -> int:
    """Return the exact number of microseconds between the Unix epoch and ``dt``."""
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * _US_PER_SECOND + delta.microseconds


def _from_microseconds(us: int) -> datetime:
    """Return the UTC datetime ``us`` microseconds after the Unix epoch."""
    return _EPOCH + timedelta(microseconds=us)


def _is_real_number(value: object) -> bool:
    """Tell whether ``value`` is an int or float (bools excluded)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Every(Schedule):
    """Fixed-length slots of ``seconds`` aligned to the Unix epoch plus ``offset``.

    Slot start for an instant ``ts`` (seconds since the epoch) is
    ``floor((ts - offset) / seconds) * seconds + offset``.  Arithmetic is done
    exactly in integer microseconds (datetime's resolution), so boundaries are
    not subject to float rounding.
    """

    seconds: float
    offset: float = field(default=0, kw_only=True)

    def __post_init__(self) -> None:
        """Validate ``seconds`` (> 0, at least one microsecond) and ``offset``."""
        if not _is_real_number(self.seconds) or not math.isfinite(self.seconds):
            raise ValueError(
                f"Every(seconds=...) expects a finite number of seconds > 0, got {self.seconds!r}"
            )
        if self.seconds <= 0:
            raise ValueError(f"Every(seconds=...) expects seconds > 0, got {self.seconds!r}")
        if round(self.seconds * _US_PER_SECOND) < 1:
            raise ValueError(
                "Every(seconds=...) expects seconds >= 0.000001 (one microsecond), "
                f"got {self.seconds!r}"
            )
        if not _is_real_number(self.offset) or not math.isfinite(self.offset):
            raise ValueError(
                f"Every(offset=...) expects a finite number of seconds, got {self.offset!r}"
            )

    @property
    def _period_us(self) -> int:
        """The slot length in whole microseconds."""
        return round(self.seconds * _US_PER_SECOND)

    @property
    def _offset_us(self) -> int:
        """The alignment offset in whole microseconds."""
        return round(self.offset * _US_PER_SECOND)

    def slot_at(self, now: datetime) -> datetime:
        """Return the start of the slot containing ``now`` (always exists)."""
        us = _to_microseconds(_require_utc(now, "now"))
        period, offset = self._period_us, self._offset_us
        return _from_microseconds((us - offset) // period * period + offset)

    def next_after(self, t: datetime) -> datetime:
        """Return the start of the slot following the one containing ``t``."""
        return self.slot_at(_require_utc(t, "t")) + timedelta(microseconds=self._period_us)


# ---------------------------------------------------------------------------
# Cron
# ---------------------------------------------------------------------------

_ALIASES: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

_MONTH_NAMES: dict[str, int] = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
        start=1,
    )
}
_DAY_NAMES: dict[str, int] = {
    name: number
    for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))
}

_ITEM_RE = re.compile(r"^(?P<range>\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(?P<step>[0-9]+))?$")
_NUMBER_RE = re.compile(r"^[0-9]+$")


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    """Static description of one cron field: name, bounds and accepted names."""

    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS: tuple[_FieldSpec, ...] = (
    _FieldSpec("minute", 0, 59, {}),
    _FieldSpec("hour", 0, 23, {}),
    _FieldSpec("day-of-month", 1, 31, {}),
    _FieldSpec("month", 1, 12, _MONTH_NAMES),
    _FieldSpec("day-of-week", 0, 7, _DAY_NAMES),
)


def _field_error(expr: str, spec: _FieldSpec, text: str, problem: str) -> ValueError:
    """Build the ``ValueError`` for a bad field of cron expression ``expr``."""
    allowed = f"{spec.low}-{spec.high}"
    if spec.names:
        allowed += f" or names {min(spec.names, key=spec.names.__getitem__)}-"
        allowed += max(spec.names, key=spec.names.__getitem__)
    return ValueError(
        f"invalid cron expression {expr!r}: {spec.name} field {text!r}: {problem} "
        f"(allowed {allowed})"
    )


def _parse_value(expr: str, spec: _FieldSpec, text: str, token: str) -> int:
    """Parse one number or name of a cron field, checking its range."""
    if _NUMBER_RE.match(token):
        value = int(token)
    elif token.upper() in spec.names:
        value = spec.names[token.upper()]
    else:
        raise _field_error(expr, spec, text, f"{token!r} is not a valid value")
    if not spec.low <= value <= spec.high:
        raise _field_error(expr, spec, text, f"{value} is out of range")
    return value


def _parse_field(expr: str, spec: _FieldSpec, text: str) -> frozenset[int]:
    """Parse one cron field (``*``, numbers, names, ranges, lists, steps) to a set."""
    values: set[int] = set()
    for item in text.split(","):
        match = _ITEM_RE.match(item)
        if match is None:
            raise _field_error(expr, spec, text, f"cannot parse {item!r}")
        range_text, step_text = match.group("range"), match.group("step")
        if range_text == "*":
            low, high = spec.low, spec.high
        elif "-" in range_text:
            first, last = range_text.split("-")
            low = _parse_value(expr, spec, text, first)
            high = _parse_value(expr, spec, text, last)
            if low > high:
                raise _field_error(expr, spec, text, f"range {item!r} is reversed")
        else:
            low = _parse_value(expr, spec, text, range_text)
            # "a/n" means "a-max/n"; a bare "a" is just that value.
            high = spec.high if step_text is not None else low
        step = 1
        if step_text is not None:
            step = int(step_text)
            if step < 1:
                raise _field_error(expr, spec, text, f"step in {item!r} must be >= 1")
        values.update(range(low, high + 1, step))
    return frozenset(values)


def _cron_weekday(day: date) -> int:
    """Return the cron day of week (0 = Sunday ... 6 = Saturday) of ``day``."""
    return (day.weekday() + 1) % 7


def _month_step(year: int, month: int, delta: int) -> tuple[int, int]:
    """Return the (year, month) ``delta`` months (+1 or -1) from ``year``/``month``."""
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


@dataclass(frozen=True, slots=True)
class Cron(Schedule):
    """A standard 5-field cron expression evaluated in UTC.

    Fields are ``minute hour day-of-month month day-of-week`` and accept
    ``*``, numbers, ranges ``a-b``, lists ``a,b``, steps ``*/n``, ``a-b/n`` and
    ``a/n`` (meaning ``a-max/n``).  Day of week is 0-7 with 0 and 7 both
    Sunday; month names ``JAN``-``DEC`` and day names ``SUN``-``SAT`` are
    accepted case-insensitively.  Aliases: ``@hourly``, ``@daily``,
    ``@midnight``, ``@weekly``, ``@monthly``, ``@yearly`` (``@annually``).

    Day rule (as in Vixie cron): a field is *unrestricted* when it starts
    with ``*``.  If both day-of-month and day-of-week are restricted, a day
    matches when **either** matches; otherwise both must match.

    Invalid expressions, and expressions that can never fire (such as
    ``0 0 30 2 *``), raise ``ValueError`` on construction.
    """

    expr: str
    _minutes: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _hours: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _doms: frozenset[int] = field(init=False, repr=False, compare=False)
    _months: frozenset[int] = field(init=False, repr=False, compare=False)
    _dows: frozenset[int] = field(init=False, repr=False, compare=False)
    _dom_star: bool = field(init=False, repr=False, compare=False)
    _dow_star: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Parse and validate the expression, caching the per-field value sets."""
        expr = self.expr
        if not isinstance(expr, str):
            raise TypeError(f"cron expression must be a str, got {type(expr).__name__}")
        text = expr.strip()
        if text.startswith("@"):
            alias = _ALIASES.get(text.lower())
            if alias is None:
                raise ValueError(
                    f"invalid cron expression {expr!r}: unknown alias {text!r} "
                    f"(supported: {', '.join(sorted(_ALIASES))})"
                )
            text = alias
        parts = text.split()
        if len(parts) != 5:
            raise ValueError(
                f"invalid cron expression {expr!r}: expected 5 fields "
                f"(minute hour day-of-month month day-of-week), got {len(parts)}"
            )
        minutes, hours, doms, months, dows = (
            _parse_field(expr, spec, part) for spec, part in zip(_FIELDS, parts)
        )
        dows = frozenset(d % 7 for d in dows)  # 7 is Sunday too
        dom_star, dow_star = parts[2].startswith("*"), parts[4].startswith("*")
        if not dom_star and dow_star and not any(
            day <= (29 if month == 2 else monthrange(2000, month)[1])
            for month in months
            for day in doms
        ):
            raise ValueError(
                f"invalid cron expression {expr!r}: day-of-month field {parts[2]!r} "
                f"never occurs in month field {parts[3]!r}, so it would never fire"
            )
        setattr_ = object.__setattr__
        setattr_(self, "_minutes", tuple(sorted(minutes)))
        setattr_(self, "_hours", tuple(sorted(hours)))
        setattr_(self, "_doms", doms)
        setattr_(self, "_months", months)
        setattr_(self, "_dows", dows)
        setattr_(self, "_dom_star", dom_star)
        setattr_(self, "_dow_star", dow_star)

    # -- matching helpers -------------------------------------------------

    def _day_matches(self, day: date) -> bool:
        """Tell whether ``day`` satisfies the day-of-month/day-of-week rule."""
        dom_ok = day.day in self._doms
        dow_ok = _cron_weekday(day) in self._dows
        if self._dom_star or self._dow_star:
            return dom_ok and dow_ok
        return dom_ok or dow_ok

    def _first_time_from(self, hour: int, minute: int) -> tuple[int, int] | None:
        """Return the first matching (hour, minute) at or after ``hour:minute``."""
        hours, minutes = self._hours, self._minutes
        for h in hours[bisect_left(hours, hour) :]:
            if h > hour:
                return h, minutes[0]
            i = bisect_left(minutes, minute)
            if i < len(minutes):
                return h, minutes[i]
        return None

    def _last_time_until(self, hour: int, minute: int) -> tuple[int, int] | None:
        """Return the last matching (hour, minute) at or before ``hour:minute``."""
        hours, minutes = self._hours, self._minutes
        for h in reversed(hours[: bisect_right(hours, hour)]):
            if h < hour:
                return h, minutes[-1]
            i = bisect_right(minutes, minute)
            if i > 0:
                return h, minutes[i - 1]
        return None

    # -- Schedule API -----------------------------------------------------

    def next_after(self, t: datetime) -> datetime:
        """Return the first firing time strictly after ``t``.

        Skips whole months that do not match, then days, then uses binary
        search over the hour and minute sets, so it never steps minute by
        minute.
        """
        start = _require_utc(t, "t").replace(second=0, microsecond=0) + _ONE_MINUTE
        year, month = start.year, start.month
        first_day, hour, minute = start.day, start.hour, start.minute
        last_year = min(MAXYEAR, start.year + _MAX_FORWARD_YEARS)
        while year <= last_year:
            if month in self._months:
                for day in range(first_day, monthrange(year, month)[1] + 1):
                    if self._day_matches(date(year, month, day)):
                        found = self._first_time_from(hour, minute)
                        if found is not None:
                            return datetime(year, month, day, *found, tzinfo=_UTC)
                    hour = minute = 0
            year, month = _month_step(year, month, +1)
            first_day, hour, minute = 1, 0, 0
        raise ValueError(f"cron expression {self.expr!r} has no firing time after {t.isoformat()}")

    def slot_at(self, now: datetime) -> datetime | None:
        """Return the latest firing time ``<= now``, or ``None``.

        Searches back at most ``CRON_LOOKBACK`` (367 days); if the previous
        firing is older than that (only Feb-29-only schedules), returns
        ``None``.  A firing exactly at ``now`` is included.
        """
        limit = _require_utc(now, "now").replace(second=0, microsecond=0)
        try:
            earliest = limit - CRON_LOOKBACK
        except OverflowError:
            earliest = datetime(MINYEAR, 1, 1, tzinfo=_UTC)
        year, month = limit.year, limit.month
        last_day, hour, minute = limit.day, limit.hour, limit.minute
        while (year, month) >= (earliest.year, earliest.month):
            if month in self._months:
                for day in range(last_day, 0, -1):
                    current = date(year, month, day)
                    if current < earliest.date():
                        return None
                    if self._day_matches(current):
                        found = self._last_time_until(hour, minute)
                        if found is not None:
                            slot = datetime(year, month, day, *found, tzinfo=_UTC)
                            return slot if slot >= earliest else None
                    hour, minute = 23, 59
            if year == MINYEAR and month == 1:
                break
            year, month = _month_step(year, month, -1)
            last_day, hour, minute = monthrange(year, month)[1], 23, 59
        return None


# ---------------------------------------------------------------------------
# Construction from configuration
# ---------------------------------------------------------------------------


def parse_schedule(
    *, every: float | timedelta | None = None, cron: str | None = None
) -> Schedule:
    """Build a ``Schedule`` from exactly one of ``every=`` or ``cron=``.

    ``every`` is a period in seconds (or a ``timedelta``) giving ``Every``;
    ``cron`` is a cron expression or alias giving ``Cron``.  Passing both or
    neither raises ``ValueError``.
    """
    if (every is None) == (cron is None):
        got = "both" if every is not None else "neither"
        raise ValueError(
            f"parse_schedule() needs exactly one of every= or cron=, got {got} "
            f"(every={every!r}, cron={cron!r})"
        )
    if cron is not None:
        return Cron(cron)
    assert every is not None
    if isinstance(every, timedelta):
        return Every(every.total_seconds())
    return Every(every)
