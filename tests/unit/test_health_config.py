"""`checks` and `associations` in config files: applied in one transaction, or refused."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator

import pytest

from catalog_plugin import Catalog
from health_plugin import HealthState, HealthStatus, InvalidCheck, ThresholdMode, health_service
from plugins_for_tests import make_health_host
from reactive_core import ConfigError, Host, apply_config_text

pytestmark = pytest.mark.anyio

GOOD = textwrap.dedent("""\
    systems:
      - id: api
        name: Orders API
    checks:
      - id: api-http
        name: Orders API over HTTP
        strategy: http
        interval_seconds: 30
        config:
          url: http://127.0.0.1:8080/health
          expected_status: [200, 204]
          timeout_seconds: 2
      - id: db-tcp
        strategy: tcp
        config: {host: 127.0.0.1, port: 5432}
    associations:
      - system: api
        check: api-http
        thresholds: {mode: window, window_size: 10, degraded_min_failures: 3,
                     unhealthy_min_failures: 6}
      - system: api
        check: db-tcp
    """)


make_host = make_health_host


@pytest.fixture
async def host(sqlite_url: str, anyio_backend: str) -> AsyncIterator[Host]:
    async with make_host(sqlite_url) as running:
        yield running


def line_of(text: str, needle: str) -> int:
    """1-based number of the first line of `text` containing `needle`."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


async def test_apply_declares_checks_and_associations(host: Host) -> None:
    report = await apply_config_text(host, GOOD, source="health.yaml")
    assert report == [
        "created system api",
        "created check api-http (http every 30s)",
        "created check db-tcp (tcp every 60s)",
        "associated check api-http with system api (enabled)",
        "associated check db-tcp with system api (enabled)",
    ]
    service = health_service(host)
    check = await service.get_check("api-http")
    assert check is not None
    assert (check.name, check.strategy, check.interval_seconds, check.paused) == (
        "Orders API over HTTP", "http", 30.0, False)
    assert check.config == {"url": "http://127.0.0.1:8080/health",
                            "expected_status": [200, 204], "timeout_seconds": 2.0}
    window = (await service.associations(check_id="api-http"))[0].thresholds
    assert window is not None and window.mode is ThresholdMode.WINDOW
    assert await host.entity("health").get("api") == HealthState(
        status=HealthStatus.HEALTHY, healthy_checks=2, total_checks=2)
    changes = await host.changes(kind="health")
    assert changes[-1].actor.type == "config"

    # Idempotent: the same file again changes nothing and logs nothing.
    assert await apply_config_text(host, GOOD, source="health.yaml") == []
    assert len(await host.changes(kind="health")) == len(changes)

    edited = GOOD.replace("interval_seconds: 30", "interval_seconds: 15\n    paused: true")
    assert await apply_config_text(host, edited) == [
        "updated check api-http (interval_seconds, paused)"]
    assert (await host.changes(kind="health"))[-1].next == {
        "status": "healthy", "healthyChecks": 1, "totalChecks": 1}


BAD_CASES = {
    "unknown strategy": (
        ("strategy: tcp", "strategy: tpc"), "strategy: tpc",
        "checks[1]: check 'db-tcp': unknown strategy 'tpc': expected one of http, tcp"),
    "negative interval": (
        ("interval_seconds: 30", "interval_seconds: -5"), "interval_seconds: -5",
        "checks[0].interval_seconds: Input should be greater than 0 (received -5)"),
    "invalid url": (
        ("url: http://127.0.0.1:8080/health", "url: localhost:8080/health"), "url: localhost",
        ("checks[0]: check 'api-http': config for strategy 'http' is not valid: config.url: "
         "Value error, expected an http:// or https:// URL with a host "
         "(received 'localhost:8080/health')")),
    "unknown system": (
        ("  - system: api\n    check: db-tcp", "  - system: apu\n    check: db-tcp"),
        "system: apu",
        ("associations[1]: association apu <- db-tcp: unknown system 'apu', expected a system "
         "declared under 'systems' in this file or already in the catalog")),
    "unknown check": (
        ("check: db-tcp", "check: db-tpc"), "check: db-tpc",
        ("associations[1]: association api <- db-tpc: unknown check 'db-tpc', expected a check "
         "declared under 'checks' in this file or already stored")),
    "bad thresholds": (
        ("degraded_min_failures: 3", "degraded_min_failures: 7"), "thresholds:",
        ("associations[0].thresholds: Value error, degraded_min_failures (7) must not exceed "
         "unhealthy_min_failures (6)")),
    "system id with surrounding space": (
        ("  - id: api\n    name: Orders API", "  - id: 'api '\n    name: Orders API"),
        "id: 'api '", "systems[0].id: Value error, starts or ends with whitespace"),
    "system id with a zero-width space": (
        ("  - id: api\n    name: Orders API", "  - id: \"a\\u200bpi\"\n    name: Orders API"),
        "id: \"a", "systems[0].id: Value error, holds the non-printable character"),
    "check id of 256 characters": (
        ("  - id: db-tcp", "  - id: " + "c" * 256), "c" * 256,
        "checks[1].id: Value error, has 256 characters"),
    "association naming a check id with a newline": (
        ("check: db-tcp", "check: \"db\\ntcp\""), "check: \"db",
        "associations[1].check: Value error, holds the non-printable character"),
    "interval not a number": (
        ("interval_seconds: 30", "interval_seconds: .nan"), "interval_seconds: .nan",
        "checks[0].interval_seconds: Input should be a finite number"),
    "interval under the minimum": (
        ("interval_seconds: 30", "interval_seconds: 0.001"), "interval_seconds: 0.001",
        "checks[0]: check 'api-http': interval_seconds 0.001 is below the minimum: expected "
        "at least 1 seconds (the health setting min_interval_seconds)"),
    "misspelled key": (
        ("interval_seconds: 30", "intervall_seconds: 30"), "intervall_seconds",
        "checks[0].intervall_seconds: unknown field"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
async def test_bad_config_is_refused_naming_the_line_and_nothing_is_stored(
    host: Host, case: str,
) -> None:
    (old, new), marker, expected = BAD_CASES[case]
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    with pytest.raises(ConfigError) as info:
        await apply_config_text(host, text, source="health.yaml")
    message = str(info.value)
    assert message.startswith(f"health.yaml:{line_of(text, marker)}: "), message
    assert expected in message
    service = health_service(host)
    assert await service.checks() == []
    assert await service.associations() == []
    assert await Catalog(host).systems() == {}
    assert await host.changes() == []


async def test_duplicate_declarations_are_refused(host: Host) -> None:
    text = GOOD + "  - system: api\n    check: api-http\n"
    with pytest.raises(ConfigError, match=r":24: associations\[2\] \(system 'api', check "
                                          r"'api-http'\) is already declared by associations\[0\]"):
        await apply_config_text(host, text)
    assert await health_service(host).checks() == []


async def test_the_interval_floor_of_config_files_is_a_health_setting(sqlite_url: str) -> None:
    text = GOOD.replace("interval_seconds: 30", "interval_seconds: 0.2")
    async with make_host(sqlite_url, min_interval_seconds=0.1) as host:
        await apply_config_text(host, text, source="health.yaml")
        (check,) = [c for c in await health_service(host).checks() if c.id == "api-http"]
        assert check.interval_seconds == 0.2
        with pytest.raises(InvalidCheck, match=r"from 0\.01 to 604800"):
            await health_service(host).upsert_check("fast", strategy="tcp",
                                                    config={"host": "127.0.0.1", "port": 9},
                                                    interval_seconds=0.001)
