"""`reactive apply -f` with objectives, and `reactive slo [OBJECTIVE]`: the objectives'
budgets as a table or JSON, one objective's status and its events with attribution.

In-process (`run([...])`): the SLO plugin loaded with `--plugin`, the catalog and the
health plugin from their entry points; the downtime history is recorded beforehand by
a host whose clock is set three hours back, through real health changes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from cli_support import table

from catalog_plugin import CatalogPlugin
from health_plugin import CheckOutcome, HealthPlugin, HealthStatus, health_service
from reactive_core import Host, apply_config_text
from reactive_core._cli.main import run
from slo_plugin import SloPlugin

SLO = ["--plugin", "slo_plugin.hooks:SloPlugin"]

CONFIG = """\
systems:
  - id: api
    name: Orders API
  - id: web
    name: Web shop
dependencies:
  - source: web
    target: api
checks:
  - id: api-tcp
    strategy: tcp
    config: {host: 127.0.0.1, port: 9}
  - id: web-tcp
    strategy: tcp
    config: {host: 127.0.0.1, port: 9}
associations:
  - system: api
    check: api-tcp
    thresholds: {degraded_min_failures: 1, unhealthy_min_failures: 1}
  - system: web
    check: web-tcp
    thresholds: {degraded_min_failures: 1, unhealthy_min_failures: 1}
objectives:
  - id: api-availability
    system: api
    target: 99.9
    window_days: 30
  - id: web-availability
    system: web
    target: 99.5
    window_days: 7
    dependency_exclusion: self-only
"""
HEADERS = ["OBJECTIVE", "SYSTEM", "TARGET", "WINDOW", "AVAILABILITY", "BUDGET LEFT", "BURN RATE",
           "BURN ALERT", "STREAK"]


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("REACTIVE_PLUGINS", "catalog,health")
    return f"sqlite:///{tmp_path}/reactive.db"


def slo(url: str, *args: str) -> int:
    return run(["slo", *args, "--database-url", url, *SLO])


def record_history(url: str, start: datetime) -> None:
    """Declare CONFIG at `start`, then: api down at +0 min, web down at +5 (while api is
    down), api up at +15 (web still down), web up at +20."""
    class Clock:
        now = start - timedelta(minutes=1)

        def __call__(self) -> datetime:
            return self.now

    clock = Clock()

    async def main() -> None:
        async with Host(database_url=url, clock=clock, entry_points=False,
                        plugins=[CatalogPlugin, HealthPlugin, SloPlugin],
                        config={"poll_interval": 0.05, "retry_base_seconds": 0.01,
                                "run_jobs": False,
                                "plugins": {"health": {"scheduler": False}}}) as host:
            await apply_config_text(host, CONFIG)
            health = health_service(host)
            for minutes, check, status in ((0, "api-tcp", HealthStatus.UNHEALTHY),
                                           (5, "web-tcp", HealthStatus.UNHEALTHY),
                                           (15, "api-tcp", HealthStatus.HEALTHY),
                                           (20, "web-tcp", HealthStatus.HEALTHY)):
                clock.now = start + timedelta(minutes=minutes)
                await health.record_run(check, CheckOutcome(status=status, latency_ms=1.0),
                                        timestamp=clock.now)
                await host.drain()

    anyio.run(main)


def test_apply_declares_objectives_and_slo_lists_their_budgets(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "slo.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    assert run(["apply", "-f", str(config), "--database-url", url, *SLO]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2:] == ["created objective api-availability (99.9% of api over 30 days)",
                          "created objective web-availability (99.5% of web over 7 days)"]
    assert run(["apply", "-f", str(config), "--database-url", url, *SLO]) == 0
    assert capsys.readouterr().out == "no changes\n"

    assert slo(url) == 0
    assert table(capsys.readouterr().out) == [
        HEADERS,
        ["api-availability", "api", "99.9%", "30d", "100%", "100%", "0.00", "none",
         "0d (best 0d)"],
        ["web-availability", "web", "99.5%", "7d", "100%", "100%", "0.00", "none",
         "0d (best 0d)"],
    ]
    assert slo(url, "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["objective_id"], r["system_name"], r["budget_remaining_percent"],
             r["burn_alert"], r["is_breaching"]) for r in rows] == [
        ("api-availability", "Orders API", 100.0, "none", False),
        ("web-availability", "Web shop", 100.0, "none", False)]
    assert rows[1]["dependency_exclusion"] == "self-only"


def test_slo_objective_shows_its_status_and_its_events_newest_first_with_attribution(
    url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
    record_history(url, start)

    assert slo(url) == 0
    rows = table(capsys.readouterr().out)
    # api: 15 of 43.2 min; web counts only its own 5 of 50.4 min (self-only).
    assert rows[1] == ["api-availability", "api", "99.9%", "30d", "99.9653%", "65.28%", "0.35",
                       "none", "0d (best 0d)"]
    assert rows[2] == ["web-availability", "web", "99.5%", "7d", "99.9504%", "90.08%", "0.10",
                       "none", "0d (best 0d)"]

    assert slo(url, "web-availability") == 0
    status, events = capsys.readouterr().out.rstrip("\n").split("\n\n")
    assert table(status) == [
        ["objective", "web-availability"],
        ["system", "web (Web shop)"],
        ["target", "99.5% over 7 days (self-only)"],
        ["follows", "the system's health"],
        ["availability", "99.9504% (strict 99.8512%)"],
        ["budget", "90.08% left (5 min used of 50.4 min)"],
        ["burn rate", "0.10 (alert: none)"],
        ["down now", "no"],
        ["streak", "0d (best 0d)"],
    ]

    def at(minutes: int) -> str:
        return f"{start + timedelta(minutes=minutes):%Y-%m-%d %H:%M:%S}"

    assert table(events) == [
        ["START (UTC)", "END (UTC)", "DURATION", "ATTRIBUTION", "UPSTREAM"],
        [at(15), at(20), "5m 00s", "self", "-"],
        [at(5), at(15), "10m 00s", "upstream", "api (Orders API)"],
    ]

    assert slo(url, "web-availability", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["objective"]["budget_consumed_minutes"] == pytest.approx(5.0)
    assert [(e["started_at"], e["ended_at"], e["duration_seconds"], e["attribution"],
             e["upstream_system_id"], e["upstream_system_name"]) for e in shown["events"]] == [
        ((start + timedelta(minutes=15)).isoformat(), (start + timedelta(minutes=20)).isoformat(),
         300.0, "self", None, None),
        ((start + timedelta(minutes=5)).isoformat(), (start + timedelta(minutes=15)).isoformat(),
         600.0, "upstream", "api", "Orders API")]
    assert slo(url, "api-availability", "--limit", "1", "--json") == 0
    assert [e["duration_seconds"] for e in json.loads(capsys.readouterr().out)["events"]] == [
        900.0]


def test_slo_of_an_unknown_objective_is_an_error_naming_the_known_ones(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "slo.yaml"
    config.write_text(CONFIG.split("objectives:")[0], encoding="utf-8")
    assert run(["apply", "-f", str(config), "--database-url", url, *SLO]) == 0
    capsys.readouterr()
    assert slo(url, "api-availability") == 2
    assert capsys.readouterr().err == (
        "error: unknown objective 'api-availability': there are no objectives yet (declare "
        "them under 'objectives' in a config file, then `reactive apply -f` it)\n")
    assert slo(url) == 0
    assert capsys.readouterr().out == "no objectives\n"

    config.write_text(CONFIG, encoding="utf-8")
    assert run(["apply", "-f", str(config), "--database-url", url, *SLO]) == 0
    capsys.readouterr()
    assert slo(url, "api") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("error: unknown objective 'api': expected one of api-availability, "
                            "web-availability\n")
