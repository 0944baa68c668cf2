"""Schedules of recurring timers: intervals aligned to the epoch, cron through cronsim."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from reactive_core._timers.schedule import Cron, Every, next_due, parse_schedule


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_intervals_are_aligned_to_the_epoch() -> None:
    assert Every(300).next_after(utc(2026, 11, 23, 10, 5, 42)) == utc(2026, 11, 23, 10, 10)
    assert Every(3600).next_after(utc(2026, 11, 23, 10)) == utc(2026, 11, 23, 11)
    assert Every(0.5).next_after(utc(2026, 1, 1, 0, 0, 0, 200000)) == utc(2026, 1, 1, 0, 0, 0,
                                                                          500000)
    plus2 = timezone(timedelta(hours=2))
    assert Every(3600).next_after(datetime(2026, 1, 1, 12, 30, tzinfo=plus2)) == utc(2026, 1, 1, 11)


@pytest.mark.parametrize(("expr", "after", "expected"), [
    ("0 0 * * *", utc(2026, 11, 23, 13, 37), utc(2026, 11, 24)),
    ("@daily", utc(2026, 11, 23), utc(2026, 11, 24)),
    ("@hourly", utc(2026, 11, 23, 10, 59, 59), utc(2026, 11, 23, 11)),
    ("0 9 * * 1", utc(2026, 11, 26), utc(2026, 11, 30, 9)),       # Mondays 09:00
    ("*/15 * * * *", utc(2026, 1, 1, 0, 14, 59), utc(2026, 1, 1, 0, 15)),
    ("0 0 29 2 *", utc(2026, 3, 1), utc(2028, 2, 29)),             # leap days only
    ("@yearly", utc(2026, 12, 31, 23, 59), utc(2027, 1, 1)),
])
def test_cron_next_fire_comes_from_the_library(expr: str, after: datetime,
                                               expected: datetime) -> None:
    assert Cron(expr).next_after(after) == expected


@pytest.mark.parametrize("expr", ["", "61 * * * *", "* * *", "@fortnightly", "0 0 31 2 x"])
def test_a_bad_cron_expression_is_refused_clearly(expr: str) -> None:
    with pytest.raises(ValueError, match=r"cron expression|non-empty"):
        Cron(expr)


@pytest.mark.parametrize("every", [0, -1, 0.001, float("nan"), float("inf"), True, "60"])
def test_a_bad_interval_is_refused_clearly(every: object) -> None:
    with pytest.raises(ValueError, match="interval must be a number of seconds"):
        Every(every)  # type: ignore[arg-type]


def test_parse_schedule_wants_exactly_one_of_every_and_cron() -> None:
    assert parse_schedule(every=timedelta(minutes=5)) == Every(300)
    assert parse_schedule(cron="@daily") == Cron("@daily")
    for kwargs in ({}, {"every": 60, "cron": "@daily"}):
        with pytest.raises(ValueError, match="exactly one of every= and cron="):
            parse_schedule(**kwargs)  # type: ignore[arg-type]


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Every(60).next_after(datetime(2026, 1, 1))


def test_a_recurring_timer_keeps_its_cadence_and_skips_missed_slots() -> None:
    due = utc(2026, 1, 1, 0, 0)
    assert next_due(due=due, now=due + timedelta(seconds=3), every=60, cron=None) == \
        utc(2026, 1, 1, 0, 1)
    # Down for ten minutes: one firing at once, then the next slot of the cadence.
    assert next_due(due=due, now=due + timedelta(minutes=10, seconds=5), every=60,
                    cron=None) == utc(2026, 1, 1, 0, 11)
    assert next_due(due=due, now=due + timedelta(hours=30), every=None, cron="0 0 * * *") == \
        utc(2026, 1, 3)


def test_a_job_that_missed_slots_runs_for_the_latest() -> None:
    from reactive_core._timers.schedule import latest_slot

    due = utc(2026, 1, 1, 0, 0)
    assert latest_slot(Every(3600), due=due, now=due - timedelta(seconds=1)) == due
    assert latest_slot(Every(3600), due=due, now=utc(2026, 1, 1, 5, 30)) == utc(2026, 1, 1, 5)
    assert latest_slot(Cron("0 0 * * *"), due=due, now=utc(2026, 1, 4, 12)) == utc(2026, 1, 4)
    assert latest_slot(Cron("0 0 * * *"), due=due, now=utc(2026, 1, 1, 0, 0, 5)) == due
