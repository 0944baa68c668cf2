"""`objectives` and `maintenance` in config files: applied in one transaction after the
systems and checks they name, or refused naming the line and the field."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from catalog_plugin import Catalog, CatalogPlugin
from health_plugin import CheckOutcome, HealthPlugin, HealthStatus, health_service
from reactive_core import ConfigError, Host, apply_config_text
from slo_plugin import (
    SLO_KIND,
    BurnRateThresholds,
    DependencyExclusion,
    MaintenanceWindow,
    Objective,
    SloPlugin,
    slo_service,
)
from slo_plugin import store as slo_store

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

GOOD = textwrap.dedent("""\
    systems:
      - id: api
        name: Orders API
      - id: db
        name: Orders database
    dependencies:
      - source: api
        target: db
    checks:
      - id: api-tcp
        strategy: tcp
        config: {host: 127.0.0.1, port: 9}
    associations:
      - system: api
        check: api-tcp
        thresholds: {degraded_min_failures: 1, unhealthy_min_failures: 1}
    maintenance:
      - id: db-upgrade
        system: db
        start: 2026-03-01T02:00:00Z
        end: "2026-03-01T06:00:00+02:00"
    objectives:
      - id: api-availability
        system: api
        target: 99.9
        window_days: 30
        dependency_exclusion: self-only
        excluded_dependencies: [db]
        burn_rate_thresholds: {warning: 40, critical: 70, fast_burn_multiplier: 10}
      - id: api-probe
        system: api
        check: api-tcp
        target: 99
        window_days: 7
        exclude_maintenance: true
    """)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def host(sqlite_url: str, anyio_backend: str, clock: Clock) -> AsyncIterator[Host]:
    async with Host(database_url=sqlite_url, clock=clock, entry_points=False,
                    plugins=[CatalogPlugin, HealthPlugin, SloPlugin],
                    config={"poll_interval": 0.05, "retry_base_seconds": 0.01,
                            "run_jobs": False,
                            "plugins": {"health": {"scheduler": False}}}) as running:
        yield running


def line_of(text: str, needle: str) -> int:
    """1-based number of the first line of `text` containing `needle`."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


async def maintenance(host: Host, system_id: str) -> list[MaintenanceWindow]:
    found = await host.read(lambda tx: slo_store.maintenance_in(
        tx, [system_id], datetime(2000, 1, 1, tzinfo=UTC)))
    return found[system_id]


async def test_apply_declares_objectives_after_the_systems_checks_and_maintenance_they_name(
    host: Host,
) -> None:
    report = await apply_config_text(host, GOOD, source="slo.yaml")
    assert report[-3:] == [
        "created maintenance window db-upgrade (db, 2026-03-01 02:00 to 2026-03-01 04:00 UTC)",
        "created objective api-availability (99.9% of api over 30 days)",
        "created objective api-probe (99% of api over 7 days)",
    ]
    service = slo_service(host)
    view = await service.objective("api-availability")
    assert view is not None and view.objective == Objective(
        id="api-availability", system_id="api", target=99.9, window_days=30,
        dependency_exclusion=DependencyExclusion.SELF_ONLY, excluded_dependency_ids=("db",),
        burn_rate_thresholds=BurnRateThresholds(warning=40, critical=70,
                                                fast_burn_multiplier=10))
    probe = await service.objective("api-probe")
    assert probe is not None
    assert probe.objective.health_check_configuration_id == "api-tcp"
    assert probe.objective.exclude_maintenance is True
    state = await host.entity(SLO_KIND).get("api-probe")
    assert state is not None and (state.target, state.budget_remaining_percent) == (99.0, 100.0)
    assert (await host.changes(kind=SLO_KIND))[-1].actor.type == "config"
    assert await maintenance(host, "db") == [MaintenanceWindow(
        start=datetime(2026, 3, 1, 2, tzinfo=UTC), end=datetime(2026, 3, 1, 4, tzinfo=UTC))]


async def test_the_same_file_again_changes_nothing_and_an_edit_reports_its_fields(
    host: Host,
) -> None:
    await apply_config_text(host, GOOD)
    changes = len(await host.changes(kind=SLO_KIND))
    assert await apply_config_text(host, GOOD) == []
    assert len(await host.changes(kind=SLO_KIND)) == changes

    edited = (GOOD.replace("target: 99.9", "target: 99.5")
              .replace("warning: 40", "warning: 30")
              .replace('end: "2026-03-01T06:00:00+02:00"',
                       'end: "2026-03-01T07:00:00+02:00"\n    cancelled: true'))
    assert await apply_config_text(host, edited) == [
        "updated maintenance window db-upgrade (end, cancelled)",
        "updated objective api-availability (target, burn_rate_thresholds)",
    ]
    state = await host.entity(SLO_KIND).get("api-availability")
    assert state is not None and state.target == 99.5
    assert await maintenance(host, "db") == [MaintenanceWindow(
        start=datetime(2026, 3, 1, 2, tzinfo=UTC), end=datetime(2026, 3, 1, 5, tzinfo=UTC),
        cancelled=True)]


BAD_PARSE = {
    "target 0": ("target: 99.9", "target: 0",
                 "objectives[0].target: Value error, target must be > 0 and ≤ 100, received 0"),
    "target 101": ("target: 99.9", "target: 101",
                   "objectives[0].target: Value error, target must be > 0 and ≤ 100, "
                   "received 101"),
    "window 0": ("window_days: 30", "window_days: 0",
                 "objectives[0].window_days: Value error, window_days must be a whole number "
                 "of days from 1 to 3650, received 0"),
    "window 1.5": ("window_days: 30", "window_days: 1.5",
                   "window_days must be a whole number of days from 1 to 3650, received 1.5"),
    "window 4000": ("window_days: 30", "window_days: 4000",
                    "window_days must be a whole number of days from 1 to 3650, received 4000"),
    "window a boolean": ("window_days: 30", "window_days: true",
                         "window_days must be a whole number of days from 1 to 3650, received "
                         "the boolean True"),
    "exclusion sometimes": ("dependency_exclusion: self-only", "dependency_exclusion: sometimes",
                            "objectives[0].dependency_exclusion: Value error, "
                            "dependency_exclusion must be 'strict' or 'self-only', received "
                            "'sometimes'"),
    "warning above critical": ("warning: 40", "warning: 90",
                               "objectives[0].burn_rate_thresholds: Value error, warning (90) "
                               "must not exceed critical (70)"),
    "fast burn multiplier 0": ("fast_burn_multiplier: 10", "fast_burn_multiplier: 0",
                               "objectives[0].burn_rate_thresholds.fast_burn_multiplier: Value "
                               "error, fast_burn_multiplier must be a finite number > 0"),
    "misspelled key": ("exclude_maintenance: true", "exclude_maintenence: true",
                       "objectives[1].exclude_maintenence: unknown field"),
    "maintenance without a timezone": (
        "start: 2026-03-01T02:00:00Z", "start: 2026-03-01T02:00:00",
        "maintenance[0].start: Value error, start must be an ISO 8601 time with a timezone"),
    "maintenance ending before it starts": (
        'end: "2026-03-01T06:00:00+02:00"', 'end: "2026-03-01T03:00:00+02:00"',
        "maintenance[0].end: Value error, end must be after start (2026-03-01T02:00:00+00:00), "
        "received 2026-03-01T03:00:00+02:00"),
}

BAD_APPLY = {
    "unknown system": (
        "  - id: api-availability\n    system: api", "  - id: api-availability\n    system: apu",
        "system: apu",
        "objectives[0]: objective 'api-availability': unknown system 'apu', expected a system "
        "declared under 'systems' in this file or already in the catalog"),
    "check of another system": (
        "    check: api-tcp\n    target: 99\n", "    check: db-tcp\n    target: 99\n",
        "check: db-tcp",
        "objectives[1]: objective 'api-probe': check 'db-tcp' is not associated with system "
        "'api', expected a check associated with it under 'associations' in this file or "
        "already"),
    "maintenance of an unknown system": (
        "    system: db\n    start", "    system: dbx\n    start", "system: dbx",
        "maintenance[0]: maintenance window 'db-upgrade': unknown system 'dbx', expected a "
        "system declared under 'systems' in this file or already in the catalog"),
}


@pytest.mark.parametrize("case", sorted(BAD_PARSE) + sorted(BAD_APPLY))
async def test_a_bad_item_is_refused_naming_its_line_and_field_and_nothing_is_stored(
    host: Host, case: str,
) -> None:
    if case in BAD_PARSE:
        old, new, expected = BAD_PARSE[case]
        marker = new.split("\n")[0]
    else:
        old, new, marker, expected = BAD_APPLY[case]
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    with pytest.raises(ConfigError) as info:
        await apply_config_text(host, text, source="slo.yaml")
    message = str(info.value)
    assert message.startswith(f"slo.yaml:{line_of(text, marker)}: "), message
    assert expected in message
    # One transaction: the systems, checks and windows before the bad item are gone too.
    assert await slo_service(host).objectives() == []
    assert await maintenance(host, "db") == []
    assert await Catalog(host).systems() == {}
    assert await host.changes() == []


async def test_the_system_and_check_of_an_objective_cannot_change(host: Host) -> None:
    await apply_config_text(host, GOOD)
    moved = GOOD.replace("  - id: api-availability\n    system: api",
                         "  - id: api-availability\n    system: db")
    with pytest.raises(ConfigError) as info:
        await apply_config_text(host, moved, source="slo.yaml")
    assert str(info.value) == (
        f"slo.yaml:{line_of(moved, 'id: api-availability') + 1}: objectives[0]: objective "
        "'api-availability': system cannot change (is 'api', received 'db'): expected the same "
        "system, or a new objective id")
    unfollowed = GOOD.replace("    check: api-tcp\n    target: 99\n", "    target: 99\n")
    with pytest.raises(ConfigError, match=r"objectives\[1\]: objective 'api-probe': check "
                                          r"cannot change \(is 'api-tcp', received None\)"):
        await apply_config_text(host, unfollowed)
    view = await slo_service(host).objective("api-availability")
    assert view is not None and view.objective.system_id == "api"


async def test_a_maintenance_window_gives_back_the_budget_of_an_objective_subtracting_it(
    host: Host, clock: Clock,
) -> None:
    base = GOOD.split("maintenance:")[0]
    await apply_config_text(host, base + textwrap.dedent("""\
        objectives:
          - id: api-planned
            system: api
            target: 99.9
            window_days: 30
            exclude_maintenance: true
        """))
    health = health_service(host)
    for minutes, status in ((10, HealthStatus.UNHEALTHY), (25, HealthStatus.HEALTHY)):
        clock.now = T0 + timedelta(minutes=minutes)
        await health.record_run("api-tcp", CheckOutcome(status=status, latency_ms=1.0),
                                timestamp=clock.now)
        await host.drain()
    clock.now = T0 + timedelta(hours=1)
    slo = host.entity(SLO_KIND)
    before = await slo.get("api-planned")
    assert before is not None
    assert before.budget_remaining_percent == pytest.approx((43.2 - 15) / 43.2 * 100)

    report = await apply_config_text(host, base + textwrap.dedent("""\
        maintenance:
          - id: api-deploy
            system: api
            start: 2026-03-02T12:00:00Z
            end: 2026-03-02T12:30:00Z
        """))
    assert report == [
        "created maintenance window api-deploy (api, 2026-03-02 12:00 to 2026-03-02 12:30 UTC)"]
    # The entity moved with the window, in the apply itself (no refresh needed).
    after = await slo.get("api-planned")
    assert after is not None and after.budget_remaining_percent == 100.0
    last = (await host.changes(kind=SLO_KIND))[-1]
    assert (last.id, last.reason) == ("api-planned", "maintenance window api-deploy declared")
