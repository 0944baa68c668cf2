"""The threshold evaluator and the worst-wins rule, on hand-built run sequences."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from health_plugin import HealthStatus, ThresholdMode, Thresholds, evaluate_status
from health_plugin.evaluator import MAX_RUNS, aggregate_checks, worst_status

H, D, U = HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY


def runs(text: str) -> list[HealthStatus]:
    """Newest first: `h` healthy, `d` degraded, `u` unhealthy (spaces ignored)."""
    return [{"h": H, "d": D, "u": U}[c] for c in text.replace(" ", "")]


# -- consecutive mode (the default) ---------------------------------------------------


def test_no_runs_is_healthy() -> None:
    assert evaluate_status([]) is H


def test_one_failure_stays_healthy_by_default() -> None:
    assert evaluate_status(runs("u")) is H
    assert evaluate_status(runs("u hhhh")) is H


@pytest.mark.parametrize("failures", [2, 3, 4])
def test_two_to_four_consecutive_failures_are_degraded(failures: int) -> None:
    assert evaluate_status(runs("u" * failures + "hhh")) is D


@pytest.mark.parametrize("failures", [5, 6, 50, MAX_RUNS])
def test_five_or_more_consecutive_failures_are_unhealthy(failures: int) -> None:
    assert evaluate_status(runs("u" * failures)) is U


def test_only_the_newest_streak_counts() -> None:
    # Four failures, a success, then older failures: the streak is four.
    assert evaluate_status(runs("uuuu h uuuuuuuu")) is D
    # One success ends any failure streak.
    assert evaluate_status(runs("h uuuuuuuuuu")) is H


def test_only_the_newest_hundred_runs_count() -> None:
    # 99 successes then (older) failures: the 100 newest still hold 1 failure at most.
    assert evaluate_status(runs("u" + "h" * 99 + "u" * 50)) is H
    # A streak longer than 100 is still "at least 5".
    assert evaluate_status(runs("u" * 150)) is U


def test_recovery_needs_healthy_min_successes() -> None:
    strict = Thresholds(healthy_min_successes=3)
    assert evaluate_status(runs("hh uuuuu"), strict) is U  # two successes: not yet
    assert evaluate_status(runs("hhh uuuuu"), strict) is H
    assert evaluate_status(runs("hh"), strict) is H  # nothing failed before


def test_degraded_runs_never_make_an_unhealthy_check() -> None:
    assert evaluate_status(runs("ddddddd")) is D
    assert evaluate_status(runs("ddddu")) is U  # five failures, one of them unhealthy
    assert evaluate_status(runs("d")) is H


def test_custom_thresholds_one_failure_is_unhealthy() -> None:
    eager = Thresholds(degraded_min_failures=1, unhealthy_min_failures=1)
    assert evaluate_status(runs("u"), eager) is U
    assert evaluate_status(runs("d"), eager) is D


def test_statuses_may_be_plain_strings() -> None:
    assert evaluate_status(["unhealthy", "unhealthy", "healthy"]) is D
    with pytest.raises(ValueError, match="received 'down'"):
        evaluate_status(["down"])


# -- window mode ----------------------------------------------------------------------


def test_window_mode_counts_failures_among_the_newest_window() -> None:
    window = Thresholds(mode=ThresholdMode.WINDOW, window_size=10,
                        degraded_min_failures=2, unhealthy_min_failures=4)
    assert evaluate_status(runs("h u hhhhhhhh"), window) is H          # 1 of 10
    assert evaluate_status(runs("h u h u hhhhhh"), window) is D        # 2 of 10, not a streak
    assert evaluate_status(runs("u h u h u h u hh"), window) is U      # 4 of 10
    # Failures older than the window do not count.
    assert evaluate_status(runs("hhhhhhhhhh uuuuuuuuuu"), window) is H
    assert evaluate_status(runs("hhhhhhhhh u uuuuuuuuu"), window) is H  # 1 inside


def test_window_mode_is_capped_by_the_worst_counted_run() -> None:
    window = Thresholds(mode=ThresholdMode.WINDOW, window_size=5,
                        degraded_min_failures=1, unhealthy_min_failures=3)
    assert evaluate_status(runs("ddd hh"), window) is D
    assert evaluate_status(runs("ddu hh"), window) is U


def test_thresholds_refuse_unreachable_settings() -> None:
    with pytest.raises(ValidationError, match="must not exceed unhealthy_min_failures"):
        Thresholds(degraded_min_failures=6, unhealthy_min_failures=5)
    with pytest.raises(ValidationError, match="must not exceed window_size"):
        Thresholds(mode="window", window_size=3, unhealthy_min_failures=5)
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        Thresholds(unhealthy_min_failures=101)
    with pytest.raises(ValidationError, match="Extra inputs"):
        Thresholds.model_validate({"unhealthy": 3})


# -- worst wins -----------------------------------------------------------------------


def test_worst_check_wins() -> None:
    assert aggregate_checks([H, D, H]) == (D, 2, 3)
    assert aggregate_checks([D, U, H]) == (U, 1, 3)
    assert aggregate_checks([H, H]) == (H, 2, 2)
    assert aggregate_checks([]) == (H, 0, 0)
    assert worst_status(["healthy", "unhealthy", "degraded"]) is U
    assert worst_status([]) is H
