"""Every achievement at its boundary, and the order they are listed in."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from slo_plugin.achievements import Achievement, AchievementContext, evaluate_achievements

NOTHING = AchievementContext(
    objective_count=0, streak_days=0, best_availability=0.0, budget_remaining_percent=0.0,
    has_zero_downtime=False, has_upstream_only_downtime=False, fastest_recovery_seconds=None)


def earned(**changes: Any) -> list[Achievement]:
    return evaluate_achievements(replace(NOTHING, **changes))


def test_nothing_earns_nothing() -> None:
    assert evaluate_achievements(NOTHING) == []


@pytest.mark.parametrize(("changes", "achievement", "expected"), [
    ({"objective_count": 1}, Achievement.FIRST_STEPS, True),
    ({"objective_count": 0}, Achievement.FIRST_STEPS, False),
    ({"objective_count": 3}, Achievement.FULL_COVERAGE, True),
    ({"objective_count": 2}, Achievement.FULL_COVERAGE, False),
    ({"streak_days": 7}, Achievement.IRON_UPTIME, True),
    ({"streak_days": 6}, Achievement.IRON_UPTIME, False),
    ({"streak_days": 30}, Achievement.DIAMOND_UPTIME, True),
    ({"streak_days": 29}, Achievement.DIAMOND_UPTIME, False),
    ({"budget_remaining_percent": 90.0}, Achievement.BUDGET_MISER, True),
    ({"budget_remaining_percent": 89.9}, Achievement.BUDGET_MISER, False),
    ({"has_zero_downtime": True}, Achievement.CLEAN_SHEET, True),
    ({"has_zero_downtime": False}, Achievement.CLEAN_SHEET, False),
    ({"has_upstream_only_downtime": True}, Achievement.CASCADE_BREAKER, True),
    ({"has_upstream_only_downtime": False}, Achievement.CASCADE_BREAKER, False),
    ({"fastest_recovery_seconds": 300}, Achievement.RAPID_RECOVERY, True),
    ({"fastest_recovery_seconds": 301}, Achievement.RAPID_RECOVERY, False),
    ({"fastest_recovery_seconds": None}, Achievement.RAPID_RECOVERY, False),
    ({"best_availability": 99.995, "streak_days": 365}, Achievement.NINES_CLUB, True),
    ({"best_availability": 99.99, "streak_days": 365}, Achievement.NINES_CLUB, True),
    ({"best_availability": 99.99, "streak_days": 364}, Achievement.NINES_CLUB, False),
    ({"best_availability": 99.999, "streak_days": 30}, Achievement.NINES_CLUB, False),
    ({"best_availability": 99.98, "streak_days": 400}, Achievement.NINES_CLUB, False),
])
def test_each_achievement_at_its_boundary(
        changes: dict[str, Any], achievement: Achievement, expected: bool) -> None:
    assert (achievement in earned(**changes)) is expected


def test_everything_is_listed_in_enum_order() -> None:
    everything = AchievementContext(5, 400, 99.999, 95.0, True, True, 12.5)
    assert evaluate_achievements(everything) == list(Achievement)


def test_achievement_values_are_the_public_names() -> None:
    assert [a.value for a in Achievement] == [
        "first_steps", "full_coverage", "iron_uptime", "diamond_uptime", "budget_miser",
        "clean_sheet", "cascade_breaker", "rapid_recovery", "nines_club"]


def test_context_is_frozen() -> None:
    with pytest.raises(AttributeError):
        NOTHING.streak_days = 3  # type: ignore[misc]
