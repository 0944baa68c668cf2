"""`reactive status`: each system's health, from checks that `reactive serve` ran against
a real HTTP server on 127.0.0.1 (one path answers 500, another 200)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cli_support import Cli, cli_env, health_env, sql, table, wait_until

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


class _Handler(BaseHTTPRequestHandler):
    """`/ok` answers 200, anything else 500."""

    def do_GET(self) -> None:
        ok = self.path == "/ok"
        body = b"ok" if ok else b"broken"
        self.send_response(200 if ok else 500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 in a thread; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


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


def test_status_table_shows_each_checked_system_with_name_status_checks_and_since(
    checked: Cli,
) -> None:
    started = datetime.now(UTC)
    rows = table(checked.ok("status"))

    assert rows[0] == ["SYSTEM", "NAME", "STATUS", "HEALTHY", "SINCE"]
    # db's only association is disabled, so db has no health and is not listed.
    assert [r[:4] for r in rows[1:]] == [["api", "Orders API", "unhealthy", "0/1"],
                                         ["web", "Web shop", "healthy", "1/1"]]
    unhealthy_at = _transition_time(checked.url, "api", "unhealthy")
    since = re.fullmatch(r"(\S+ \S+) UTC \(for (?:(\d+)m )?(\d+)s\)", rows[1][4])
    assert since is not None, rows[1][4]
    assert since.group(1) == unhealthy_at.strftime("%Y-%m-%d %H:%M:%S")
    shown = int(since.group(2) or 0) * 60 + int(since.group(3))
    assert shown <= (started - unhealthy_at).total_seconds() + 60
    assert shown >= int((started - unhealthy_at).total_seconds()) - 1


def test_status_json_lists_the_same_rows_with_iso_utc_since(checked: Cli) -> None:
    rows = checked.json("status")

    assert [{k: v for k, v in r.items() if k != "since"} for r in rows] == [
        {"system_id": "api", "name": "Orders API", "status": "unhealthy",
         "healthy_checks": 0, "total_checks": 1},
        {"system_id": "web", "name": "Web shop", "status": "healthy",
         "healthy_checks": 1, "total_checks": 1},
    ]
    since = datetime.fromisoformat(rows[0]["since"])
    assert since.utcoffset() is not None and since.utcoffset().total_seconds() == 0
    assert since == _transition_time(checked.url, "api", "unhealthy")
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
