"""The error-budget engine and the objective model, on hand-built events (no database).

Floats are compared with `pytest.approx`: in doubles (100 - 99.9)/100 * 43200 is
43.199999999997544, not 43.2.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from slo_plugin.engine import EventColumns, compute_budget, compute_status
from slo_plugin.models import (
    Attribution,
    BurnAlert,
    DependencyExclusion,
    DowntimeEvent,
    MaintenanceWindow,
    Objective,
    SloStatus,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
DAY = timedelta(days=1)


def objective(**overrides: Any) -> Objective:
    fields: dict[str, Any] = {"id": "obj-1", "system_id": "sys-1", "target": 99.9,
                              "window_days": 30}
    fields.update(overrides)
    return Objective(**fields)


def event(start: timedelta, end: timedelta | None, *, upstream: str | None = None,
          name: str | None = None) -> DowntimeEvent:
    """An event from `NOW - start` to `NOW - end` (open when `end` is None)."""
    return DowntimeEvent(
        start=NOW - start, end=None if end is None else NOW - end,
        attribution=Attribution.UPSTREAM if upstream else Attribution.SELF,
        upstream_system_id=upstream, upstream_system_name=name)


def minutes_down(minutes: float, *, ended_ago: timedelta = 2 * DAY,
                 upstream: str | None = None, name: str | None = None) -> DowntimeEvent:
    """A closed event of `minutes`, ending `ended_ago` (old enough not to burn fast)."""
    return event(ended_ago + minutes * MIN, ended_ago, upstream=upstream, name=name)


def status(obj: Objective, events: list[DowntimeEvent], *, currently_down: bool = False,
           maintenance: tuple[MaintenanceWindow, ...] = ()) -> SloStatus:
    return compute_status(obj, events, now=NOW, currently_down=currently_down,
                          maintenance=maintenance)


# -- the worked cases: 99.9 % over 30 days ---------------------------------------------


def test_no_downtime_leaves_the_whole_budget() -> None:
    result = status(objective(), [])
    assert result.error_budget_allowed_minutes == pytest.approx(43.2)
    assert result.error_budget_remaining_percent == 100.0
    assert result.error_budget_remaining_minutes == pytest.approx(43.2)
    assert result.error_budget_consumed_minutes == 0
    assert result.current_availability == 100.0
    assert result.burn_rate == 0
    assert not result.is_breaching
    assert not result.has_open_downtime
    assert result.burn_alert is BurnAlert.NONE


def test_ten_self_minutes_spend_part_of_the_budget() -> None:
    result = status(objective(), [minutes_down(10)])
    assert result.error_budget_consumed_minutes == pytest.approx(10)
    assert result.error_budget_remaining_percent == pytest.approx(76.85185185185185)
    assert result.error_budget_remaining_minutes == pytest.approx(33.2)
    assert result.burn_rate == pytest.approx(0.23148148148148148)
    assert result.current_availability == pytest.approx(99.97685185185185)
    assert not result.is_breaching


def test_self_only_counts_self_minutes_and_strict_counts_everything() -> None:
    events = [minutes_down(10), minutes_down(20, ended_ago=3 * DAY, upstream="db", name="DB")]
    self_only = status(objective(dependency_exclusion="self-only"), events)
    assert self_only.error_budget_consumed_minutes == pytest.approx(10)
    assert self_only.error_budget_consumed_strict_minutes == pytest.approx(30)
    assert self_only.current_availability == pytest.approx(99.97685185185185)
    assert self_only.strict_availability == pytest.approx(99.93055555555556)
    assert self_only.error_budget_remaining_percent == pytest.approx(76.85185185185185)

    strict = status(objective(), events)
    assert strict.error_budget_consumed_minutes == pytest.approx(30)
    assert strict.current_availability == pytest.approx(99.93055555555556)
    assert strict.error_budget_remaining_percent == pytest.approx(30.555555555555557)


def test_fifty_minutes_breach_the_objective() -> None:
    result = status(objective(), [minutes_down(50)])
    assert result.is_breaching
    assert result.error_budget_remaining_percent == 0
    assert result.error_budget_remaining_minutes == 0
    assert result.current_availability == pytest.approx(99.88425925925925)
    assert result.burn_rate == pytest.approx(50 / 43.2)


def test_exactly_the_budget_is_not_a_breach_despite_binary_rounding() -> None:
    # 43.2 min = 2,592 s; the double for 99.9 makes `allowed` 2,591.99999999985 s.
    exact = status(objective(), [event(2 * DAY + timedelta(seconds=2592), 2 * DAY)])
    assert not exact.is_breaching
    assert exact.error_budget_remaining_percent == 0
    assert exact.burn_alert is BurnAlert.CRITICAL
    one_second_more = status(objective(), [event(2 * DAY + timedelta(seconds=2593), 2 * DAY)])
    assert one_second_more.is_breaching


def test_target_100_has_no_budget() -> None:
    clean = status(objective(target=100), [])
    assert clean.error_budget_allowed_minutes == 0
    assert clean.error_budget_remaining_percent == 100.0
    assert clean.burn_rate is None
    assert not clean.is_breaching
    assert clean.burn_alert is BurnAlert.NONE
    assert all(w.long_burn_rate is None and not w.fires for w in clean.burn_windows)

    down = status(objective(target=100), [minutes_down(1)])
    assert down.error_budget_remaining_percent == 100.0
    assert down.burn_rate is None
    assert down.is_breaching
    assert down.burn_alert is BurnAlert.CRITICAL


@pytest.mark.parametrize(("minutes", "remaining", "breaching"), [
    (216, 90.0, False),
    (1728, 20.0, False),
    (2160, 0.0, False),
    (2161, 0.0, True),
])
def test_target_95_boundaries(minutes: int, remaining: float, breaching: bool) -> None:
    result = status(objective(target=95), [minutes_down(minutes)])
    assert result.error_budget_allowed_minutes == 2160.0
    assert result.error_budget_remaining_percent == pytest.approx(remaining, abs=1e-9)
    assert result.error_budget_remaining_minutes == pytest.approx(max(0, 2160 - minutes))
    assert result.is_breaching is breaching


# -- the window, open events, overlaps -------------------------------------------------


def test_open_event_older_than_the_window_counts_the_whole_window_while_down() -> None:
    result = status(objective(), [event(60 * DAY, None)], currently_down=True)
    assert result.error_budget_consumed_minutes == pytest.approx(43_200)
    assert result.current_availability == pytest.approx(0)
    assert result.has_open_downtime


def test_event_entirely_before_the_window_counts_nothing() -> None:
    result = status(objective(), [event(40 * DAY, 35 * DAY)])
    assert result.error_budget_consumed_minutes == 0
    assert result.error_budget_remaining_percent == 100.0


def test_event_across_the_window_start_is_clipped() -> None:
    result = status(objective(), [event(31 * DAY, 29 * DAY)])
    assert result.error_budget_consumed_minutes == pytest.approx(1440)


def test_event_reaching_past_now_is_clipped_at_now() -> None:
    result = status(objective(), [event(10 * MIN, -10 * MIN)])
    assert result.error_budget_consumed_minutes == pytest.approx(10)


def test_open_event_while_live_health_is_healthy_counts_nothing() -> None:
    result = status(objective(), [event(60 * DAY, None)], currently_down=False)
    assert result.error_budget_consumed_minutes == 0
    assert result.error_budget_consumed_strict_minutes == 0
    assert not result.has_open_downtime


def test_open_event_just_opened_is_open_downtime() -> None:
    result = status(objective(), [event(timedelta(0), None)], currently_down=True)
    assert result.has_open_downtime
    assert result.error_budget_consumed_minutes == 0


def test_open_upstream_event_is_open_downtime_only_for_strict_objectives() -> None:
    events = [event(5 * MIN, None, upstream="db")]
    assert status(objective(), events, currently_down=True).has_open_downtime
    self_only = status(objective(dependency_exclusion="self-only"), events, currently_down=True)
    assert not self_only.has_open_downtime
    assert self_only.error_budget_consumed_minutes == 0
    assert self_only.error_budget_consumed_strict_minutes == pytest.approx(5)


def test_overlapping_events_are_not_counted_twice() -> None:
    events = [
        event(3 * DAY, 3 * DAY - 30 * MIN),               # 30 min
        event(3 * DAY - 10 * MIN, 3 * DAY - 40 * MIN),    # overlaps: +10 min
        event(3 * DAY - 15 * MIN, 3 * DAY - 20 * MIN),    # inside: +0
        event(3 * DAY - 40 * MIN, 3 * DAY - 45 * MIN),    # touching: +5 min
        event(DAY, DAY - 5 * MIN),                        # apart: +5 min
    ]
    result = status(objective(), list(reversed(events)))
    assert result.error_budget_consumed_minutes == pytest.approx(50)


def test_self_and_upstream_overlap_counts_once_in_strict_mode() -> None:
    events = [minutes_down(30), minutes_down(30, upstream="db")]
    result = status(objective(), events)
    assert result.error_budget_consumed_strict_minutes == pytest.approx(30)
    assert result.attribution.self_minutes == pytest.approx(30)
    assert result.attribution.upstreams[0].minutes == pytest.approx(30)


def test_attribution_per_upstream_largest_first_named_after_the_newest_event() -> None:
    events = [
        minutes_down(5),
        minutes_down(7, ended_ago=5 * DAY, upstream="db", name="Old DB name"),
        minutes_down(3, ended_ago=4 * DAY, upstream="db", name="Database"),
        minutes_down(20, ended_ago=6 * DAY, upstream="cache", name="Cache"),
        minutes_down(60, ended_ago=40 * DAY, upstream="queue", name="Queue"),  # out of window
    ]
    result = status(objective(dependency_exclusion="self-only"), events)
    assert result.attribution.self_minutes == pytest.approx(5)
    shown = [(u.system_id, u.system_name, u.minutes) for u in result.attribution.upstreams]
    assert shown == [("cache", "Cache", pytest.approx(20)), ("db", "Database", pytest.approx(10))]


# -- maintenance -----------------------------------------------------------------------


def window(start: timedelta, end: timedelta, *, cancelled: bool = False) -> MaintenanceWindow:
    return MaintenanceWindow(start=NOW - start, end=NOW - end, cancelled=cancelled)


OUTAGE = [event(2 * DAY, 2 * DAY - 120 * MIN)]  # 120 minutes


def test_maintenance_is_ignored_unless_the_objective_excludes_it() -> None:
    windows = (window(2 * DAY, 2 * DAY - 60 * MIN),)
    assert status(objective(), OUTAGE, maintenance=windows).error_budget_consumed_minutes \
        == pytest.approx(120)


def test_overlapping_maintenance_windows_are_merged_before_subtracting() -> None:
    windows = (window(2 * DAY - 30 * MIN, 2 * DAY - 60 * MIN),
               window(2 * DAY - 45 * MIN, 2 * DAY - 90 * MIN),
               window(2 * DAY - 50 * MIN, 2 * DAY - 55 * MIN))   # together 30..90: 60 min
    result = status(objective(exclude_maintenance=True), OUTAGE, maintenance=windows)
    assert result.error_budget_consumed_minutes == pytest.approx(60)
    # the window's total is unchanged: maintenance costs no budget, it is not removed
    assert result.current_availability == pytest.approx((43_200 - 60) / 43_200 * 100)


def test_cancelled_maintenance_windows_are_ignored() -> None:
    windows = (window(2 * DAY, 2 * DAY - 60 * MIN, cancelled=True),
               window(2 * DAY - 100 * MIN, 2 * DAY - 110 * MIN))
    result = status(objective(exclude_maintenance=True), OUTAGE, maintenance=windows)
    assert result.error_budget_consumed_minutes == pytest.approx(110)


def test_maintenance_reaching_beyond_the_outage_removes_only_the_overlap() -> None:
    windows = (window(3 * DAY, 2 * DAY - 30 * MIN), window(2 * DAY - 100 * MIN, DAY))
    events = [*OUTAGE, minutes_down(10, ended_ago=5 * DAY, upstream="db")]
    obj = objective(exclude_maintenance=True, dependency_exclusion="self-only")
    result = status(obj, events, maintenance=windows)
    assert result.error_budget_consumed_minutes == pytest.approx(70)
    assert result.attribution.self_minutes == pytest.approx(70)
    assert result.error_budget_consumed_strict_minutes == pytest.approx(80)


# -- burn windows and the burn alert ---------------------------------------------------
# Target 95 % spends 5 % of any window: 180 s per hour, 15 s per 5 minutes.


def seconds_down(seconds: float, *, ended_ago: timedelta = timedelta(0)) -> DowntimeEvent:
    return event(ended_ago + timedelta(seconds=seconds), ended_ago)


def pair(result: SloStatus, long_minutes: int) -> tuple[float | None, float | None, bool]:
    [found] = [w for w in result.burn_windows if w.long_window_minutes == long_minutes]
    return found.long_burn_rate, found.short_burn_rate, found.fires


def test_burn_windows_are_the_workbook_pairs() -> None:
    result = status(objective(target=95), [])
    shown = [(w.long_window_minutes, w.short_window_minutes, w.threshold)
             for w in result.burn_windows]
    assert shown == [(60, 5, 14.4), (360, 30, 6.0), (4320, 360, 1.0)]
    assert all(w.long_burn_rate == 0 and not w.fires for w in result.burn_windows)


def test_one_hour_pair_fires_at_its_threshold() -> None:
    at = status(objective(target=95), [seconds_down(14.4 * 180)])   # 2,592 s in the hour
    long_rate, short_rate, fires = pair(at, 60)
    assert long_rate == pytest.approx(14.4)
    assert short_rate == pytest.approx(20.0)                       # 300 s of 15 s
    assert fires
    below = status(objective(target=95), [seconds_down(14.4 * 180 - 1)])
    assert pair(below, 60)[2] is False


def test_a_pair_does_not_fire_once_the_short_window_is_clean() -> None:
    recovered = status(objective(target=95), [seconds_down(3000, ended_ago=6 * MIN)])
    long_rate, short_rate, fires = pair(recovered, 60)
    assert long_rate == pytest.approx(3000 / 180)
    assert short_rate == 0
    assert not fires


def test_six_hour_and_three_day_pairs_fire_at_their_thresholds() -> None:
    six_hours = status(objective(target=95), [seconds_down(6 * 1080)])
    assert pair(six_hours, 360)[0] == pytest.approx(6.0)
    assert pair(six_hours, 360)[2]
    assert not status(objective(target=95), [seconds_down(6 * 1080 - 1)]).burn_windows[1].fires
    three_days = status(objective(target=95), [seconds_down(12_960)])
    assert pair(three_days, 4320)[0] == pytest.approx(1.0)
    assert pair(three_days, 4320)[2]
    assert not status(objective(target=95), [seconds_down(12_959)]).burn_windows[2].fires


def test_a_burn_window_longer_than_the_objective_window_is_capped() -> None:
    one_day = status(objective(target=95, window_days=1), [seconds_down(4320)])
    assert pair(one_day, 4320)[0] == pytest.approx(1.0)   # over 1 day, not 3


@pytest.mark.parametrize(("minutes", "alert"), [
    (0, BurnAlert.NONE),
    (1079, BurnAlert.NONE),
    (1080, BurnAlert.WARNING),      # 50 % of 2,160
    (1727, BurnAlert.WARNING),
    (1728, BurnAlert.CRITICAL),     # 80 %
    (3000, BurnAlert.CRITICAL),
])
def test_burn_alert_by_consumed_share_of_the_budget(minutes: int, alert: BurnAlert) -> None:
    events = [minutes_down(minutes)] if minutes else []
    assert status(objective(target=95), events).burn_alert is alert


def test_fast_burn_at_the_multiplier_of_the_one_hour_rate() -> None:
    assert status(objective(target=95), [seconds_down(900)]).burn_alert is BurnAlert.FAST_BURN
    assert status(objective(target=95), [seconds_down(899)]).burn_alert is BurnAlert.NONE


def test_fast_burn_wins_over_critical() -> None:
    events = [minutes_down(1728), seconds_down(900)]
    assert status(objective(target=95), events).burn_alert is BurnAlert.FAST_BURN


def test_burn_alert_follows_the_objective_thresholds() -> None:
    obj = objective(target=95, burn_rate_thresholds={
        "warning": 10, "critical": 20, "fast_burn_multiplier": 100})
    assert status(obj, [minutes_down(215)]).burn_alert is BurnAlert.NONE
    assert status(obj, [minutes_down(216)]).burn_alert is BurnAlert.WARNING
    assert status(obj, [minutes_down(432)]).burn_alert is BurnAlert.CRITICAL
    assert status(obj, [seconds_down(900)]).burn_alert is BurnAlert.NONE


def test_self_only_burn_ignores_upstream_minutes() -> None:
    events = [minutes_down(1728, upstream="db"), seconds_down(900, ended_ago=MIN)]
    obj = objective(target=95, dependency_exclusion="self-only")
    assert status(obj, [events[0]]).burn_alert is BurnAlert.NONE
    assert status(obj, events).burn_alert is BurnAlert.FAST_BURN


# -- values, serialisation, speed ------------------------------------------------------


def test_status_serialises_by_camel_case_alias() -> None:
    dumped = status(objective(), [minutes_down(10, upstream="db", name="DB")]).model_dump(
        mode="json")
    assert dumped["errorBudgetRemainingPercent"] == pytest.approx(76.85185185185185)
    assert dumped["errorBudgetConsumedStrictMinutes"] == pytest.approx(10)
    assert dumped["burnAlert"] == "none"
    assert dumped["attribution"]["upstreams"] == [
        {"systemId": "db", "systemName": "DB", "minutes": pytest.approx(10)}]
    assert set(dumped["burnWindows"][0]) == {
        "longWindowMinutes", "shortWindowMinutes", "threshold", "longBurnRate",
        "shortBurnRate", "fires"}


def test_naive_datetimes_are_utc() -> None:
    naive = DowntimeEvent(start=datetime(2026, 3, 1, 11, 0), end=datetime(2026, 3, 1, 11, 10),
                          attribution="self")
    assert naive.start.tzinfo is UTC
    assert naive.duration_seconds == 600
    result = compute_status(objective(), [naive], now=NOW.replace(tzinfo=None),
                            currently_down=False)
    assert result.error_budget_consumed_minutes == pytest.approx(10)


def test_ten_thousand_events_are_counted_exactly() -> None:
    # Speed is measured by benchmarks/slo.py; here, only the result on a large input.
    events = [event(29 * DAY - i * 4 * MIN, 29 * DAY - i * 4 * MIN - 2 * MIN,
                    upstream="db" if i % 3 == 0 else None) for i in range(10_000)]
    result = compute_status(objective(), events, now=NOW, currently_down=False)
    assert result.error_budget_consumed_strict_minutes == pytest.approx(20_000)


# -- the objective model ---------------------------------------------------------------


def test_the_documented_example_objective() -> None:
    obj = Objective(id="obj-1", system_id="sys-1", target=99.9, window_days=30,
                    dependency_exclusion="self-only")
    assert obj.dependency_exclusion is DependencyExclusion.SELF_ONLY
    assert obj.health_check_configuration_id is None
    assert obj.excluded_dependency_ids == ()
    assert obj.exclude_maintenance is False
    thresholds = obj.burn_rate_thresholds
    assert (thresholds.warning, thresholds.critical, thresholds.fast_burn_multiplier) \
        == (50, 80, 5)
    assert objective().dependency_exclusion is DependencyExclusion.STRICT


def test_objective_accepts_camel_case_aliases() -> None:
    obj = Objective.model_validate({
        "id": "obj-1", "systemId": "sys-1", "healthCheckConfigurationId": "http-1",
        "target": 99.5, "windowDays": 7.0, "dependencyExclusion": "self-only",
        "excludedDependencyIds": ["db"], "excludeMaintenance": True,
        "burnRateThresholds": {"warning": 40, "critical": 60, "fastBurnMultiplier": 10}})
    assert obj.window_days == 7 and isinstance(obj.window_days, int)
    assert obj.excluded_dependency_ids == ("db",)
    assert obj.burn_rate_thresholds.fast_burn_multiplier == 10


def test_objective_is_frozen() -> None:
    with pytest.raises(ValidationError):
        objective().target = 50  # type: ignore[misc]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"target": 0}, "target must be > 0 and ≤ 100, received 0"),
    ({"target": 101}, "target must be > 0 and ≤ 100, received 101"),
    ({"target": -1}, "target must be > 0 and ≤ 100, received -1"),
    ({"target": True}, "target must be > 0 and ≤ 100, received the boolean True"),
    ({"window_days": 0}, "window_days must be a whole number of days from 1 to 3650, received 0"),
    ({"window_days": 1.5}, "window_days must be a whole number of days from 1 to 3650, received 1.5"),
    ({"window_days": 4000}, "window_days must be a whole number of days from 1 to 3650, received 4000"),
    ({"window_days": True}, "window_days must be a whole number of days from 1 to 3650, received the boolean"),
    ({"dependency_exclusion": "sometimes"},
     "dependency_exclusion must be 'strict' or 'self-only', received 'sometimes'"),
    ({"id": ""}, "id '' is empty: expected printable text"),
    ({"id": " obj-1"}, "id ' obj-1' starts or ends with whitespace"),
    ({"system_id": "sys-1 "}, "system_id 'sys-1 ' starts or ends with whitespace"),
    ({"health_check_configuration_id": "  "}, "health_check_configuration_id '  ' starts or ends"),
    ({"excluded_dependency_ids": ["db", "b\x00d"]}, "holds the non-printable character U+0000"),
    ({"burn_rate_thresholds": {"warning": 0}},
     "warning must be a percentage > 0 and ≤ 100, received 0"),
    ({"burn_rate_thresholds": {"critical": 101}},
     "critical must be a percentage > 0 and ≤ 100, received 101"),
    ({"burn_rate_thresholds": {"warning": 90, "critical": 80}},
     "warning (90) must not exceed critical (80)"),
    ({"burn_rate_thresholds": {"fast_burn_multiplier": 0}},
     "fast_burn_multiplier must be a finite number > 0, received 0"),
    ({"colour": "red"}, "colour"),
])
def test_invalid_objectives_name_the_field_and_the_expectation(
        overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        objective(**overrides)
    assert message in str(caught.value)


def test_events_and_maintenance_windows_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="must not be before start"):
        event(MIN, 2 * MIN)
    with pytest.raises(ValidationError, match="must be after start"):
        window(MIN, MIN)
    with pytest.raises(ValidationError, match="attribution"):
        DowntimeEvent(start=NOW, end=None, attribution="sometimes")  # type: ignore[arg-type]


def test_no_downtime_is_a_plain_zero_not_minus_zero() -> None:
    result = compute_status(objective(), [], now=NOW, currently_down=False)
    assert str(result.error_budget_consumed_minutes) == "0.0"
    assert str(result.burn_rate) == "0.0"


# -- the light read (`compute_budget`) against the full status ------------------------

def random_history(rng: random.Random) -> tuple[list[DowntimeEvent], list[MaintenanceWindow]]:
    """Events (overlapping, out of order, open, outside the window) and maintenance."""
    events = []
    for _ in range(rng.randrange(0, 30)):
        start = timedelta(minutes=rng.uniform(0, 40 * 1440))
        closed = rng.random() < 0.9
        end = start - timedelta(minutes=rng.uniform(0, 600)) if closed else None
        upstream = rng.choice([None, None, "up-1", "up-2"])
        events.append(event(start, end if end is None or end > -DAY else -DAY,
                            upstream=upstream, name=upstream and upstream.upper()))
    rng.shuffle(events)
    windows = [window(timedelta(minutes=a + rng.uniform(1, 900)), timedelta(minutes=a),
                      cancelled=rng.random() < 0.2)
               for a in (rng.uniform(0, 40 * 1440) for _ in range(rng.randrange(0, 4)))]
    return events, windows


@pytest.mark.parametrize("seed", range(200))
def test_compute_budget_agrees_with_compute_status(seed: int) -> None:
    rng = random.Random(seed)
    events, windows = random_history(rng)
    obj = objective(
        target=rng.choice([95, 99, 99.9, 100]), window_days=rng.choice([1, 2, 7, 30]),
        dependency_exclusion=rng.choice(list(DependencyExclusion)),
        exclude_maintenance=rng.random() < 0.5)
    down = rng.random() < 0.5
    full = compute_status(obj, events, now=NOW, currently_down=down, maintenance=windows)
    light = compute_budget(obj, events, now=NOW, currently_down=down, maintenance=windows)
    assert light.remaining_percent == full.error_budget_remaining_percent
    assert light.availability == full.current_availability
    assert light.burn_rate == full.burn_rate
    assert light.is_breaching == full.is_breaching
    assert light.burn_alert == full.burn_alert
    # The order of the events never matters.
    ordered = sorted(events, key=lambda e: e.start)
    assert compute_status(obj, ordered, now=NOW, currently_down=down,
                          maintenance=windows) == full


def test_event_columns_give_the_same_status_and_refuse_ragged_columns() -> None:
    events = [minutes_down(10), minutes_down(5, upstream="up-1", name="Up"),
              event(30 * MIN, None)]
    obj = objective(dependency_exclusion="self-only")
    columns = EventColumns.of(events)
    assert len(columns) == 3
    assert [e.start for e in columns] == [e.start for e in events]
    for down in (True, False):
        assert (compute_status(obj, columns, now=NOW, currently_down=down)
                == compute_status(obj, events, now=NOW, currently_down=down))
    with pytest.raises(ValueError, match="one entry per event"):
        EventColumns([NOW], [], [Attribution.SELF], [None], [None])
