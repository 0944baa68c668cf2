"""The error-budget engine: an objective's status from its downtime events. Pure, no I/O.

The formulas (SPEC §6), for an objective of `target` % over `window_days`:

* window `[now − window_days, now]`; every event is clipped to it. An open event
  (`end` None) counts up to `now` only while the system is `currently_down` by live
  health; otherwise it counts nothing (an orphan waiting to be closed).
* total = window_days · 1440 min; allowed = (100 − target)/100 · total.
* consumed = all minutes (self and upstream) for a `strict` objective, self minutes
  only for a `self-only` one. Overlapping events never count twice: each counting set
  is merged into disjoint intervals first.
* remaining % = allowed > 0 ? max(0, allowed − consumed)/allowed · 100 : 100;
  remaining minutes = max(0, allowed − consumed).
* availability = (total − consumed)/total · 100; strict availability counts all minutes.
* burn rate = consumed/allowed (None when allowed = 0); breaching = availability <
  target, compared as consumed > allowed (the same inequality, without the rounding
  of a division).

Decisions beyond the formulas:

* **Ties.** Datetimes have microsecond resolution, so amounts of time closer than one
  microsecond are equal. Every comparison (breaching, alert thresholds, burn pairs) is
  made in seconds with that tolerance, so binary rounding (99.9 is not exact in a
  double) never moves a boundary: 43.2 min down on 99.9 %/30 d is exactly the budget,
  not a breach.
* **Maintenance.** With `objective.exclude_maintenance`, time inside a maintenance
  window is not downtime: cancelled windows are ignored, the others merged and
  subtracted from every counting set (consumed, strict, attribution, burn windows).
  The window's total is *not* shrunk: maintenance is time the system was allowed to be
  down, so it simply costs no budget.
* **Open downtime.** `has_open_downtime` is True when the system is currently down and
  an open event of the counting set (self events only for `self-only` objectives) has
  started, even one opened at this very instant.
* **Burn windows.** The burn rate over a window W is the counted downtime within
  `[now − W, now]` divided by the budget W may spend, (allowed/total) · W. A W longer
  than the objective's window (3 d on a 1- or 2-day objective) is capped at the
  window, so the status depends only on events in the window. Pairs: 1h/5m ≥ 14.4,
  6h/30m ≥ 6, 3d/6h ≥ 1; a pair fires when both of its rates reach the threshold and
  some downtime was counted.
* **Burn alert.** `fast_burn` when the 1 h burn rate ≥ `fast_burn_multiplier`; else
  `critical` when consumed ≥ `critical` % of the budget; else `warning` when ≥
  `warning` %; else `none`. Without downtime it is always `none`. With no budget
  (target 100) any consumed downtime is `critical` (a budget of zero is exceeded by
  any outage; the burn rates are undefined, so never `fast_burn`).
* **Attribution.** Minutes per source, each source's events merged on their own; an
  upstream is keyed by `upstream_system_id` and named after its newest event that
  carries a name.

Cost: one pass over the events, a merge per counting set (linear; events already
ordered by start, as storage returns them, are not sorted again), two bisections to clip
and one to cut each burn window, so 10,000 events take a few milliseconds. Intervals are
two parallel lists (starts, stops) of datetimes rather than a list of pairs: datetimes
are exact to the microsecond and are not tracked by the garbage collector, so a long
history allocates no container per event (a tuple per event made the collector run
dozens of times per call). Only the totals become float seconds.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from operator import gt, sub
from typing import Protocol

from .models import (
    Attribution,
    AttributionMinutes,
    BurnAlert,
    BurnWindow,
    DowntimeEvent,
    MaintenanceWindow,
    Objective,
    SloStatus,
    UpstreamMinutes,
    as_utc,
)

TOLERANCE_SECONDS = 1e-6
"""Amounts of time closer than this (one microsecond, the resolution of datetimes) tie."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BurnWindowPair:
    """A long and a short window and the burn rate both must reach for the pair to fire."""

    long_minutes: int
    short_minutes: int
    threshold: float


BURN_WINDOW_PAIRS: tuple[BurnWindowPair, ...] = (
    BurnWindowPair(long_minutes=60, short_minutes=5, threshold=14.4),
    BurnWindowPair(long_minutes=6 * 60, short_minutes=30, threshold=6.0),
    BurnWindowPair(long_minutes=3 * 24 * 60, short_minutes=6 * 60, threshold=1.0),
)
"""The multi-window burn-rate pairs of the SRE workbook, fastest first."""

FAST_BURN_MINUTES = 60
"""The window whose burn rate is compared with `fast_burn_multiplier`."""

_Spans = tuple[list[datetime], list[datetime]]
"""Intervals as two parallel lists: their starts and their stops."""
_NOTHING = timedelta()


def _merged(starts: list[datetime], stops: list[datetime]) -> _Spans:
    """The intervals as disjoint ones ordered by start; touching ones join."""
    count = len(starts)
    if count == 0:
        return [], []
    if count > 1 and any(map(gt, starts, islice(starts, 1, None))):
        order = sorted(range(count), key=starts.__getitem__)
        starts = [starts[i] for i in order]
        stops = [stops[i] for i in order]
    out_starts: list[datetime] = []
    out_stops: list[datetime] = []
    current_start, current_stop = starts[0], stops[0]
    for start, stop in zip(starts, stops, strict=True):
        if start <= current_stop:
            if stop > current_stop:
                current_stop = stop
        else:
            out_starts.append(current_start)
            out_stops.append(current_stop)
            current_start, current_stop = start, stop
    out_starts.append(current_start)
    out_stops.append(current_stop)
    return out_starts, out_stops


def _clipped(spans: _Spans, low: datetime, high: datetime) -> _Spans:
    """The part of disjoint ordered `spans` inside `[low, high]` (two bisections)."""
    starts, stops = spans
    first, last = bisect_right(stops, low), bisect_left(starts, high)
    if first >= last:
        return [], []
    starts, stops = starts[first:last], stops[first:last]
    if starts[0] < low:
        starts[0] = low
    if stops[-1] > high:
        stops[-1] = high
    return starts, stops


def _without(spans: _Spans, holes: _Spans) -> _Spans:
    """Disjoint ordered `spans` minus disjoint ordered `holes`, in one linear pass."""
    hole_starts, hole_stops = holes
    if not hole_starts or not spans[0]:
        return spans
    out_starts: list[datetime] = []
    out_stops: list[datetime] = []
    first, count = 0, len(hole_starts)
    for start, stop in zip(*spans, strict=True):
        while first < count and hole_stops[first] <= start:
            first += 1
        index = first
        while index < count and hole_starts[index] < stop:
            if hole_starts[index] > start:
                out_starts.append(start)
                out_stops.append(hole_starts[index])
            if hole_stops[index] >= stop:
                start = stop
                break
            start = hole_stops[index]
            index += 1
        if start < stop:
            out_starts.append(start)
            out_stops.append(stop)
    return out_starts, out_stops


def _seconds(spans: _Spans) -> float:
    """The total length of disjoint `spans`, in seconds (exact to the microsecond)."""
    starts, stops = spans
    return sum(map(sub, stops, starts), _NOTHING).total_seconds()


def _seconds_since(spans: _Spans, cut: datetime) -> float:
    """Seconds of disjoint ordered `spans` after `cut` (a bisection and a sum)."""
    starts, stops = spans
    first = bisect_right(stops, cut)
    if first == len(stops):
        return 0.0
    total = sum(map(sub, islice(stops, first, None), islice(starts, first, None)), _NOTHING)
    if starts[first] < cut:
        total -= cut - starts[first]
    return total.total_seconds()


def _quiet_windows(has_budget: bool) -> tuple[BurnWindow, ...]:
    rate = 0.0 if has_budget else None
    return tuple(BurnWindow(
        long_window_minutes=pair.long_minutes, short_window_minutes=pair.short_minutes,
        threshold=pair.threshold, long_burn_rate=rate, short_burn_rate=rate, fires=False)
        for pair in BURN_WINDOW_PAIRS)


_QUIET_WINDOWS = {True: _quiet_windows(True), False: _quiet_windows(False)}
"""The burn windows when no downtime is counted in the last three days (most reads)."""
_BURN_MINUTES = sorted({FAST_BURN_MINUTES, *(m for pair in BURN_WINDOW_PAIRS
                                             for m in (pair.long_minutes, pair.short_minutes))})


class EventLike(Protocol):
    """What the engine reads of a downtime event (`DowntimeEvent` has it, so do the
    plain records storage builds for the hot read path)."""

    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime | None: ...
    @property
    def attribution(self) -> Attribution: ...
    @property
    def upstream_system_id(self) -> str | None: ...
    @property
    def upstream_system_name(self) -> str | None: ...


class _Event:
    """One event of `EventColumns`, when iterated."""

    __slots__ = ("attribution", "end", "start", "upstream_system_id", "upstream_system_name")

    def __init__(self, start: datetime, end: datetime | None, attribution: Attribution,
                 upstream_system_id: str | None, upstream_system_name: str | None) -> None:
        self.start = start
        self.end = end
        self.attribution = attribution
        self.upstream_system_id = upstream_system_id
        self.upstream_system_name = upstream_system_name


@dataclass(frozen=True, slots=True)
class EventColumns:
    """Downtime events as parallel columns, entry `i` of each describing event `i`.

    What storage loads for the read path: reading many objectives' events makes no
    object per event (which would cost time, and make the garbage collector run).
    Iterating yields event-like records, for code that wants one event at a time.
    """

    starts: list[datetime]
    ends: list[datetime | None]
    attributions: list[Attribution]
    upstream_ids: list[str | None]
    upstream_names: list[str | None]

    def __post_init__(self) -> None:
        count = len(self.starts)
        if not (len(self.ends) == len(self.attributions) == len(self.upstream_ids)
                == len(self.upstream_names) == count):
            lengths = {name: len(getattr(self, name)) for name in (
                "starts", "ends", "attributions", "upstream_ids", "upstream_names")}
            raise ValueError(f"EventColumns: every column must have one entry per event, "
                             f"received lengths {lengths}")

    @classmethod
    def of(cls, events: Iterable[DowntimeEvent | EventLike]) -> EventColumns:
        """`events` as columns (in the order given)."""
        if isinstance(events, EventColumns):
            return events
        items = list(events)
        return cls([e.start for e in items], [e.end for e in items],
                   [e.attribution for e in items], [e.upstream_system_id for e in items],
                   [e.upstream_system_name for e in items])

    def __len__(self) -> int:
        return len(self.starts)

    def __iter__(self) -> Iterator[EventLike]:
        return map(_Event, self.starts, self.ends, self.attributions, self.upstream_ids,
                   self.upstream_names)


class _Timeline:
    """The events by source, open ones resolved at `now` (an open event counts up to
    `now` while the system is down, else nothing)."""

    __slots__ = ("all_starts", "all_stops", "open_downtime", "own_starts", "own_stops",
                 "up_starts", "up_stops", "upstream")

    def __init__(self, events: EventColumns, now: datetime, currently_down: bool,
                 strict: bool) -> None:
        starts, stops, attributions = events.starts, events.ends, events.attributions
        kept: list[int] | None = None
        self.open_downtime = False
        if None in stops:  # at most one per objective: the slow path is rare
            kept, stops = [], list(stops)
            self_attribution = Attribution.SELF
            for index, stop in enumerate(stops):
                if stop is None:
                    if not currently_down:
                        continue  # an orphan waiting to be closed counts nothing
                    stops[index] = now
                    if starts[index] <= now and (
                            strict or attributions[index] == self_attribution):
                        self.open_downtime = True
                kept.append(index)
            if len(kept) < len(stops):
                starts = [starts[i] for i in kept]
                stops = [stops[i] for i in kept]
                attributions = [attributions[i] for i in kept]
            else:
                kept = None
        self.all_starts: list[datetime] = starts
        self.all_stops: list[datetime] = stops  # type: ignore[assignment]  # no None left
        self.upstream: list[int] = []
        """Indexes, in `events`, of the events attributed upstream."""
        if Attribution.UPSTREAM not in attributions:
            self.own_starts, self.own_stops = self.all_starts, self.all_stops
            self.up_starts: list[datetime] = []
            self.up_stops: list[datetime] = []
            return
        own_starts, own_stops, up_starts, up_stops = [], [], [], []
        upstream = self.upstream
        self_attribution = Attribution.SELF
        for index, (start, stop, attribution) in enumerate(
                zip(starts, self.all_stops, attributions, strict=True)):
            if attribution == self_attribution:
                own_starts.append(start)
                own_stops.append(stop)
            else:
                upstream.append(index if kept is None else kept[index])
                up_starts.append(start)
                up_stops.append(stop)
        self.own_starts, self.own_stops = own_starts, own_stops
        self.up_starts, self.up_stops = up_starts, up_stops


class _Window:
    """The objective's window at `now` and its budget; clips what it counts."""

    __slots__ = ("allowed", "allowed_fraction", "has_budget", "holes", "lengths", "now",
                 "start", "total_seconds")

    def __init__(self, objective: Objective, now: datetime,
                 maintenance: Iterable[MaintenanceWindow]) -> None:
        self.now = now
        self.total_seconds = total = objective.window_days * 86_400
        self.start = now - timedelta(seconds=total)
        self.allowed_fraction = (100.0 - objective.target) / 100.0
        self.allowed = (100.0 - objective.target) * total / 100.0
        self.has_budget = self.allowed > 0
        self.lengths = {minutes: min(minutes * 60.0, float(total)) for minutes in _BURN_MINUTES}
        self.holes: _Spans = ([], [])
        if objective.exclude_maintenance:
            kept = [window for window in maintenance if not window.cancelled]
            self.holes = _clipped(_merged([w.start for w in kept], [w.end for w in kept]),
                                  self.start, now)

    def counted(self, starts: list[datetime], stops: list[datetime]) -> _Spans:
        """The intervals merged, clipped to the window, maintenance taken out."""
        return _without(_clipped(_merged(starts, stops), self.start, self.now), self.holes)

    def recent(self, counting: _Spans, minutes: Iterable[int]) -> dict[int, float] | None:
        """Counted seconds in each of the last `minutes` windows; None when nothing was
        counted in the longest burn window (every amount is 0)."""
        stops = counting[1]
        if not stops or stops[-1] <= self.now - timedelta(
                seconds=self.lengths[_BURN_MINUTES[-1]]):
            return None
        return {m: _seconds_since(counting, self.now - timedelta(seconds=self.lengths[m]))
                for m in minutes}

    def reaches(self, rate: float, amounts: dict[int, float] | None, minutes: int) -> bool:
        """Whether the burn rate over the last `minutes` is at least `rate`."""
        amount = amounts[minutes] if amounts is not None else 0.0
        return (amount > 0 and amount + TOLERANCE_SECONDS
                >= rate * self.allowed_fraction * self.lengths[minutes])

    def remaining(self, consumed: float) -> float:
        """Seconds of budget left (0 within the tolerance)."""
        remaining = self.allowed - consumed
        return 0.0 if remaining <= TOLERANCE_SECONDS else remaining

    def alert(self, objective: Objective, consumed: float,
              amounts: dict[int, float] | None) -> BurnAlert:
        """The burn alert (see the module docstring)."""
        allowed = self.allowed
        if not self.has_budget:
            return BurnAlert.CRITICAL if consumed > TOLERANCE_SECONDS else BurnAlert.NONE
        if consumed <= 0:
            return BurnAlert.NONE
        thresholds = objective.burn_rate_thresholds
        if self.reaches(thresholds.fast_burn_multiplier, amounts, FAST_BURN_MINUTES):
            return BurnAlert.FAST_BURN
        if consumed + TOLERANCE_SECONDS >= thresholds.critical / 100.0 * allowed:
            return BurnAlert.CRITICAL
        if consumed + TOLERANCE_SECONDS >= thresholds.warning / 100.0 * allowed:
            return BurnAlert.WARNING
        return BurnAlert.NONE


def compute_status(
    objective: Objective,
    events: Iterable[DowntimeEvent | EventLike] | EventColumns,
    *,
    now: datetime,
    currently_down: bool,
    maintenance: Iterable[MaintenanceWindow] = (),
) -> SloStatus:
    """The objective's error budget at `now` from its downtime `events`.

    `events` may come in any order and may reach outside the window (they are
    clipped); `currently_down` is live health's word on the system (or on the
    objective's check) at `now`; `maintenance` is the system's maintenance windows,
    used only when `objective.exclude_maintenance`. A naive `now` is taken as UTC.
    See the module docstring for the formulas and the decisions around them.
    """
    now = as_utc(now)
    strict = objective.is_strict
    columns = EventColumns.of(events)
    timeline = _Timeline(columns, now, currently_down, strict)
    window = _Window(objective, now, maintenance)
    own_spans = window.counted(timeline.own_starts, timeline.own_stops)
    all_spans = (window.counted(timeline.all_starts, timeline.all_stops)
                 if timeline.upstream else own_spans)
    counting = all_spans if strict else own_spans
    strict_seconds = _seconds(all_spans)
    own_seconds = _seconds(own_spans)
    consumed = strict_seconds if strict else own_seconds
    total_seconds, allowed, has_budget = window.total_seconds, window.allowed, window.has_budget
    remaining = window.remaining(consumed)

    amounts = window.recent(counting, _BURN_MINUTES)
    if amounts is None:
        burn_windows = _QUIET_WINDOWS[has_budget]
    else:
        def rate(minutes: int) -> float | None:
            assert amounts is not None
            return (amounts[minutes] / (window.allowed_fraction * window.lengths[minutes])
                    if has_budget else None)

        burn_windows = tuple(BurnWindow(
            long_window_minutes=pair.long_minutes,
            short_window_minutes=pair.short_minutes,
            threshold=pair.threshold,
            long_burn_rate=rate(pair.long_minutes),
            short_burn_rate=rate(pair.short_minutes),
            fires=has_budget and window.reaches(pair.threshold, amounts, pair.long_minutes)
            and window.reaches(pair.threshold, amounts, pair.short_minutes),
        ) for pair in BURN_WINDOW_PAIRS)

    return SloStatus(
        error_budget_allowed_minutes=allowed / 60.0,
        error_budget_remaining_percent=remaining / allowed * 100.0 if has_budget else 100.0,
        error_budget_remaining_minutes=remaining / 60.0,
        error_budget_consumed_minutes=consumed / 60.0,
        error_budget_consumed_strict_minutes=strict_seconds / 60.0,
        current_availability=(total_seconds - consumed) * 100.0 / total_seconds,
        strict_availability=(total_seconds - strict_seconds) * 100.0 / total_seconds,
        burn_rate=consumed / allowed if has_budget else None,
        is_breaching=consumed > allowed + TOLERANCE_SECONDS,
        has_open_downtime=timeline.open_downtime,
        attribution=AttributionMinutes(
            self_minutes=own_seconds / 60.0,
            upstreams=(_upstream_minutes(columns, timeline, window)
                       if timeline.upstream else ())),
        burn_windows=burn_windows,
        burn_alert=window.alert(objective, consumed, amounts),
    )


@dataclass(frozen=True, slots=True)
class Budget:
    """The part of an objective's status the live `slo` entity shows."""

    remaining_percent: float
    availability: float
    burn_rate: float | None
    is_breaching: bool
    burn_alert: BurnAlert


def compute_budget(
    objective: Objective,
    events: Iterable[DowntimeEvent | EventLike] | EventColumns,
    *,
    now: datetime,
    currently_down: bool,
    maintenance: Iterable[MaintenanceWindow] = (),
) -> Budget:
    """`compute_status`'s budget figures alone (the same numbers), for reads of many
    objectives at once: no attribution, no burn-window pairs but the fast-burn one."""
    now = as_utc(now)
    strict = objective.is_strict
    timeline = _Timeline(EventColumns.of(events), now, currently_down, strict)
    window = _Window(objective, now, maintenance)
    counting = (window.counted(timeline.all_starts, timeline.all_stops) if strict
                else window.counted(timeline.own_starts, timeline.own_stops))
    consumed = _seconds(counting)
    allowed, total_seconds = window.allowed, window.total_seconds
    has_budget = window.has_budget
    return Budget(
        remaining_percent=(window.remaining(consumed) / allowed * 100.0 if has_budget
                           else 100.0),
        availability=(total_seconds - consumed) * 100.0 / total_seconds,
        burn_rate=consumed / allowed if has_budget else None,
        is_breaching=consumed > allowed + TOLERANCE_SECONDS,
        burn_alert=window.alert(objective, consumed, window.recent(
            counting, (FAST_BURN_MINUTES,)) if consumed > 0 else None),
    )


def _upstream_minutes(events: EventColumns, timeline: _Timeline, window: _Window,
                      ) -> tuple[UpstreamMinutes, ...]:
    """Minutes per upstream, largest first; each named after its newest named event.

    An upstream whose events all fall outside the window is left out.
    """
    starts, stops = timeline.up_starts, timeline.up_stops
    ids, names = events.upstream_ids, events.upstream_names
    groups: dict[str | None, list[int]] = {}
    for position, index in enumerate(timeline.upstream):
        key = ids[index]
        group = groups.get(key)
        if group is None:
            groups[key] = [position]
        else:
            group.append(position)
    minutes = []
    for key, positions in groups.items():
        inside = window.counted([starts[p] for p in positions], [stops[p] for p in positions])
        if not inside[0]:
            continue
        name: str | None = None
        newest: datetime | None = None
        for p in positions:
            named = names[timeline.upstream[p]]
            if named is not None and (newest is None or starts[p] > newest):
                name, newest = named, starts[p]
        minutes.append(UpstreamMinutes(system_id=key, system_name=name,
                                       minutes=_seconds(inside) / 60.0))
    minutes.sort(key=lambda item: (-item.minutes, item.system_id or ""))
    return tuple(minutes)
