"""`reactive status`: each system's health, from checks that `reactive serve` ran against
a real HTTP server on 127.0.0.1 (one path answers 500, another 200); its exit status by
the worst health, and when each system's checks last ran."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from cli_support import Cli, cli_env, health_env, sql, table, wait_until

from health_plugin import CheckOutcome, HealthStatus, health_service
from reactive_core import Host
from reactive_core._cli.main import run

CONFIG = """\
systems:
  - id: api
    name: Orders API
  - id: web
    name: Web shop
  - id: db
    name: Orders database
checks:
  - id: api-http
    strategy: http
    config: {{url: "{url}fail", timeout_seconds: 2}}
    interval_seconds: 0.1
  - id: web-http
    strategy: http
    config: {{url: "{url}ok", timeout_seconds: 2}}
    interval_seconds: 0.1
associations:
  - system: api
    check: api-http
    thresholds: {{degraded_min_failures: 2, unhealthy_min_failures: 3}}
  - system: web
    check: web-http
  - system: db
    check: web-http
    enabled: false
"""


def _status_transitions(url: str, system_id: str) -> list[tuple[str | None, str]]:
    rows = sql(url, "SELECT from_value, to_value FROM entity_transitions WHERE kind = 'health' "
                    "AND entity_id = :id AND field = 'status' ORDER BY id", id=system_id)
    return [(r.from_value, r.to_value) for r in rows]


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory, target: str) -> Iterator[Cli]:
    """Systems, checks and associations applied, then `reactive serve` ran the checks
    until api turned unhealthy (and web had runs), then stopped."""
    folder = tmp_path_factory.mktemp("status")
    cli = Cli(f"sqlite:///{folder}/reactive.db", folder, health_env())
    config = folder / "health.yaml"
    config.write_text(CONFIG.format(url=target), encoding="utf-8")
    applied = cli.ok("apply", "-f", str(config))
    assert "associated check api-http with system api (enabled)" in applied
    assert "associated check web-http with system db (disabled)" in applied
    # Declared, not run yet (apply runs no checks): no runs count as healthy.
    assert [(r["system_id"], r["status"], r["healthy_checks"]) for r in cli.json("status")] == [
        ("api", "healthy", 1), ("web", "healthy", 1)]

    server = cli.serve("serve", "--poll-interval", "0.1")
    try:
        wait_until(lambda: ("degraded", "unhealthy") in _status_transitions(cli.url, "api")
                   and sql(cli.url, "SELECT 1 FROM health_check_runs WHERE system_id = 'web'"),
                   timeout=20, what="serve's checks to turn api unhealthy and to run web's")
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.logs()
    yield cli
    cli.kill_all()


def _transition_time(url: str, system_id: str, to_value: str) -> datetime:
    (row,) = sql(url, "SELECT transitioned_at FROM entity_transitions WHERE kind = 'health' "
                      "AND entity_id = :id AND field = 'status' AND to_value = :to",
                 id=system_id, to=to_value)
    value = row.transitioned_at
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _newest_run_time(url: str, system_id: str) -> datetime:
    (row,) = sql(url, "SELECT max(timestamp) AS newest FROM health_check_runs "
                      "WHERE system_id = :id", id=system_id)
    value = row.newest
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def test_status_table_shows_each_checked_system_with_name_status_checks_since_and_last_run(
    checked: Cli,
) -> None:
    started = datetime.now(UTC)
    result = checked("status")

    assert result.returncode == 2, result.stderr  # api is unhealthy: critical
    rows = table(result.stdout)
    assert rows[0] == ["SYSTEM", "NAME", "STATUS", "HEALTHY", "SINCE (UTC)", "LAST RUN (UTC)"]
    # db's only association is disabled, so db has no health and is not listed.
    assert [r[:4] for r in rows[1:]] == [["api", "Orders API", "unhealthy", "0/1"],
                                         ["web", "Web shop", "healthy", "1/1"]]
    unhealthy_at = _transition_time(checked.url, "api", "unhealthy")
    since = re.fullmatch(r"(\S+ \S+) \(for (?:(\d+)m )?(\d+)s\)", rows[1][4])
    assert since is not None, rows[1][4]
    assert since.group(1) == unhealthy_at.strftime("%Y-%m-%d %H:%M:%S")
    shown = int(since.group(2) or 0) * 60 + int(since.group(3))
    assert shown <= (started - unhealthy_at).total_seconds() + 60
    assert shown >= int((started - unhealthy_at).total_seconds()) - 1
    for row, system_id in ((rows[1], "api"), (rows[2], "web")):
        last_run = re.fullmatch(r"(\S+ \S+) \((?:\d+m )?\d+s ago\)", row[5])
        assert last_run is not None, row[5]
        assert last_run.group(1) == _newest_run_time(checked.url, system_id).strftime(
            "%Y-%m-%d %H:%M:%S")


def test_status_json_lists_the_same_rows_with_iso_utc_times(checked: Cli) -> None:
    result = checked("status", "--json")

    assert result.returncode == 2, result.stderr
    rows = json.loads(result.stdout)
    assert [{k: v for k, v in r.items() if k not in ("since", "last_run_at")}
            for r in rows] == [
        {"system_id": "api", "name": "Orders API", "status": "unhealthy",
         "healthy_checks": 0, "total_checks": 1},
        {"system_id": "web", "name": "Web shop", "status": "healthy",
         "healthy_checks": 1, "total_checks": 1},
    ]
    for row in rows:
        assert row["since"].endswith("+00:00") and row["last_run_at"].endswith("+00:00")
        assert datetime.fromisoformat(row["last_run_at"]) == _newest_run_time(
            checked.url, row["system_id"])
    assert datetime.fromisoformat(rows[0]["since"]) == _transition_time(
        checked.url, "api", "unhealthy")
    # The thresholds declared for api: degraded at the 2nd failure, unhealthy at the 3rd.
    assert _status_transitions(checked.url, "api") == [
        (None, "healthy"), ("healthy", "degraded"), ("degraded", "unhealthy")]
    assert _status_transitions(checked.url, "web") == [(None, "healthy")]


def test_status_without_the_health_plugin_is_a_clear_error(checked: Cli) -> None:
    disabled = Cli(checked.url, checked.cwd, health_env(REACTIVE_DISABLE_PLUGINS="health"))
    catalog_only = Cli(checked.url, checked.cwd, cli_env())

    for runner in (disabled, catalog_only):
        result = runner("status")
        assert result.returncode == 2
        assert result.stdout == ""
        assert "invalid choice: 'status'" in result.stderr
        assert "the health plugin adds `status`" in result.stderr
        assert "REACTIVE_DISABLE_PLUGINS" in result.stderr and "Traceback" not in result.stderr


def test_status_without_checks_says_so(health_cli: Cli) -> None:
    config = health_cli.cwd / "systems.yaml"
    config.write_text("systems:\n  - {id: api, name: Orders API}\n", encoding="utf-8")
    health_cli.ok("apply", "-f", str(config))

    text, as_json = health_cli.many(("status",), ("status", "--json"))

    assert (text.returncode, text.stdout) == (0, "no systems with health checks\n")
    assert (as_json.returncode, json.loads(as_json.stdout)) == (0, [])


# -- exit statuses and a stale view, in-process ----------------------------------------

TWO_SYSTEMS = """\
systems:
  - {id: api, name: Orders API}
  - {id: web, name: Web shop}
checks:
  - {id: api-tcp, strategy: tcp, config: {host: 127.0.0.1, port: 9}}
  - {id: web-tcp, strategy: tcp, config: {host: 127.0.0.1, port: 9}}
associations:
  - {system: api, check: api-tcp}
  - {system: web, check: web-tcp}
"""


def _record(url: str, check_id: str, status: str, count: int = 1,
            at: datetime | None = None) -> None:
    """Record `count` runs of a check as `status` through the health plugin's service."""

    async def main() -> None:
        async with Host(database_url=url, config={"workers": False}) as host:
            service = health_service(host)
            for _ in range(count):
                await service.record_run(check_id, CheckOutcome(status=HealthStatus(status)),
                                         timestamp=at)

    anyio.run(main)


def test_status_exits_like_a_nagios_plugin_0_healthy_1_degraded_2_unhealthy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REACTIVE_PLUGINS", "catalog,health")
    url = f"sqlite:///{tmp_path}/reactive.db"
    config = tmp_path / "health.yaml"
    config.write_text(TWO_SYSTEMS, encoding="utf-8")
    assert run(["apply", "-f", str(config), "--database-url", url]) == 0
    capsys.readouterr()

    def status() -> tuple[int, list[tuple[str, str]]]:
        code = run(["status", "--json", "--database-url", url])
        return code, [(r["system_id"], r["status"]) for r in json.loads(capsys.readouterr().out)]

    assert status() == (0, [("api", "healthy"), ("web", "healthy")])
    _record(url, "api-tcp", "unhealthy", count=2)  # the default thresholds: degraded at 2
    assert status() == (1, [("api", "degraded"), ("web", "healthy")])
    _record(url, "web-tcp", "unhealthy", count=5)  # … and unhealthy at 5
    assert status() == (2, [("api", "degraded"), ("web", "unhealthy")])
    assert run(["status", "--database-url", url]) == 2  # the table too
    assert "web     Web shop    unhealthy" in capsys.readouterr().out
    _record(url, "web-tcp", "healthy")
    _record(url, "api-tcp", "healthy")
    assert status() == (0, [("api", "healthy"), ("web", "healthy")])


def test_status_shows_how_long_ago_the_checks_last_ran_so_a_stale_view_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REACTIVE_PLUGINS", "catalog,health")
    url = f"sqlite:///{tmp_path}/reactive.db"
    config = tmp_path / "health.yaml"
    config.write_text(TWO_SYSTEMS, encoding="utf-8")
    assert run(["apply", "-f", str(config), "--database-url", url]) == 0
    three_hours_ago = datetime.now(UTC) - timedelta(hours=3, seconds=1)
    _record(url, "api-tcp", "healthy", at=three_hours_ago)
    capsys.readouterr()

    assert run(["status", "--database-url", url]) == 0
    rows = table(capsys.readouterr().out)
    assert rows[0][-1] == "LAST RUN (UTC)"
    assert rows[1][0] == "api" and rows[1][-1] == (
        f"{three_hours_ago:%Y-%m-%d %H:%M:%S} (3h 00m ago)")
    assert rows[2][0] == "web" and rows[2][-1] == "-"  # never ran: nothing runs its checks
    assert run(["status", "--json", "--database-url", url]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert [r["last_run_at"] for r in as_json] == [three_hours_ago.isoformat(), None]
