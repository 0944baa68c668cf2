"""The API against a real `serve` process on 127.0.0.1: every resource read; pause,
resume, run-now, apply (valid and invalid, with line numbers) and replay — with and
without a token (401/403); a non-loopback bind without tokens refused."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import E2E_DIR, Cli, Server, wait_until

HTTP_LINE = re.compile(r"HTTP API and status page on http://(\S+):(\d+)")
PLUGINS = ("--plugin", "e2e_plugins:items", "--plugin", "e2e_plugins:failing")


def api_env() -> dict[str, str]:
    """No REACTIVE_* from outside (every installed plugin loads), the test plugins
    importable, no proxy for 127.0.0.1."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTIVE_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(E2E_DIR), env.get("PYTHONPATH")) if p)
    env["PYTHONIOENCODING"] = "utf-8"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


class Target:
    """A real HTTP server on 127.0.0.1 that the `http` check probes: 200 `ok`."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def config_yaml(port: int) -> str:
    return f"""\
systems:
  - id: api
    name: Orders API
  - id: db
    name: Orders database
dependencies:
  - source: api
    target: db
    impact: critical
checks:
  - id: api-http
    name: Orders API health endpoint
    strategy: http
    interval_seconds: 1
    config:
      url: http://probe:probe-secret@127.0.0.1:{port}/health
      expected_status: [200]
      headers:
        Authorization: Bearer header-secret
associations:
  - system: api
    check: api-http
objectives:
  - id: api-availability
    system: api
    target: 99.9
    window_days: 30
rules:
  - id: heartbeat
    triggers:
      - interval: {{seconds: 1}}
    actions:
      - log: "heartbeat {{{{ run.id }}}}"
      - webhook:
          url: "http://hook-user:hook-secret@127.0.0.1:9/hook"
          retries: 0
"""


SECRETS = ("probe-secret", "header-secret", "hook-secret")


def http_address(server: Server) -> tuple[str, int]:
    """Where the server's log says the API listens."""
    found = wait_until(lambda: HTTP_LINE.search(server.logs()), timeout=20,
                       what="the HTTP log line")
    return found.group(1), int(found.group(2))


def token_of(cli: Cli, *args: str) -> str:
    token: str = cli.json("token", "create", *args)["token"]
    return token


@dataclass
class Api:
    client: httpx.Client
    admin: dict[str, str]
    viewer: dict[str, str]
    cli: Cli


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One `reactive serve --http 127.0.0.1:0` with systems, checks, objectives, rules,
    a write token and a read-only one."""
    tmp = tmp_path_factory.mktemp("api")
    target = Target()
    cli = Cli(f"sqlite:///{tmp}/db", tmp, api_env())
    try:
        (tmp / "config.yaml").write_text(config_yaml(target.port), encoding="utf-8")
        cli.ok("apply", "-f", "config.yaml")
        admin, viewer = (json.loads(r.stdout)["token"] for r in cli.many(
            ("token", "create", "admin", "--json"),
            ("token", "create", "viewer", "--read-only", "--json")))
        server = cli.serve(*PLUGINS, "serve", "--http", "127.0.0.1:0")
        address, port = http_address(server)
        assert address == "127.0.0.1"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False,
                          timeout=15) as client:
            yield Api(client, {"Authorization": f"Bearer {admin}"},
                      {"Authorization": f"Bearer {viewer}"}, cli)
        assert server.stop() == 0, server.logs()
    finally:
        cli.kill_all()
        target.close()


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (response.request.url, response.text)
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.request.url, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status and body["detail"]
    return body


def no_secrets(response: httpx.Response) -> None:
    for secret in SECRETS:
        assert secret not in response.text, (response.request.url, secret)


# -- reads ----------------------------------------------------------------------------

def test_readiness_metrics_openapi_and_no_cors_by_default(api: Api) -> None:
    c = api.client
    ready = ok(c.get("/healthz"))
    assert ready["status"] == "ok" and ready["problems"] == [] and ready["instance"]
    metrics = c.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith(
        "text/plain")
    schema = ok(c.get("/openapi.json"))
    for path in ("/api/changes", "/api/transitions", "/api/deliveries", "/api/apply",
                 "/api/rules", "/api/runs", "/api/runs/{run_id}", "/api/events",
                 "/api/entities/{kind}", "/api/deliveries/{delivery_id}/replay"):
        assert path in schema["paths"], path
    assert "ChangesPage" in schema["components"]["schemas"]
    cors = c.get("/api/changes", headers={"Origin": "https://elsewhere.example"})
    assert cors.status_code == 200
    assert not any(h.lower().startswith("access-control-") for h in cors.headers)


def test_entities_changes_and_transitions_read_and_page(api: Api) -> None:
    c = api.client
    systems = ok(c.get("/api/entities/catalog-system"))
    assert [s["id"] for s in systems["items"]] == ["api", "db"]
    assert systems["next_after"] is None
    first = ok(c.get("/api/entities/catalog-system", params={"limit": 1}))
    assert [s["id"] for s in first["items"]] == ["api"] and first["next_after"] == "api"
    second = ok(c.get("/api/entities/catalog-system",
                      params={"limit": 1, "after": first["next_after"]}))
    assert [s["id"] for s in second["items"]] == ["db"]
    one = ok(c.get("/api/entities/catalog-system/api"))
    assert one["kind"] == "catalog-system" and one["id"] == "api"
    assert one["state"]["name"] == "Orders API"
    assert_problem(c.get("/api/entities/catalog-system/nope"), 404)
    assert_problem(c.get("/api/entities/no-such-kind"), 404)

    page = ok(c.get("/api/changes", params={"after": 0, "limit": 2}))
    assert [ch["seq"] for ch in page["items"]] == sorted(ch["seq"] for ch in page["items"])
    assert len(page["items"]) == 2 and page["next_after"] == page["items"][-1]["seq"]
    change = page["items"][0]
    assert set(change) == {"seq", "change_id", "kind", "entity_id", "prev", "next", "delta",
                           "changed_fields", "actor", "occurred_at", "reason"}
    assert set(change["actor"]) == {"type", "id"}
    following = ok(c.get("/api/changes", params={"after": page["next_after"], "limit": 2}))
    assert following["items"][0]["seq"] > page["items"][-1]["seq"]
    catalog = ok(c.get("/api/changes", params={"kind": "catalog-system", "after": 0}))
    assert {ch["entity_id"] for ch in catalog["items"]} == {"api", "db"}
    newest = ok(c.get("/api/changes", params={"limit": 1}))
    assert len(newest["items"]) == 1

    rows = ok(c.get("/api/transitions", params={"kind": "catalog-system", "limit": 1000}))
    assert rows["items"] and set(rows["items"][0]) == {
        "id", "change_seq", "kind", "entity_id", "field", "from_value", "to_value",
        "transitioned_at"}
    paged = ok(c.get("/api/transitions", params={"after": 0, "limit": 1}))
    assert len(paged["items"]) == 1 and paged["next_after"] == paged["items"][0]["id"]


def test_a_bad_limit_is_a_problem_naming_the_field(api: Api) -> None:
    for path in ("/api/changes", "/api/transitions", "/api/deliveries", "/api/runs",
                 "/api/entities/catalog-system"):
        for limit in ("0", "1001", "many"):
            body = assert_problem(api.client.get(path, params={"limit": limit}), 422)
            assert "limit" in body["detail"], (path, body)


def test_rules_and_runs_read_with_credentials_redacted(api: Api) -> None:
    c = api.client
    rules = c.get("/api/rules")
    body = ok(rules)
    no_secrets(rules)
    (rule,) = body["rules"]
    assert rule["rule_id"] == "heartbeat" and rule["triggers"].startswith("interval")
    webhook = rule["definition"]["actions"][1]["webhook"]
    assert webhook["url"] == "http://***@127.0.0.1:9/hook"
    assert body["load_errors"] == [] and isinstance(body["holds"], list)

    runs = wait_until(lambda: ok(c.get("/api/runs", params={"rule": "heartbeat"}))["items"],
                      timeout=30, what="a run of the heartbeat rule")
    assert runs[0]["rule_id"] == "heartbeat" and runs[0]["trigger"] == "interval"
    run = c.get(f"/api/runs/{runs[0]['run_id']}")
    no_secrets(run)
    assert ok(run)["rule_id"] == "heartbeat" and isinstance(ok(run)["trace"], list)
    assert_problem(c.get("/api/runs/999999"), 404)


def test_the_event_stream_replays_after_a_seq(api: Api) -> None:
    c = api.client
    changes = ok(c.get("/api/changes", params={"after": 0, "limit": 3}))["items"]
    with c.stream("GET", "/api/events", params={"after": changes[0]["seq"]}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events: list[dict[str, str]] = []
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line == "" and "data" in fields:
                events.append(fields)
                if len(events) == 2:
                    break
            if line == "":
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
    assert [int(e["id"]) for e in events] == [ch["seq"] for ch in changes[1:3]]
    assert all(e["event"] == "change" for e in events)
    assert json.loads(events[0]["data"]) == changes[1]


def test_plugin_resources_read_as_the_contract_says(api: Api) -> None:
    c = api.client
    systems = ok(c.get("/api/systems"))["items"]
    api_system = next(s for s in systems if s["id"] == "api")
    assert api_system["dependencies"] == [{"system_id": "db", "kind": "critical"}]
    assert {"id", "name", "tags", "description", "dependencies"} <= api_system.keys()
    assert ok(c.get("/api/systems/api"))["name"] == "Orders API"
    assert_problem(c.get("/api/systems/nope"), 404)

    health = wait_until(
        lambda: [h for h in ok(c.get("/api/health"))["items"]
                 if h["system_id"] == "api" and h["status"] == "healthy"],
        timeout=30, what="system api healthy")
    assert {"system_id", "name", "status", "since", "healthy_checks", "total_checks",
            "reason"} <= health[0].keys()
    detail = ok(c.get("/api/health/api"))
    assert detail["system_id"] == "api" and detail["checks"][0]["check_id"] == "api-http"
    assert detail["runs"] and {"check_id", "status", "at", "latency_ms", "status_code",
                               "error"} <= detail["runs"][0].keys()
    checks = c.get("/api/checks")
    no_secrets(checks)
    (check,) = ok(checks)["items"]
    assert {"id", "name", "strategy", "interval_seconds", "paused", "config"} <= check.keys()
    assert check["config"]["headers"]["Authorization"] == "***"

    (objective,) = ok(c.get("/api/objectives"))["items"]
    assert objective["id"] == "api-availability" and objective["system_id"] == "api"
    assert {"budgetRemainingPercent", "burnRate", "availability", "burnAlert",
            "isBreaching"} <= objective["status"].keys()
    one = ok(c.get("/api/objectives/api-availability"))
    assert {"events", "snapshots", "streak", "achievements"} <= one.keys()
    svg = c.get("/api/objectives/api-availability/burndown.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert "<svg" in svg.text


# -- writes ---------------------------------------------------------------------------

def assert_guarded(api: Api, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """401 without a token, 403 with the read-only one; the admin's response."""
    c = api.client
    anonymous = assert_problem(c.request(method, path, **kwargs), 401)
    assert "token" in anonymous["detail"]
    forbidden = assert_problem(c.request(method, path, headers=api.viewer, **kwargs), 403)
    assert "read-only" in forbidden["detail"]
    return c.request(method, path, headers=api.admin, **kwargs)


def test_pause_resume_and_run_a_check_need_a_write_token(api: Api) -> None:
    def paused() -> bool:
        checks = ok(api.client.get("/api/checks"))["items"]
        flag: bool = next(c for c in checks if c["id"] == "api-http")["paused"]
        return flag

    assert ok(assert_guarded(api, "POST", "/api/checks/api-http/pause")) is not None
    assert paused()
    assert ok(assert_guarded(api, "POST", "/api/checks/api-http/resume")) is not None
    assert not paused()
    assert ok(assert_guarded(api, "POST", "/api/checks/api-http/run")) is not None
    assert_problem(api.client.post("/api/checks/nope/pause", headers=api.admin), 404)


def test_apply_needs_a_write_token_and_reports_bad_lines(api: Api) -> None:
    c = api.client
    yaml_type = {"Content-Type": "application/yaml"}
    document = "systems:\n  - id: cache\n    name: Cache\n"
    rehearsed = ok(c.post("/api/apply", params={"dry_run": "true"}, content=document,
                          headers={**api.admin, **yaml_type}))
    assert rehearsed["changes"] and rehearsed["dry_run"] is True
    assert_problem(c.get("/api/entities/catalog-system/cache"), 404)  # nothing stored

    applied = ok(_guarded_apply(api, document))
    assert applied["changes"] == rehearsed["changes"] and applied["dry_run"] is False
    assert ok(c.get("/api/entities/catalog-system/cache"))["state"]["name"] == "Cache"
    again = ok(c.post("/api/apply", content=document, headers={**api.admin, **yaml_type}))
    assert again["changes"] == []

    bad = "systems:\n  - id: cache\n    name: Cache\n    colour: blue\n"
    problem = assert_problem(c.post("/api/apply", content=bad,
                                    headers={**api.admin, **yaml_type}), 422)
    assert "<request>:4:" in problem["detail"]
    not_yaml = assert_problem(c.post("/api/apply", content="systems: [\n",
                                     headers={**api.admin, **yaml_type}), 422)
    assert "<request>:" in not_yaml["detail"]
    assert_problem(c.post("/api/apply", content=document,
                          headers={**api.admin, "Content-Type": "image/png"}), 415)


def _guarded_apply(api: Api, document: str) -> httpx.Response:
    c = api.client
    yaml_type = {"Content-Type": "text/plain"}
    assert_problem(c.post("/api/apply", content=document, headers=yaml_type), 401)
    assert_problem(c.post("/api/apply", content=document, headers={**api.viewer, **yaml_type}),
                   403)
    return c.post("/api/apply", content=document, headers={**api.admin, **yaml_type})


def test_a_request_larger_than_the_limit_is_refused_with_413(api: Api) -> None:
    body = "# padding\n" * 120_000  # 1.2 MB; the limit is 1 MiB
    assert_problem(api.client.post("/api/apply", content=body,
                                   headers={**api.admin, "Content-Type": "text/plain"}), 413)


def test_a_dead_letter_is_replayed_with_a_write_token(api: Api) -> None:
    c = api.client
    # The `items` section's item changes go to a work-queue handler that always fails.
    ok(c.post("/api/apply", content="items:\n  - id: doomed\n    n: 1\n",
              headers={**api.admin, "Content-Type": "application/yaml"}))
    dead = wait_until(lambda: ok(c.get("/api/deliveries", params={"dead": "true"}))["items"],
                      timeout=30, what="a dead letter")
    letter = dead[0]
    assert letter["group"] == "e2e-failing" and letter["status"] == "dead"
    assert "cannot handle e2e-item:doomed" in letter["last_error"]
    replayed = ok(assert_guarded(api, "POST", f"/api/deliveries/{letter['id']}/replay"))
    assert replayed["id"] == letter["id"] and replayed["status"] == "pending"
    assert_problem(c.post("/api/deliveries/999999/replay", headers=api.admin), 404)
    listed = ok(c.get("/api/deliveries", params={"group": "e2e-failing", "limit": 1}))
    assert len(listed["items"]) == 1


# -- binding ----------------------------------------------------------------------------

def test_a_non_loopback_bind_needs_a_token_and_then_every_read_does(tmp_path: Path) -> None:
    cli = Cli(f"sqlite:///{tmp_path}/db", tmp_path, api_env())
    try:
        refused = subprocess.run(
            cli.command("serve", "--http", "0.0.0.0:0"), capture_output=True, text=True,
            env=cli.env, cwd=tmp_path, timeout=60, check=False)
        assert refused.returncode != 0
        assert "not a loopback address, without any token" in refused.stderr
        token = token_of(cli, "ops", "--read-only")
        server = cli.serve("serve", "--http", "0.0.0.0:0")
        address, port = http_address(server)
        assert address == "0.0.0.0"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False,
                          timeout=15) as client:
            assert_problem(client.get("/api/changes"), 401)
            assert ok(client.get("/api/changes",
                                 headers={"Authorization": f"Bearer {token}"}))["items"] == []
            assert_problem(client.get("/api/changes",
                                      headers={"Authorization": "Bearer wrong"}), 401)
        assert server.stop() == 0
    finally:
        cli.kill_all()

