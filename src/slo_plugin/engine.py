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

Cost: one pass over the events, one sort per counting set (linear on events already
ordered by start, as storage returns them), linear merges and two bisections to clip,
so 10,000 events take a few milliseconds. Intervals stay datetimes and their lengths
timedeltas (exact to the microsecond, and cheaper than converting every event to a
float timestamp); only the totals become float seconds.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import starmap
from operator import itemgetter, sub
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

_Span = tuple[datetime, datetime]
_NOTHING = timedelta()


def _span_start(span: _Span) -> datetime:
    return span[0]


def _span_stop(span: _Span) -> datetime:
    return span[1]


def _merged(spans: list[_Span]) -> list[_Span]:
    """`spans` (sorted in place) as disjoint, ordered intervals; touching ones join."""
    if not spans:
        return []
    spans.sort()
    out: list[_Span] = []
    append = out.append
    current_start, current_stop = spans[0]
    for start, stop in spans:
        if start <= current_stop:
            if stop > current_stop:
                current_stop = stop
        else:
            append((current_start, current_stop))
            current_start, current_stop = start, stop
    out.append((current_start, current_stop))
    return out


def _clipped(spans: list[_Span], low: datetime, high: datetime) -> list[_Span]:
    """The part of disjoint ordered `spans` inside `[low, high]` (two bisections)."""
    inside = spans[bisect_right(spans, low, key=_span_stop):
                   bisect_left(spans, high, key=_span_start)]
    if inside:
        start, stop = inside[0]
        if start < low:
            inside[0] = (low, stop)
        start, stop = inside[-1]
        if stop > high:
            inside[-1] = (start, high)
    return inside


def _without(spans: list[_Span], holes: list[_Span]) -> list[_Span]:
    """Disjoint ordered `spans` minus disjoint ordered `holes`, in one linear pass."""
    if not holes or not spans:
        return spans
    out: list[_Span] = []
    first, count = 0, len(holes)
    for start, stop in spans:
        while first < count and holes[first][1] <= start:
            first += 1
        index = first
        while index < count and holes[index][0] < stop:
            hole_start, hole_stop = holes[index]
            if hole_start > start:
                out.append((start, hole_start))
            if hole_stop >= stop:
                start = stop
                break
            start = hole_stop
            index += 1
        if start < stop:
            out.append((start, stop))
    return out


def _seconds(spans: list[_Span]) -> float:
    """The total length of disjoint `spans`, in seconds (exact to the microsecond)."""
    return (-sum(starmap(sub, spans), _NOTHING)).total_seconds()  # never -0.0


def _seconds_since(spans: list[_Span], cut: datetime) -> float:
    """Seconds of disjoint ordered `spans` after `cut` (walks from the newest span)."""
    total = _NOTHING
    for start, stop in reversed(spans):
        if stop <= cut:
            break
        total += stop - (start if start > cut else cut)
    return total.total_seconds()


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


def compute_status(
    objective: Objective,
    events: Iterable[DowntimeEvent | EventLike],
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
    total_seconds = objective.window_days * 86_400
    window_start = now - timedelta(seconds=total_seconds)
    strict = objective.is_strict

    # One cheap pass over the events; clipping happens after merging (two bisections).
    self_attribution = Attribution.SELF
    own: list[_Span] = []
    upstream: list[tuple[datetime, datetime, EventLike]] = []
    open_downtime = False
    for event in events:
        start = event.start
        stop = event.end
        is_self = event.attribution == self_attribution
        if stop is None:
            if not currently_down:
                continue  # an orphan waiting to be closed counts nothing
            stop = now
            if start <= now and (strict or is_self):
                open_downtime = True
        if is_self:
            own.append((start, stop))
        else:
            upstream.append((start, stop, event))

    holes: list[_Span] = []
    if objective.exclude_maintenance:
        holes = _clipped(_merged([(window.start, window.end) for window in maintenance
                                  if not window.cancelled]), window_start, now)

    def counted(spans: list[_Span]) -> list[_Span]:
        return _without(_clipped(_merged(spans), window_start, now), holes)

    own_spans = counted(own)
    all_spans = (counted(own + [(start, stop) for start, stop, _ in upstream])
                 if upstream else own_spans)
    counting = all_spans if strict else own_spans
    strict_seconds = _seconds(all_spans)
    own_seconds = _seconds(own_spans)
    consumed = strict_seconds if strict else own_seconds

    allowed_fraction = (100.0 - objective.target) / 100.0
    allowed = (100.0 - objective.target) * total_seconds / 100.0
    has_budget = allowed > 0
    remaining = allowed - consumed
    if remaining <= TOLERANCE_SECONDS:
        remaining = 0.0

    def seconds_in_last(minutes: int) -> tuple[float, float]:
        """(counted downtime, window length) over the last `minutes`, capped at the window."""
        length = min(minutes * 60.0, float(total_seconds))
        return _seconds_since(counting, now - timedelta(seconds=length)), length

    def reaches(rate: float, amount: float, length: float) -> bool:
        return amount > 0 and amount + TOLERANCE_SECONDS >= rate * allowed_fraction * length

    burn_windows: list[BurnWindow] = []
    for pair in BURN_WINDOW_PAIRS:
        long_amount, long_length = seconds_in_last(pair.long_minutes)
        short_amount, short_length = seconds_in_last(pair.short_minutes)
        burn_windows.append(BurnWindow(
            long_window_minutes=pair.long_minutes,
            short_window_minutes=pair.short_minutes,
            threshold=pair.threshold,
            long_burn_rate=(long_amount / (allowed_fraction * long_length)
                            if has_budget else None),
            short_burn_rate=(short_amount / (allowed_fraction * short_length)
                             if has_budget else None),
            fires=has_budget
            and reaches(pair.threshold, long_amount, long_length)
            and reaches(pair.threshold, short_amount, short_length),
        ))

    thresholds = objective.burn_rate_thresholds
    alert = BurnAlert.NONE
    if not has_budget:
        if consumed > TOLERANCE_SECONDS:
            alert = BurnAlert.CRITICAL
    elif consumed > 0:
        hour_amount, hour_length = seconds_in_last(FAST_BURN_MINUTES)
        if reaches(thresholds.fast_burn_multiplier, hour_amount, hour_length):
            alert = BurnAlert.FAST_BURN
        elif consumed + TOLERANCE_SECONDS >= thresholds.critical / 100.0 * allowed:
            alert = BurnAlert.CRITICAL
        elif consumed + TOLERANCE_SECONDS >= thresholds.warning / 100.0 * allowed:
            alert = BurnAlert.WARNING

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
        has_open_downtime=open_downtime,
        attribution=AttributionMinutes(
            self_minutes=own_seconds / 60.0,
            upstreams=_upstream_minutes(upstream, counted)),
        burn_windows=tuple(burn_windows),
        burn_alert=alert,
    )


def _upstream_minutes(
    upstream: list[tuple[datetime, datetime, EventLike]],
    counted: Callable[[list[_Span]], list[_Span]],
) -> tuple[UpstreamMinutes, ...]:
    """Minutes per upstream, largest first; each named after its newest named event.

    An upstream whose events all fall outside the window is left out.
    """
    groups: dict[str | None, list[tuple[datetime, datetime, EventLike]]] = {}
    for item in upstream:
        key = item[2].upstream_system_id
        group = groups.get(key)
        if group is None:
            groups[key] = [item]
        else:
            group.append(item)
    minutes = []
    for key, items in groups.items():
        inside = counted([(start, stop) for start, stop, _ in items])
        if not inside:
            continue
        named = [(start, event.upstream_system_name) for start, _, event in items
                 if event.upstream_system_name is not None]
        minutes.append(UpstreamMinutes(
            system_id=key,
            system_name=max(named, key=itemgetter(0))[1] if named else None,
            minutes=_seconds(inside) / 60.0))
    minutes.sort(key=lambda item: (-item.minutes, item.system_id or ""))
    return tuple(minutes)
