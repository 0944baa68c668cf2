"""An objective's error-budget burn-down as a server-rendered SVG. Pure, no I/O.

`budget_points` computes the budget remaining at each boundary of the downtime in the
objective's current window `[now − window_days, now]`: at the window's start (100 %),
at the start and end of every event, and now. Each point is `compute_status` over the
events cut off at that moment, so the line follows the engine's own rules (merging,
`self-only`, maintenance) and its last point is the objective's budget now. Between
two points the budget is either flat (no downtime) or falls linearly (downtime), so the
polyline through the points is the exact curve: flat, stepping down at each outage.

`render_svg` draws it: x the days of the window, y the budget remaining from 100 % down
to 0 %, and below that an overspent band down to `FLOOR_PERCENT`, where deeper values
are clipped. No script, no library; every text is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

from .engine import TOLERANCE_SECONDS, EventLike, compute_status
from .models import Attribution, MaintenanceWindow, Objective, as_utc

MAX_POINTS = 400
"""At most this many points are computed and drawn (thousands of events in a window are
sampled evenly: a chart has only so many pixels)."""

FLOOR_PERCENT = -25.0
"""The lowest budget drawn; an overspent budget below it is clipped to it."""

WIDTH, HEIGHT = 720, 320
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 24, 60, 48
_HEADING_CHARS = 95


@dataclass(frozen=True, slots=True)
class BudgetPoint:
    """The budget remaining at `at`, in percent; below 0 once it is overspent."""

    at: datetime
    remaining_percent: float


@dataclass(frozen=True, slots=True)
class _Cut:
    """An event as it stood at some moment (its end no later than that moment)."""

    start: datetime
    end: datetime | None
    attribution: Attribution
    upstream_system_id: str | None
    upstream_system_name: str | None


def _remaining(objective: Objective, events: list[_Cut], now: datetime,
               maintenance: Sequence[MaintenanceWindow]) -> float:
    status = compute_status(objective, events, now=now, currently_down=False,
                            maintenance=maintenance)
    allowed = status.error_budget_allowed_minutes
    consumed = status.error_budget_consumed_minutes
    if allowed > 0:
        return 100.0 - consumed / allowed * 100.0
    return 100.0 if consumed * 60.0 <= TOLERANCE_SECONDS else FLOOR_PERCENT


def budget_points(objective: Objective, events: Iterable[EventLike], *, now: datetime,
                  currently_down: bool,
                  maintenance: Iterable[MaintenanceWindow] = ()) -> list[BudgetPoint]:
    """The budget remaining at the window's start, at each downtime boundary, and now.

    `events` and `currently_down` are what `compute_status` takes: an open event counts
    up to `now` only while the system is down (else it is an orphan and counts nothing).
    """
    now = as_utc(now)
    window_start = now - timedelta(days=objective.window_days)
    windows = list(maintenance)
    closed: list[_Cut] = []
    for event in events:
        end = event.end
        if end is None:
            if not currently_down:
                continue
            end = max(now, event.start)
        closed.append(_Cut(event.start, end, event.attribution, event.upstream_system_id,
                           event.upstream_system_name))
    moments = {window_start, now}
    for event in closed:
        assert event.end is not None
        for moment in (event.start, event.end):
            if window_start < moment < now:
                moments.add(moment)
    ordered = sorted(moments)
    if len(ordered) > MAX_POINTS:
        last = len(ordered) - 1
        ordered = [ordered[round(i * last / (MAX_POINTS - 1))] for i in range(MAX_POINTS)]
    points = []
    for moment in ordered:
        until = [_Cut(e.start, min(e.end, moment), e.attribution, e.upstream_system_id,
                      e.upstream_system_name)
                 for e in closed if e.end is not None and e.start < moment]
        points.append(BudgetPoint(moment, _remaining(objective, until, now, windows)))
    return points


def _percent(value: float) -> str:
    """`58.33%`; an overspent budget is negative (`-120%`)."""
    return f"{value + 0.0:.4g}%"  # + 0.0: never `-0%`


def _left(value: float) -> str:
    if value >= 0:
        return f"{_percent(value)} of the budget left"
    return f"budget overspent ({_percent(value)})"


def _fit(text: str) -> str:
    return text if len(text) <= _HEADING_CHARS else text[:_HEADING_CHARS - 1] + "…"


def render_svg(objective: Objective, points: Sequence[BudgetPoint], *, now: datetime,
               system_name: str | None = None) -> str:
    """The burn-down chart of `points` (from `budget_points`) as an SVG document."""
    now = as_utc(now)
    days = objective.window_days
    window_start = now - timedelta(days=days)
    plot_w = WIDTH - _LEFT - _RIGHT
    plot_h = HEIGHT - _TOP - _BOTTOM
    span = (now - window_start).total_seconds()

    def x(at: datetime) -> float:
        return _LEFT + (as_utc(at) - window_start).total_seconds() / span * plot_w

    def y(percent: float) -> float:
        clipped = min(max(percent, FLOOR_PERCENT), 100.0)
        return _TOP + (100.0 - clipped) / (100.0 - FLOOR_PERCENT) * plot_h

    current = points[-1].remaining_percent if points else 100.0
    who = objective.system_id if system_name is None else f"{system_name} ({objective.system_id})"
    goal = f"{objective.target:g}% over {days} day{'' if days == 1 else 's'}"
    title = f"Error budget of objective {objective.id} ({who}): {goal}, {_left(current)}"
    stroke = "#b91c1c" if current < 0 else "#b45309" if current < 25 else "#1d4ed8"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<rect x="{_LEFT}" y="{y(0):.1f}" width="{plot_w}" height="{y(FLOOR_PERCENT) - y(0):.1f}"'
        ' fill="#fee2e2"/>',
        f'<text x="{_LEFT + 6}" y="{y(FLOOR_PERCENT) - 6:.1f}" fill="#991b1b">overspent</text>',
        f'<text x="{_LEFT}" y="20" font-size="14" font-weight="bold">'
        f"{escape(_fit(f'{objective.id} — {who}'))}</text>",
        f'<text x="{_LEFT}" y="38">{escape(_fit(f"{goal}: {_left(current)}"))}</text>',
    ]
    for percent in (100, 75, 50, 25, 0):
        level = y(percent)
        colour = "#6b7280" if percent == 0 else "#e5e7eb"
        parts.append(f'<line x1="{_LEFT}" y1="{level:.1f}" x2="{_LEFT + plot_w}" '
                     f'y2="{level:.1f}" stroke="{colour}"/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{level + 4:.1f}" text-anchor="end">'
                     f"{percent}%</text>")
    step = next(s for s in (1, 2, 5, 7, 10, 15, 30, 60, 90, 180, 365, 730, 1825, 3650)
                if days / s <= 10)
    for day in range(0, days + 1, step):
        at = _LEFT + day / days * plot_w
        parts.append(f'<line x1="{at:.1f}" y1="{_TOP + plot_h}" x2="{at:.1f}" '
                     f'y2="{_TOP + plot_h + 4}" stroke="#6b7280"/>')
        parts.append(f'<text x="{at:.1f}" y="{_TOP + plot_h + 17}" text-anchor="middle">'
                     f"{day}</text>")
    caption = (f"day of the window, {window_start:%Y-%m-%d %H:%M} to {now:%Y-%m-%d %H:%M} UTC")
    parts.append(f'<text x="{_LEFT + plot_w / 2:.1f}" y="{HEIGHT - 12}" text-anchor="middle">'
                 f"{escape(caption)}</text>")
    middle = _TOP + plot_h / 2
    parts.append(f'<text x="16" y="{middle:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 16 {middle:.1f})">budget remaining (%)</text>')
    line = " ".join(f"{x(p.at):.2f},{y(p.remaining_percent):.2f}" for p in points)
    parts.append(f'<polyline class="budget" points="{line}" fill="none" stroke="{stroke}" '
                 'stroke-width="2" stroke-linejoin="round"/>')
    if points:
        last = points[-1]
        cx, cy = x(last.at), y(last.remaining_percent)
        parts.append(f'<circle class="now" cx="{cx:.2f}" cy="{cy:.2f}" r="4" fill="{stroke}">'
                     f"<title>{escape(f'now: {_left(current)}')}</title>"
                     "</circle>")
        parts.append(f'<text x="{cx - 8:.2f}" y="{cy - 10:.2f}" text-anchor="end" '
                     f'fill="{stroke}">{escape(_percent(current))}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
