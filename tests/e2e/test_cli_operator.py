"""The operator's command line: `systems`, `checks`, `get`, `changes --follow`,
`runs --system`, `apply --dry-run / --prune / -f -`, and what `serve` logs
(`--log-format json`: health changes, the periodic summary).

One database for the module: the config applied, `reactive changes --follow` started,
then `reactive serve` runs the checks against a real HTTP server on 127.0.0.1 (one path
answers 500, the other 200) until api is unhealthy; the reading commands run on what it
recorded. The `apply` tests use databases of their own.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from cli_support import Cli, cli_env, sql, table, wait_until

from catalog_plugin import CatalogPlugin
from health_plugin import HealthPlugin
from reactive_core import Actor, EntityChange, Host
from slo_plugin import SloPlugin

PLUGINS = "catalog,health,slo,automation"
ENV = {"REACTIVE_PLUGINS": PLUGINS,
       "REACTIVE_PLUGIN_SETTINGS": '{"health": {"min_interval_seconds": 0.05}}'}

CONFIG = """\
systems:
  - id: api
    name: Orders API
    tags: [tier-1]
  - id: db
    name: Orders database
  - id: web
    name: Web shop
dependencies:
  - source: api
    target: db
    impact: critical
  - source: web
    target: api
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
  - system: web
    check: web-http
objectives:
  - id: api-availability
    system: api
    target: 99.5
    window_days: 30
maintenance:
  - id: api-upgrade
    system: api
    start: 2030-01-01T00:00:00Z
    end: 2030-01-01T01:00:00Z
rules:
  - id: api-changed
    triggers:
      - entity: "health:api"
    actions:
      - log: "api is {{{{ trigger.newStatus }}}}"
"""


@dataclass
class Served:
    """The module's database after `serve` ran, with what `serve` and `--follow` printed."""

    cli: Cli
    logs: str
    followed: str
    follow_status: int
    follow_stderr: str


def _health_statuses(url: str, system_id: str) -> list[str]:
    rows = sql(url, "SELECT to_value FROM entity_transitions WHERE kind = 'health' "
                    "AND entity_id = :id AND field = 'status' ORDER BY id", id=system_id)
    return [r.to_value for r in rows]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, target: str) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("operator")
    cli = Cli(f"sqlite:///{folder}/reactive.db", folder, cli_env(**ENV))
    config = folder / "config.yaml"
    config.write_text(CONFIG.format(url=target), encoding="utf-8")
    cli.ok("apply", "-f", str(config))
    follow = subprocess.Popen(
        cli.command("changes", "--follow", "--kind", "health", "--json", "--limit", "1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
        env=cli.env, cwd=cli.cwd)
    server = cli.serve("serve", "--no-http", "--poll-interval", "0.1", "--log-format", "json",
                       "--summary-seconds", "0.3")
    try:
        wait_until(lambda: "unhealthy" in _health_statuses(cli.url, "api")
                   and '"summary: ' in server.logs(),
                   timeout=30, what="serve to turn api unhealthy and to log a summary")
    finally:
        assert server.stop() == 0
    # --follow printed the health changes serve made; then SIGINT ends it with status 0.
    stopped_follow = False
    try:
        lines: list[str] = []
        assert follow.stdout is not None
        while not any('"unhealthy"' in line and '"entity_id": "api"' in line for line in lines):
            line = follow.stdout.readline()
            assert line, f"--follow ended early: {follow.wait()} {follow.stderr}"
            lines.append(line)
        follow.send_signal(signal.SIGINT)
        rest, err = follow.communicate(timeout=15)
        stopped_follow = True
    finally:
        if not stopped_follow:
            follow.kill()
            follow.communicate()
    yield Served(cli=cli, logs=server.logs(), followed="".join(lines) + rest,
                 follow_status=follow.returncode, follow_stderr=err)
    cli.kill_all()


# -- serve's logs ---------------------------------------------------------------------

def test_serve_json_logs_are_one_object_per_line_with_a_health_change_and_a_summary(
    served: Served,
) -> None:
    records = [json.loads(line) for line in served.logs.splitlines() if line.strip()]

    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    changes = [r for r in records if r["logger"] == "health_plugin.health"]
    assert changes[0]["message"] == "health api: healthy -> degraded (api-http: 500)"
    assert (changes[0]["level"], changes[0]["system_id"], changes[0]["from_status"],
            changes[0]["to_status"]) == ("INFO", "api", "healthy", "degraded")
    assert any(r["message"] == "health api: degraded -> unhealthy (api-http: 500)"
               for r in changes)
    summary = next(r for r in records if r["message"].startswith("summary: "))
    assert summary["level"] == "INFO"
    assert set(summary) >= {"systems", "objectives_breaching", "queue_pending",
                            "dead_letters", "rule_runs"}
    assert sum(summary["systems"].values()) == 2  # api and web have checks
    assert "queue pending: " in summary["message"]
    assert any(r["message"].startswith("rule api-changed run ") for r in records)


def _log_handlers(host: Host, kind: str) -> list[Any]:
    host.load_plugins()
    return [s.handler for s in host.registry.subscriptions(kind)
            if s.name.endswith("_logger.<locals>.log")]


def test_the_plugins_log_burn_alert_changes_only_on_a_host_with_workers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    def host(workers: bool) -> Host:
        return Host(database_url=f"sqlite:///{tmp_path}/reactive.db", entry_points=False,
                    plugins=[CatalogPlugin(), HealthPlugin(), SloPlugin()],
                    config={"workers": workers})

    assert _log_handlers(host(False), "slo") == []
    assert _log_handlers(host(False), "health") == []
    (log,) = _log_handlers(host(True), "slo")
    state = {"objectiveId": "api-availability", "budgetRemainingPercent": 12.5,
             "burnAlert": "none"}
    change = EntityChange(
        change_id="c1", seq=7, kind="slo", id="api-availability", prev=state,
        next={**state, "burnAlert": "fast_burn"}, delta={"burnAlert": "fast_burn"},
        changed_fields=("burnAlert",), actor=Actor("slo", "refresh"))

    with caplog.at_level(logging.INFO, logger="slo_plugin"):
        anyio.run(log, change)
        anyio.run(log, EntityChange(  # the alert did not change: nothing logged
            change_id="c2", seq=8, kind="slo", id="api-availability", prev=change.next,
            next={**state, "burnAlert": "fast_burn", "budgetRemainingPercent": 11.0},
            delta={"budgetRemainingPercent": 11.0}, changed_fields=("budgetRemainingPercent",)))

    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "slo api-availability: burn alert none -> fast_burn, budget 12.5% left")]
    assert caplog.records[0].to_alert == "fast_burn"  # type: ignore[attr-defined]


# -- changes --follow -----------------------------------------------------------------

def test_changes_follow_prints_each_new_change_as_a_json_line_and_exits_0_on_sigint(
    served: Served,
) -> None:
    rows = [json.loads(line) for line in served.followed.splitlines()]

    assert served.follow_status == 0, served.follow_stderr
    assert "Traceback" not in served.follow_stderr
    assert {r["kind"] for r in rows} == {"health"}
    seqs = [r["seq"] for r in rows]
    assert seqs == sorted(set(seqs))  # each once, in order
    api = [r["next"]["status"] for r in rows if r["entity_id"] == "api" and r["next"]]
    assert api[-2:] == ["degraded", "unhealthy"]


# -- systems, checks, runs --system, get ------------------------------------------------

def test_systems_lists_each_system_with_what_it_depends_on(served: Served) -> None:
    out, as_json = (r.stdout for r in served.cli.many(("systems",), ("systems", "--json")))

    assert table(out) == [
        ["SYSTEM", "NAME", "TAGS", "DEPENDS ON"],
        ["api", "Orders API", "tier-1", "db (critical)"],
        ["db", "Orders database", "-", "-"],
        ["web", "Web shop", "-", "api (degraded)"],
    ]
    assert json.loads(as_json)[0] == {
        "id": "api", "name": "Orders API", "tags": ["tier-1"], "description": None,
        "dependencies": [{"system_id": "db", "kind": "critical"}]}


def test_checks_lists_each_check_with_its_systems_and_last_run(served: Served) -> None:
    out, as_json = (r.stdout for r in served.cli.many(("checks",), ("checks", "--json")))

    rows = {r["id"]: r for r in json.loads(as_json)}
    assert {k: rows["api-http"][k] for k in ("strategy", "interval_seconds", "paused",
                                             "systems")} == {
        "strategy": "http", "interval_seconds": 0.1, "paused": False, "systems": ["api"]}
    last = rows["api-http"]["last_run"]
    assert (last["status"], last["status_code"]) == ("unhealthy", 500)
    assert last["at"].endswith("+00:00") and last["latency_ms"] >= 0
    assert rows["web-http"]["last_run"]["status"] == "healthy"
    printed = table(out)
    assert printed[0] == ["CHECK", "STRATEGY", "EVERY", "PAUSED", "SYSTEMS", "LAST RUN",
                          "LATENCY", "AT (UTC)"]
    assert printed[1][:6] == ["api-http", "http", "0.1s", "no", "api", "unhealthy (500)"]


def test_runs_of_a_system_say_why_it_is_unhealthy_newest_first(served: Served) -> None:
    cli = served.cli
    out, as_json, web = (r.stdout for r in cli.many(
        ("runs", "--system", "api", "--limit", "3"),
        ("runs", "--system", "api", "--check", "api-http", "--json"),
        ("runs", "--system", "web", "--check", "api-http", "--json")))

    rows = json.loads(as_json)
    assert {(r["check_id"], r["status_code"]) for r in rows} == {("api-http", 500)}
    assert rows[0]["error"] == "status 500, expected 2xx" or "500" in rows[0]["error"]
    assert [r["at"] for r in rows] == sorted((r["at"] for r in rows), reverse=True)
    printed = table(out)
    assert printed[0] == ["CHECK", "STATUS", "CODE", "ERROR", "LATENCY", "AT (UTC)"]
    assert len(printed) == 4 and printed[1][:3] == ["api-http", "unhealthy", "500"]
    assert json.loads(web) == []


def test_runs_of_a_system_without_a_plugin_that_records_runs_is_an_error(
    served: Served,
) -> None:
    cli = served.cli
    result = subprocess.run(
        cli.command("runs", "--system", "api"), check=False, capture_output=True, text=True,
        env=cli_env(REACTIVE_PLUGINS="catalog,automation"), cwd=cli.cwd, timeout=60)

    assert result.returncode == 2
    assert "no loaded plugin records check runs" in result.stderr


def test_get_prints_an_entity_as_json_and_says_clearly_when_there_is_none(
    served: Served,
) -> None:
    found, missing, unknown = served.cli.many(
        ("get", "health", "api"), ("get", "catalog-system", "nope"), ("get", "nope", "x"))

    assert json.loads(found.stdout) == {
        "kind": "health", "id": "api",
        "state": {"status": "unhealthy", "healthyChecks": 0, "totalChecks": 1}}
    assert missing.returncode == 1
    assert "no catalog-system entity with id 'nope'" in missing.stderr
    assert unknown.returncode == 2
    assert "unknown entity kind 'nope'" in unknown.stderr
    assert "catalog-system, health" in unknown.stderr


# -- apply --dry-run, --prune, -f -, several files ------------------------------------------

TRIMMED = """\
systems:
  - id: api
    name: Orders API
    tags: [tier-1]
  - id: web
    name: Web shop
dependencies:
  - source: web
    target: api
checks:
  - id: web-http
    strategy: http
    config: {{url: "{url}ok", timeout_seconds: 2}}
    interval_seconds: 0.1
associations:
  - system: web
    check: web-http
"""


def _state(url: str) -> dict[str, Any]:
    """What the database holds, as the tests compare it."""
    return {
        "seq": sql(url, "SELECT max(seq) AS s FROM entity_changes")[0].s,
        "systems": [r.entity_id for r in sql(
            url, "SELECT entity_id FROM entity_state WHERE kind = 'catalog-system' "
                 "ORDER BY entity_id")],
        "edges": [tuple(r) for r in sql(
            url, "SELECT source_system_id, target_system_id FROM catalog_dependencies "
                 "ORDER BY 1, 2")],
        "checks": [r.id for r in sql(url, "SELECT id FROM health_check_configurations "
                                          "ORDER BY id")],
        "associations": [tuple(r) for r in sql(
            url, "SELECT system_id, configuration_id FROM health_system_associations "
                 "ORDER BY 1, 2")],
        "objectives": [r.id for r in sql(url, "SELECT id FROM slo_objectives")],
        "windows": [r.id for r in sql(url, "SELECT id FROM slo_maintenance_windows")],
        "rules": [r.entity_id for r in sql(
            url, "SELECT entity_id FROM entity_state WHERE kind = 'automation-rule'")],
    }


@pytest.fixture
def applied(tmp_path: Path) -> Iterator[Cli]:
    """A database of its own with the module's config applied."""
    cli = Cli(f"sqlite:///{tmp_path}/reactive.db", tmp_path, cli_env(**ENV))
    (tmp_path / "config.yaml").write_text(CONFIG.format(url="http://127.0.0.1:9/"),
                                          encoding="utf-8")
    (tmp_path / "trimmed.yaml").write_text(TRIMMED.format(url="http://127.0.0.1:9/"),
                                           encoding="utf-8")
    cli.ok("apply", "-f", "config.yaml")
    yield cli
    cli.kill_all()


REMOVED = [
    "rule api-changed: removed",
    "removed objective api-availability",
    "removed maintenance window api-upgrade (api)",
    "removed association api <- api-http",
    "removed check api-http",
    "removed dependency api -> db",
    "removed system db",
]


def test_apply_dry_run_changes_nothing_and_prints_the_diff(applied: Cli) -> None:
    before = _state(applied.url)
    fresh = applied.cwd / "fresh.db"

    pruning, creating = applied.many(
        ("apply", "-f", "trimmed.yaml", "--prune", "--dry-run"),
        ("apply", "-f", "config.yaml", "--dry-run", "--database-url", f"sqlite:///{fresh}"))

    assert pruning.returncode == 0, pruning.stderr
    assert pruning.stdout.splitlines() == [f"would: {line}" for line in REMOVED]
    assert _state(applied.url) == before
    assert creating.returncode == 0, creating.stderr
    assert creating.stdout.splitlines()[:3] == [
        "would: created system api", "would: created system db", "would: created system web"]
    assert not fresh.exists()  # a SQLite file the dry run made is not left behind


def test_apply_prune_removes_exactly_what_is_no_longer_declared(applied: Cli) -> None:
    before = _state(applied.url)

    out = applied.ok("apply", "-f", "trimmed.yaml", "--prune")
    again = applied.ok("apply", "-f", "trimmed.yaml", "--prune")

    assert out.splitlines() == REMOVED
    assert again == "no changes\n"
    after = _state(applied.url)
    assert {k: v for k, v in after.items() if k != "seq"} == {
        "systems": ["api", "web"], "edges": [("web", "api")], "checks": ["web-http"],
        "associations": [("web", "web-http")], "objectives": [], "windows": [], "rules": []}
    assert before["systems"] == ["api", "db", "web"]
    changes = applied.json("changes", "--after", str(before["seq"]))
    assert {c["reason"] for c in changes if c["kind"] != "automation-rule"} == {
        "no longer declared in a config file"}


def test_apply_reads_stdin_and_several_files_in_one_transaction_naming_file_and_line(
    applied: Cli,
) -> None:
    (applied.cwd / "more.yaml").write_text(
        "systems:\n  - id: extra\n    name: Extra\n", encoding="utf-8")
    (applied.cwd / "bad.yaml").write_text(
        "systems:\n  - id: other\n    name: Other\n  - id: broken\n    nam: typo\n",
        encoding="utf-8")
    before = _state(applied.url)

    def apply(*files: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            applied.command("apply", *(arg for name in files for arg in ("-f", name))),
            check=False, input="systems:\n  - id: piped\n    name: Piped\n",
            capture_output=True,
            text=True, env=applied.env, cwd=applied.cwd, timeout=60)

    refused = apply("more.yaml", "-", "bad.yaml")

    assert refused.returncode == 2
    assert "bad.yaml:5: systems[1].nam: unknown field" in refused.stderr
    assert _state(applied.url) == before  # nothing of more.yaml or stdin either

    accepted = apply("more.yaml", "-")

    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.splitlines() == ["created system extra", "created system piped"]
