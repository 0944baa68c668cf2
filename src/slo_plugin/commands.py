"""`reactive slo`, the command the SLO plugin adds to the CLI.

`reactive slo` lists every objective with its budget now; `reactive slo OBJECTIVE`
shows one objective's status and its downtime events, newest first, with whom each is
attributed to. Both read through `SloService` (what `reactive serve` recorded; the
budget of an open outage is computed up to now).

`reactive serve` logs each change of an objective's burn alert
(`slo api-availability: burn alert none -> fast_burn, budget 12.5% left`) and counts
the objectives breaching in its summary line (hook `reactive_summary`).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from reactive_core import CliCommand, CliContext

from .service import UnknownObjective

if TYPE_CHECKING:
    from reactive_core import EntityChange

    from .reads import EventView, ObjectiveView
    from .service import SloService

logger = logging.getLogger("slo_plugin.slo")

EVENTS_SHOWN = 50
"""How many events `reactive slo OBJECTIVE` shows by default."""
IDS_NAMED = 10
"""How many objective ids the error about an unknown one names."""


def fmt_percent(value: float, digits: int = 4) -> str:
    """`99.9769%`: `digits` significant digits, no trailing zeros (`100%`)."""
    return f"{value:.{digits}g}%"


def fmt_seconds(seconds: float) -> str:
    """A downtime's length: `0.623s` and `42.5s` under a minute (short outages matter),
    then `3m 12s`, `5h 03m`, `2d 4h`."""
    if seconds < 60:
        return f"{seconds:.3g}s"
    return CliContext.fmt_duration(seconds)


def fmt_burn_rate(value: float | None) -> str:
    """A burn rate to two decimals; `-` when there is no budget to burn."""
    return "-" if value is None else f"{value + 0.0:.2f}"  # + 0.0: never `-0.00`


def fmt_streak(view: ObjectiveView) -> str:
    """`3d (best 5d)`."""
    return f"{view.current_streak}d (best {view.best_streak}d)"


def fmt_window(days: int) -> str:
    """`30d`."""
    return f"{days}d"


def fmt_days(days: int) -> str:
    """`1 day`, `30 days`."""
    return f"{days} day{'' if days == 1 else 's'}"


def fmt_minutes(minutes: float) -> str:
    """`43.2 min`, or in seconds under a minute (`0.864s`)."""
    return f"{minutes * 60:.3g}s" if minutes < 1 else f"{minutes:.4g} min"


def objective_row(view: ObjectiveView) -> dict[str, Any]:
    """An objective as a JSON row of `reactive slo --json`."""
    objective, status = view.objective, view.status
    return {
        "objective_id": objective.id,
        "system_id": objective.system_id,
        "system_name": view.system_name,
        "health_check_configuration_id": objective.health_check_configuration_id,
        "target": objective.target,
        "window_days": objective.window_days,
        "dependency_exclusion": objective.dependency_exclusion.value,
        "excluded_dependency_ids": list(objective.excluded_dependency_ids),
        "exclude_maintenance": objective.exclude_maintenance,
        "availability": status.current_availability,
        "strict_availability": status.strict_availability,
        "budget_allowed_minutes": status.error_budget_allowed_minutes,
        "budget_remaining_percent": status.error_budget_remaining_percent,
        "budget_remaining_minutes": status.error_budget_remaining_minutes,
        "budget_consumed_minutes": status.error_budget_consumed_minutes,
        "burn_rate": status.burn_rate,
        "burn_alert": status.burn_alert.value,
        "is_breaching": status.is_breaching,
        "has_open_downtime": status.has_open_downtime,
        "current_streak": view.current_streak,
        "best_streak": view.best_streak,
        "best_streak_end": (None if view.best_streak_end is None
                            else view.best_streak_end.isoformat()),
    }


def event_row(event: EventView, now: datetime) -> dict[str, Any]:
    """A downtime event as a JSON row; an open one's duration counts up to `now`."""
    return {
        "id": event.id,
        "objective_id": event.objective_id,
        "started_at": event.start,
        "ended_at": event.end,
        "duration_seconds": _duration(event, now),
        "open": event.end is None,
        "attribution": event.attribution,
        "upstream_system_id": event.upstream_system_id,
        "upstream_system_name": event.upstream_system_name,
    }


def _duration(event: EventView, now: datetime) -> float:
    if event.duration_seconds is not None:
        return event.duration_seconds
    return max((now - event.start).total_seconds(), 0.0)


def objectives_table(views: Sequence[ObjectiveView]) -> str:
    """`reactive slo`: each objective's target and window, availability, budget left,
    burn rate and alert, streak."""
    if not views:
        return "no objectives"
    return CliContext.table(
        ["objective", "system", "target", "window", "availability", "budget left",
         "burn rate", "burn alert", "streak"],
        ([v.objective.id, v.objective.system_id, fmt_percent(v.objective.target, 6),
          fmt_window(v.objective.window_days),
          fmt_percent(v.status.current_availability, 6)
          + (" breaching" if v.status.is_breaching else ""),
          fmt_percent(v.status.error_budget_remaining_percent),
          fmt_burn_rate(v.status.burn_rate), v.status.burn_alert.value, fmt_streak(v)]
         for v in views))


def upstream_label(event: EventView) -> str:
    """`db (Orders database)`, `db`, or `-` for a self event."""
    if event.upstream_system_id is None:
        return "-"
    name = event.upstream_system_name
    return event.upstream_system_id + (f" ({name})" if name else "")


def events_table(events: Sequence[EventView], now: datetime) -> str:
    """The downtime events, newest first: start, end, duration, attribution, upstream."""
    if not events:
        return "no downtime events"
    return CliContext.table(
        [CliContext.utc("start"), CliContext.utc("end"), "duration", "attribution",
         "upstream"],
        ([CliContext.fmt_time(e.start), "open" if e.end is None else CliContext.fmt_time(e.end),
          fmt_seconds(_duration(e, now)) + (" so far" if e.end is None else ""),
          e.attribution, upstream_label(e)] for e in events))


def objective_text(view: ObjectiveView, events: Sequence[EventView], now: datetime) -> str:
    """`reactive slo OBJECTIVE`: the objective, its status, then its events."""
    objective, status = view.objective, view.status
    system = objective.system_id + (f" ({view.system_name})" if view.system_name else "")
    counts = objective.dependency_exclusion.value
    if objective.excluded_dependency_ids:
        counts += f", excluding {', '.join(objective.excluded_dependency_ids)}"
    if objective.exclude_maintenance:
        counts += ", maintenance subtracted"
    follows = objective.health_check_configuration_id or "the system's health"
    budget = (f"{fmt_percent(status.error_budget_remaining_percent)} left "
              f"({fmt_minutes(status.error_budget_consumed_minutes)} used of "
              f"{fmt_minutes(status.error_budget_allowed_minutes)})")
    availability = fmt_percent(status.current_availability, 6)
    strict = fmt_percent(status.strict_availability, 6)
    if strict != availability:
        availability += f" (strict {strict})"
    if status.is_breaching:
        availability += f": breaching (below {fmt_percent(objective.target, 6)})"
    cells = [
        ("objective", objective.id),
        ("system", system),
        ("target", f"{fmt_percent(objective.target, 6)} over "
                   f"{fmt_days(objective.window_days)} ({counts})"),
        ("follows", follows),
        ("availability", availability),
        ("budget", budget),
        ("burn rate", f"{fmt_burn_rate(status.burn_rate)} (alert: {status.burn_alert.value})"),
        ("down now", "yes" if status.has_open_downtime else "no"),
        ("streak", fmt_streak(view)),
    ]
    width = max(len(name) for name, _ in cells)
    lines = [f"{name.ljust(width)}  {value}" for name, value in cells]
    return "\n".join([*lines, "", events_table(events, now)])


def slo_command(service: SloService) -> CliCommand:
    """`reactive slo [OBJECTIVE]`: the objectives and their budgets, or one objective's
    status and downtime events."""

    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("objective", nargs="?", metavar="OBJECTIVE",
                            help="show this objective's status and its downtime events, "
                                 "newest first")
        parser.add_argument("--limit", type=_positive, default=EVENTS_SHOWN, metavar="N",
                            help=f"with OBJECTIVE, show its newest N events (default "
                                 f"{EVENTS_SHOWN})")

    async def run(ctx: CliContext) -> int:
        now = ctx.host.clock()
        objective_id: str | None = ctx.args.objective
        if objective_id is None:
            views = await service.objectives()
            ctx.emit([objective_row(v) for v in views], lambda _: objectives_table(views))
            return 0
        view = await service.objective(objective_id)
        if view is None:
            raise UnknownObjective(await _unknown(service, objective_id))
        events = await service.events(objective_id, limit=ctx.args.limit)
        ctx.emit({"objective": objective_row(view),
                  "events": [event_row(e, now) for e in events]},
                 lambda _: objective_text(view, events, now))
        return 0

    return CliCommand(name="slo", help="objectives with their error budgets now; with "
                      "OBJECTIVE, its status and downtime events", run=run,
                      arguments=arguments, listing=True)


async def _unknown(service: SloService, objective_id: str) -> str:
    ids = [v.objective.id for v in await service.objectives()]
    if not ids:
        return (f"unknown objective {objective_id!r}: there are no objectives yet (declare "
                "them under 'objectives' in a config file, then `reactive apply -f` it)")
    shown = ", ".join(ids[:IDS_NAMED]) + (f" and {len(ids) - IDS_NAMED} more"
                                          if len(ids) > IDS_NAMED else "")
    return f"unknown objective {objective_id!r}: expected one of {shown}"


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


# -- what `reactive serve` logs ---------------------------------------------------------

def burn_alert_logger() -> Callable[[EntityChange], Awaitable[None]]:
    """A broadcast handler on `slo` logging each change of an objective's burn alert at
    INFO, e.g. `slo api-availability: burn alert none -> fast_burn, budget 12.5% left`
    (a new objective is logged only when it starts with an alert)."""

    async def log(change: EntityChange) -> None:
        if change.next is None or not logger.isEnabledFor(logging.INFO):
            return
        before = change.prev.get("burnAlert", "none") if change.prev is not None else "none"
        after = change.next.get("burnAlert", "none")
        if before == after:
            return
        budget = change.next.get("budgetRemainingPercent")
        left = f", budget {budget:.1f}% left" if isinstance(budget, (int, float)) else ""
        logger.info("slo %s: burn alert %s -> %s%s", change.id, before, after, left,
                    extra={"objective_id": change.id, "from_alert": before,
                           "to_alert": after, "budget_remaining_percent": budget})

    return log


async def summary(service: SloService) -> dict[str, Any]:
    """`reactive serve`'s summary: how many objectives are breaching."""
    views = await service.objectives()
    return {"objectives_breaching": sum(view.status.is_breaching for view in views)}
