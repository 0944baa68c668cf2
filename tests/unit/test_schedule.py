"""Unit tests for the scheduled-job time arithmetic in ``reactive_core._schedule``."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from reactive_core._schedule import (
    Cron,
    Every,
    Schedule,
    parse_schedule,
    slot_key,
)

UTC = timezone.utc


def utc(*args: int) -> datetime:
    """Build a UTC datetime from positional components."""
    return datetime(*args, tzinfo=UTC)


def firings(schedule: Schedule, start: datetime, count: int) -> list[datetime]:
    """Return the next ``count`` firing times strictly after ``start``."""
    out: list[datetime] = []
    t = start
    for _ in range(count):
        t = schedule.next_after(t)
        out.append(t)
    return out


# ---------------------------------------------------------------------------
# Every
# ---------------------------------------------------------------------------


class TestEvery:
    def test_slot_aligned_to_epoch(self) -> None:
        s = Every(60)
        assert s.slot_at(utc(2026, 11, 23, 10, 5, 42, 123)) == utc(2026, 11, 23, 10, 5)
        assert Every(3600).slot_at(utc(2026, 11, 23, 10, 59, 59)) == utc(2026, 11, 23, 10)
        assert Every(86400).slot_at(utc(2026, 11, 23, 23, 0)) == utc(2026, 11, 23)

    def test_slot_boundary_is_inclusive(self) -> None:
        s = Every(300)
        assert s.slot_at(utc(2026, 1, 1, 0, 5)) == utc(2026, 1, 1, 0, 5)
        assert s.slot_at(utc(2026, 1, 1, 0, 4, 59, 999999)) == utc(2026, 1, 1, 0, 0)

    def test_next_after_is_strictly_after(self) -> None:
        s = Every(300)
        assert s.next_after(utc(2026, 1, 1, 0, 5)) == utc(2026, 1, 1, 0, 10)
        assert s.next_after(utc(2026, 1, 1, 0, 4, 59)) == utc(2026, 1, 1, 0, 5)
        assert firings(s, utc(2026, 1, 1, 23, 52), 3) == [
            utc(2026, 1, 1, 23, 55),
            utc(2026, 1, 2, 0, 0),
            utc(2026, 1, 2, 0, 5),
        ]

    def test_offset(self) -> None:
        s = Every(3600, offset=15 * 60)
        assert s.slot_at(utc(2026, 1, 1, 10, 14)) == utc(2026, 1, 1, 9, 15)
        assert s.slot_at(utc(2026, 1, 1, 10, 15)) == utc(2026, 1, 1, 10, 15)
        assert s.next_after(utc(2026, 1, 1, 10, 15)) == utc(2026, 1, 1, 11, 15)

    def test_matches_formula(self) -> None:
        seconds, offset = 7.5, 1.25
        s = Every(seconds, offset=offset)
        now = utc(2026, 3, 4, 5, 6, 7, 890000)
        ts = now.timestamp()
        expected = (ts - offset) // seconds * seconds + offset
        assert s.slot_at(now).timestamp() == pytest.approx(expected)

    def test_fractional_seconds_exact(self) -> None:
        s = Every(0.1)
        assert s.slot_at(utc(2026, 1, 1, 0, 0, 0, 300000)) == utc(2026, 1, 1, 0, 0, 0, 300000)
        assert s.next_after(utc(2026, 1, 1, 0, 0, 0, 300000)) == utc(2026, 1, 1, 0, 0, 0, 400000)

    def test_slot_at_never_none_and_before_epoch(self) -> None:
        assert Every(60).slot_at(utc(1969, 12, 31, 23, 59, 30)) == utc(1969, 12, 31, 23, 59)

    def test_non_utc_aware_input_is_converted(self) -> None:
        plus2 = timezone(timedelta(hours=2))
        result = Every(3600).slot_at(datetime(2026, 1, 1, 12, 30, tzinfo=plus2))
        assert result == utc(2026, 1, 1, 10)
        assert result is not None and result.tzinfo is UTC

    @pytest.mark.parametrize("bad", [0, -1, -0.5, float("nan"), float("inf")])
    def test_rejects_non_positive_seconds(self, bad: float) -> None:
        with pytest.raises(ValueError, match=r"seconds > 0, got") as info:
            Every(bad)
        assert repr(bad) in str(info.value)

    def test_rejects_sub_microsecond_period(self) -> None:
        with pytest.raises(ValueError, match="microsecond"):
            Every(1e-9)

    def test_frozen_value(self) -> None:
        s = Every(60)
        assert s == Every(60)
        assert hash(s) == hash(Every(60))
        with pytest.raises(AttributeError):
            s.seconds = 30  # type: ignore[misc]


# ---------------------------------------------------------------------------
# Cron: firing times
# ---------------------------------------------------------------------------


class TestCronNextAfter:
    def test_daily_midnight(self) -> None:
        s = Cron("0 0 * * *")
        assert s.next_after(utc(2026, 11, 22, 13, 37)) == utc(2026, 11, 23)
        assert s.next_after(utc(2026, 11, 23)) == utc(2026, 11, 24)
        assert s.next_after(utc(2026, 12, 31, 23, 59, 59)) == utc(2027, 1, 1)

    def test_monday_nine(self) -> None:
        s = Cron("0 9 * * 1")
        # 2026-11-23 is a Monday.
        assert s.next_after(utc(2026, 11, 20, 12)) == utc(2026, 11, 23, 9)
        assert s.next_after(utc(2026, 11, 23, 8, 59, 59)) == utc(2026, 11, 23, 9)
        assert s.next_after(utc(2026, 11, 23, 9)) == utc(2026, 11, 30, 9)
        for t in firings(s, utc(2026, 1, 1), 10):
            assert t.weekday() == 0 and (t.hour, t.minute) == (9, 0)

    def test_every_fifteen_minutes(self) -> None:
        s = Cron("*/15 * * * *")
        assert firings(s, utc(2026, 1, 1, 23, 31), 4) == [
            utc(2026, 1, 1, 23, 45),
            utc(2026, 1, 2, 0, 0),
            utc(2026, 1, 2, 0, 15),
            utc(2026, 1, 2, 0, 30),
        ]
        assert s.next_after(utc(2026, 1, 1, 0, 15)) == utc(2026, 1, 1, 0, 30)
        assert s.next_after(utc(2026, 1, 1, 0, 14, 59, 999999)) == utc(2026, 1, 1, 0, 15)

    def test_ranges_lists_steps(self) -> None:
        s = Cron("5,35 8-10 * * *")
        assert firings(s, utc(2026, 1, 1), 7) == [
            utc(2026, 1, 1, 8, 5),
            utc(2026, 1, 1, 8, 35),
            utc(2026, 1, 1, 9, 5),
            utc(2026, 1, 1, 9, 35),
            utc(2026, 1, 1, 10, 5),
            utc(2026, 1, 1, 10, 35),
            utc(2026, 1, 2, 8, 5),
        ]
        stepped = Cron("0 0-12/6 * * *")
        assert [t.hour for t in firings(stepped, utc(2026, 1, 1), 4)] == [6, 12, 0, 6]
        start_step = Cron("10/20 * * * *")  # 10, 30, 50
        assert [t.minute for t in firings(start_step, utc(2026, 1, 1), 4)] == [10, 30, 50, 10]
        mixed = Cron("0 0 1,15-17 * *")
        assert [t.day for t in firings(mixed, utc(2026, 1, 1), 5)] == [15, 16, 17, 1, 15]

    def test_month_and_day_names(self) -> None:
        assert Cron("0 0 1 jan,Jul *").next_after(utc(2026, 2, 1)) == utc(2026, 7, 1)
        weekdays = Cron("30 6 * * MON-fri")
        days = [t.weekday() for t in firings(weekdays, utc(2026, 11, 21), 6)]  # a Saturday
        assert days == [0, 1, 2, 3, 4, 0]
        assert Cron("0 0 * MAR-MAY/2 *").next_after(utc(2026, 1, 1)) == utc(2026, 3, 1)
        assert Cron("0 0 * MAR-MAY/2 *").next_after(utc(2026, 3, 31)) == utc(2026, 5, 1)

    def test_sunday_is_zero_and_seven(self) -> None:
        sundays = {Cron("0 0 * * 0"), Cron("0 0 * * 7"), Cron("0 0 * * SUN")}
        start = utc(2026, 11, 23)
        results = {s.next_after(start) for s in sundays}
        assert results == {utc(2026, 11, 29)}
        assert Cron("0 0 * * 5-7").next_after(utc(2026, 11, 23)) == utc(2026, 11, 27)

    def test_dom_dow_or_rule_when_both_restricted(self) -> None:
        # Fires on the 1st of the month OR on any Monday.
        s = Cron("0 0 1 * MON")
        assert firings(s, utc(2026, 11, 22), 4) == [
            utc(2026, 11, 23),  # Monday
            utc(2026, 11, 30),  # Monday
            utc(2026, 12, 1),  # the 1st (a Tuesday)
            utc(2026, 12, 7),  # Monday
        ]

    def test_dom_dow_and_rule_when_one_is_star(self) -> None:
        # Day-of-month starts with "*": both must match (odd days that are Mondays).
        s = Cron("0 0 */2 * 1")
        for t in firings(s, utc(2026, 1, 1), 6):
            assert t.weekday() == 0 and t.day % 2 == 1
        # Day-of-week "*" means only the day-of-month matters.
        assert Cron("0 0 13 * *").next_after(utc(2026, 1, 1)) == utc(2026, 1, 13)

    def test_feb_29(self) -> None:
        s = Cron("0 0 29 2 *")
        assert s.next_after(utc(2026, 3, 1)) == utc(2028, 2, 29)
        assert s.next_after(utc(2028, 2, 29)) == utc(2032, 2, 29)
        # 2100 is not a leap year.
        assert s.next_after(utc(2096, 3, 1)) == utc(2104, 2, 29)

    def test_31st_skips_short_months(self) -> None:
        s = Cron("0 12 31 * *")
        assert [(t.month, t.day) for t in firings(s, utc(2026, 1, 31, 12), 4)] == [
            (3, 31),
            (5, 31),
            (7, 31),
            (8, 31),
        ]

    def test_aliases(self) -> None:
        start = utc(2026, 11, 23, 10, 30)  # Monday
        assert Cron("@hourly").next_after(start) == utc(2026, 11, 23, 11)
        assert Cron("@daily").next_after(start) == utc(2026, 11, 24)
        assert Cron("@midnight").next_after(start) == utc(2026, 11, 24)
        assert Cron("@weekly").next_after(start) == utc(2026, 11, 29)
        assert Cron("@monthly").next_after(start) == utc(2026, 12, 1)
        assert Cron("@yearly").next_after(start) == utc(2027, 1, 1)
        assert Cron("@DAILY").next_after(start) == utc(2026, 11, 24)

    def test_result_is_utc_and_non_utc_input_converted(self) -> None:
        minus5 = timezone(timedelta(hours=-5))
        result = Cron("0 0 * * *").next_after(datetime(2026, 1, 1, 20, 0, tzinfo=minus5))
        assert result == utc(2026, 1, 3)  # input is 2026-01-02T01:00Z
        assert result.tzinfo is UTC

    def test_far_search_is_fast(self) -> None:
        begin = time.perf_counter()
        for _ in range(50):
            Cron("59 23 29 2 *").next_after(utc(2096, 3, 1))
            Cron("0 0 31 12 *").slot_at(utc(2026, 12, 30))
        assert time.perf_counter() - begin < 1.0


# ---------------------------------------------------------------------------
# Cron: slot_at
# ---------------------------------------------------------------------------


class TestCronSlotAt:
    def test_latest_firing_at_or_before_now(self) -> None:
        s = Cron("0 0 * * *")
        assert s.slot_at(utc(2026, 11, 23, 13, 37)) == utc(2026, 11, 23)
        assert s.slot_at(utc(2026, 1, 1, 0, 0, 30)) == utc(2026, 1, 1)
        assert s.slot_at(utc(2025, 12, 31, 23, 59, 59)) == utc(2025, 12, 31)

    def test_exact_boundary_inclusive(self) -> None:
        s = Cron("*/15 * * * *")
        assert s.slot_at(utc(2026, 1, 1, 0, 15)) == utc(2026, 1, 1, 0, 15)
        assert s.slot_at(utc(2026, 1, 1, 0, 14, 59, 999999)) == utc(2026, 1, 1, 0, 0)

    def test_monday_nine(self) -> None:
        s = Cron("0 9 * * 1")
        assert s.slot_at(utc(2026, 11, 23, 8, 59)) == utc(2026, 11, 16, 9)
        assert s.slot_at(utc(2026, 11, 23, 9)) == utc(2026, 11, 23, 9)
        assert s.slot_at(utc(2026, 11, 26)) == utc(2026, 11, 23, 9)

    def test_crosses_month_and_year(self) -> None:
        s = Cron("30 17 15 JUN *")
        assert s.slot_at(utc(2026, 3, 1)) == utc(2025, 6, 15, 17, 30)
        assert Cron("@yearly").slot_at(utc(2026, 12, 31, 23, 59)) == utc(2026, 1, 1)

    def test_consistent_with_next_after(self) -> None:
        for expr in ["0 0 * * *", "*/15 * * * *", "0 9 * * 1", "0 0 1 * MON", "5,35 8-10 * * *"]:
            s = Cron(expr)
            for t in firings(s, utc(2026, 2, 27, 11, 11), 20):
                assert s.slot_at(t) == t
                assert s.slot_at(t - timedelta(microseconds=1)) != t
                assert s.next_after(s.slot_at(t - timedelta(microseconds=1)) or t) == t

    def test_none_when_nothing_within_lookback(self) -> None:
        s = Cron("0 0 29 2 *")
        assert s.slot_at(utc(2026, 3, 1)) is None
        assert s.slot_at(utc(2028, 2, 29)) == utc(2028, 2, 29)
        assert s.slot_at(utc(2028, 12, 31)) == utc(2028, 2, 29)


# ---------------------------------------------------------------------------
# Cron: validation
# ---------------------------------------------------------------------------


class TestCronErrors:
    @pytest.mark.parametrize(
        ("expr", "fragment", "allowed"),
        [
            ("0 25 * * *", "hour field '25'", "0-23"),
            ("60 * * * *", "minute field '60'", "0-59"),
            ("0 0 0 * *", "day-of-month field '0'", "1-31"),
            ("0 0 32 * *", "day-of-month field '32'", "1-31"),
            ("0 0 * 13 *", "month field '13'", "1-12"),
            ("0 0 * FOO *", "month field 'FOO'", "1-12"),
            ("0 0 * * 8", "day-of-week field '8'", "0-7"),
            ("0 0 * * MON-XYZ", "day-of-week field 'MON-XYZ'", "0-7"),
            ("0 1,99 * * *", "hour field '1,99'", "0-23"),
            ("*/0 * * * *", "minute field '*/0'", "0-59"),
            ("0 10-5 * * *", "hour field '10-5'", "0-23"),
            ("0 1,,2 * * *", "hour field '1,,2'", "0-23"),
            ("0 0 * * JAN", "day-of-week field 'JAN'", "0-7"),
            ("x * * * *", "minute field 'x'", "0-59"),
        ],
    )
    def test_bad_field_named(self, expr: str, fragment: str, allowed: str) -> None:
        with pytest.raises(ValueError) as info:
            Cron(expr)
        message = str(info.value)
        assert repr(expr) in message
        assert fragment in message
        assert allowed in message

    @pytest.mark.parametrize("expr", ["", "* * * *", "* * * * * *", "0 0 * * * extra"])
    def test_wrong_field_count(self, expr: str) -> None:
        with pytest.raises(ValueError, match="expected 5 fields"):
            Cron(expr)

    def test_unknown_alias(self) -> None:
        with pytest.raises(ValueError, match=r"unknown alias '@reboot'"):
            Cron("@reboot")

    def test_never_firing_expression(self) -> None:
        with pytest.raises(ValueError, match="never"):
            Cron("0 0 30 2 *")
        Cron("0 0 30 2 1")  # OR rule: Mondays in February still fire


# ---------------------------------------------------------------------------
# Naive datetimes, parse_schedule, slot_key
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", [Every(60), Cron("0 0 * * *")], ids=["every", "cron"])
def test_naive_datetimes_rejected(schedule: Schedule) -> None:
    naive = datetime(2026, 1, 1, 12)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.slot_at(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_after(naive)


def test_slot_key_rejects_naive() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        slot_key(datetime(2026, 11, 23))


def test_slot_key_format() -> None:
    assert slot_key(utc(2026, 11, 23)) == "2026-11-23T00:00:00Z"
    assert slot_key(utc(2026, 11, 23, 9, 5, 7)) == "2026-11-23T09:05:07Z"
    assert slot_key(utc(2026, 11, 23, 0, 0, 0, 500000)) == "2026-11-23T00:00:00.500000Z"
    plus1 = timezone(timedelta(hours=1))
    assert slot_key(datetime(2026, 11, 23, 1, tzinfo=plus1)) == "2026-11-23T00:00:00Z"


class TestParseSchedule:
    def test_every_seconds(self) -> None:
        assert parse_schedule(every=60) == Every(60)

    def test_every_timedelta(self) -> None:
        assert parse_schedule(every=timedelta(minutes=5)) == Every(300)

    def test_cron(self) -> None:
        schedule = parse_schedule(cron="0 0 * * *")
        assert schedule == Cron("0 0 * * *")
        assert isinstance(schedule, Schedule)

    def test_neither(self) -> None:
        with pytest.raises(ValueError, match="exactly one of every= or cron=.*neither"):
            parse_schedule()

    def test_both(self) -> None:
        with pytest.raises(ValueError, match="exactly one of every= or cron=.*both"):
            parse_schedule(every=60, cron="0 0 * * *")

    def test_invalid_values_propagate(self) -> None:
        with pytest.raises(ValueError, match="seconds > 0"):
            parse_schedule(every=timedelta(0))
        with pytest.raises(ValueError, match="hour field '24'"):
            parse_schedule(cron="0 24 * * *")
