"""Achievements: which milestones a system's objectives have reached. Pure, no I/O.

The storage and the jobs gather an `AchievementContext` for a system; this module
only says which achievements that context earns. Unlocking them (idempotently) and
announcing them is the jobs' part.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Achievement(StrEnum):
    """A milestone a system can unlock, in the order `evaluate_achievements` lists them."""

    FIRST_STEPS = "first_steps"
    """At least one objective."""
    FULL_COVERAGE = "full_coverage"
    """At least three objectives."""
    IRON_UPTIME = "iron_uptime"
    """A streak of at least 7 days."""
    DIAMOND_UPTIME = "diamond_uptime"
    """A streak of at least 30 days."""
    BUDGET_MISER = "budget_miser"
    """At least 90 % of the error budget left."""
    CLEAN_SHEET = "clean_sheet"
    """No downtime at all."""
    CASCADE_BREAKER = "cascade_breaker"
    """Downtime, but only ever attributed to upstream systems."""
    RAPID_RECOVERY = "rapid_recovery"
    """An outage over within 300 seconds."""
    NINES_CLUB = "nines_club"
    """Availability of at least 99.99 % with a streak of at least 365 days."""


FULL_COVERAGE_OBJECTIVES = 3
IRON_UPTIME_DAYS = 7
DIAMOND_UPTIME_DAYS = 30
BUDGET_MISER_PERCENT = 90.0
RAPID_RECOVERY_SECONDS = 300.0
NINES_CLUB_AVAILABILITY = 99.99
NINES_CLUB_DAYS = 365


@dataclass(frozen=True, slots=True)
class AchievementContext:
    """What the achievements of one system are judged on.

    * `objective_count`: the system's objectives.
    * `streak_days`: its current streak of days without breaching or open downtime.
    * `best_availability`: the best availability of its objectives, in percent.
    * `budget_remaining_percent`: the error budget left, in percent.
    * `has_zero_downtime`: no downtime event at all.
    * `has_upstream_only_downtime`: downtime, every minute of it attributed upstream.
    * `fastest_recovery_seconds`: the shortest closed outage; None when there is none.

    A frozen dataclass that may be built positionally in this field order, as the
    plugin's public signature shows it.
    """

    objective_count: int
    streak_days: int
    best_availability: float
    budget_remaining_percent: float
    has_zero_downtime: bool
    has_upstream_only_downtime: bool
    fastest_recovery_seconds: float | None = None


def evaluate_achievements(ctx: AchievementContext) -> list[Achievement]:
    """The achievements `ctx` earns, in `Achievement` order; every bound is inclusive."""
    earned = {
        Achievement.FIRST_STEPS: ctx.objective_count >= 1,
        Achievement.FULL_COVERAGE: ctx.objective_count >= FULL_COVERAGE_OBJECTIVES,
        Achievement.IRON_UPTIME: ctx.streak_days >= IRON_UPTIME_DAYS,
        Achievement.DIAMOND_UPTIME: ctx.streak_days >= DIAMOND_UPTIME_DAYS,
        Achievement.BUDGET_MISER: ctx.budget_remaining_percent >= BUDGET_MISER_PERCENT,
        Achievement.CLEAN_SHEET: ctx.has_zero_downtime,
        Achievement.CASCADE_BREAKER: ctx.has_upstream_only_downtime,
        Achievement.RAPID_RECOVERY: (ctx.fastest_recovery_seconds is not None
                                     and ctx.fastest_recovery_seconds <= RAPID_RECOVERY_SECONDS),
        Achievement.NINES_CLUB: (ctx.best_availability >= NINES_CLUB_AVAILABILITY
                                 and ctx.streak_days >= NINES_CLUB_DAYS),
    }
    return [achievement for achievement in Achievement if earned[achievement]]
