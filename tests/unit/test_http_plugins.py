"""The catalog, health and SLO plugins' routes, over a real HTTP server on 127.0.0.1.

One host per module (SQLite, the catalog, health, SLO, automation and http plugins, the
server on a free port) and one `httpx.AsyncClient` against it. The world:

* `shop` (named with markup, for the escaping) depends on `payments`; its http check
  was down for an hour, from 4 h to 3 h before now (recorded runs, the host's clock
  set to those moments), and its objective (90 % over one day) lost that hour;
* `payments`' http check asks the server itself for a page that does not exist (404);
* `ledger`'s http check carries secrets (an Authorization header, a URL with user and
  password) and fails (nothing listens on port 1);
* `batch` has a tcp check that the write tests pause, resume and run.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from catalog_plugin import Catalog, CatalogPlugin
from health_plugin import CheckOutcome, HealthPlugin, HealthStatus, Thresholds, health_service
from health_plugin.http import REDACTED, redact, redact_text
from reactive_core import Host
from reactive_core.automation.plugin import AutomationPlugin
from reactive_core.http.plugin import HttpPlugin
from reactive_core.http.tokens import Scope, create_in
from slo_plugin import (
    Attribution,
    DowntimeEvent,
    Objective,
    SloPlugin,
    compute_status,
    slo_service,
)
from slo_plugin.burndown import budget_points

pytestmark = pytest.mark.anyio

EAGER = Thresholds(degraded_min_failures=1, unhealthy_min_failures=1)
SHOP_NAME = 'Shop & Co <"main">'
SECRET_HEADER = "Bearer s3cret"
SECRET_URL = "http://user:pw@127.0.0.1:1/"
SVG = "{http://www.w3.org/2000/svg}"


class Clock:
    """Held at `fixed` while the past is recorded, then real time (`fixed` None)."""

    def __init__(self, fixed: datetime | None) -> None:
        self.fixed = fixed

    def __call__(self) -> datetime:
        return datetime.now(UTC) if self.fixed is None else self.fixed


@dataclass
class Api:
    host: Host
    client: httpx.AsyncClient
    write_token: str
    read_token: str


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


async def build_world(host: Host, clock: Clock, base_url: str, start: datetime) -> None:
    """The world of the module docstring; its past is recorded relative to `start`."""
    catalog = Catalog(host)
    health = health_service(host)
    for system_id, name in (("shop", SHOP_NAME), ("payments", "Payments"),
                            ("ledger", "Ledger"), ("batch", "Batch")):
        await catalog.upsert_system(system_id, name=name, tags=["core"],
                                    description=f"the {name} system")
    await catalog.add_dependency("shop", "payments", "critical")
    checks: dict[str, tuple[str, str, dict[str, Any]]] = {
        "shop": ("shop-http", "http", {"url": f"{base_url}/healthz"}),
        "payments": ("payments-http", "http", {"url": f"{base_url}/no-such-page"}),
        "ledger": ("ledger-http", "http", {"url": SECRET_URL,
                                           "headers": {"Authorization": SECRET_HEADER}}),
        "batch": ("batch-tcp", "tcp", {"host": "127.0.0.1", "port": 1}),
    }
    for system_id, (check_id, strategy, config) in checks.items():
        await health.upsert_check(check_id, strategy=strategy, config=config)
        await health.associate(system_id, check_id, thresholds=EAGER)
    await slo_service(host).upsert_objective(
        Objective(id="shop-availability", system_id="shop", target=90, window_days=1))
    for hours, outcome in (
        (-5, CheckOutcome(status=HealthStatus.HEALTHY, latency_ms=3.0,
                          result={"status_code": 200})),
        (-4, CheckOutcome(status=HealthStatus.UNHEALTHY, latency_ms=12.5,
                          result={"status_code": 503, "error": "status 503, expected 2xx"})),
        (-3, CheckOutcome(status=HealthStatus.HEALTHY, latency_ms=4.0,
                          result={"status_code": 200})),
    ):
        clock.fixed = start + timedelta(hours=hours)
        await health.record_run("shop-http", outcome, timestamp=clock())
        await host.drain()
    clock.fixed = None
    for check_id in ("payments-http", "ledger-http"):
        await health.run_check(check_id)
    await host.drain()


@pytest.fixture(scope="module")
async def api(anyio_backend: str, tmp_path_factory: pytest.TempPathFactory,
              ) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp("http-plugins")
    start = datetime.now(UTC)
    clock = Clock(start - timedelta(hours=6))
    async with Host(database_url=f"sqlite:///{folder}/reactive.db", clock=clock,
                    entry_points=False,
                    plugins=[CatalogPlugin, HealthPlugin, SloPlugin, AutomationPlugin,
                             HttpPlugin],
                    config={"poll_interval": 0.05, "retry_base_seconds": 0.01,
                            "run_jobs": False,
                            "plugins": {"health": {"scheduler": False},
                                        "http": {"enabled": True,
                                                 "listen": "127.0.0.1:0"}}}) as host:
        http = host.plugin("http")
        assert isinstance(http, HttpPlugin) and http.url is not None
        await build_world(host, clock, http.url, start)
        write = await host.run(create_in, "ops", Scope.WRITE, clock())
        read = await host.run(create_in, "viewer", Scope.READ, clock())
        async with httpx.AsyncClient(base_url=http.url, timeout=30) as client:
            yield Api(host=host, client=client, write_token=write, read_token=read)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def get_json(api: Api, path: str, status: int = 200) -> Any:
    response = await api.client.get(path)
    assert response.status_code == status, response.text
    return response.json()


async def assert_not_found(api: Api, path: str, named: str, method: str = "GET") -> None:
    response = await api.client.request(method, path, headers=bearer(api.write_token))
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 404 and f"'{named}'" in problem["detail"]


# -- redaction ---------------------------------------------------------------------------

def test_redact_hides_headers_secret_fields_and_url_credentials() -> None:
    config = {
        "url": "https://alice:hunter2@example.com:8443/health?api_key=k1&x=1",
        "headers": {"Authorization": "Bearer t", "X-Trace": "plain"},
        "password": "p", "client_secret": "s", "apiKey": "k", "Api-Key": "k2",
        "token": 12345, "auth": {"access_token": "a", "user": "bob"},
        "targets": ["http://u:p@h/", "https://h/ok"],
        "use_token": True, "timeout_seconds": 5, "method": "GET", "note": None,
    }
    assert redact(config) == {
        "url": "https://***@example.com:8443/health?api_key=***&x=1",
        "headers": {"Authorization": REDACTED, "X-Trace": REDACTED},
        "password": REDACTED, "client_secret": REDACTED, "apiKey": REDACTED,
        "Api-Key": REDACTED, "token": REDACTED, "auth": {"access_token": REDACTED,
                                                         "user": "bob"},
        "targets": ["http://***@h/", "https://h/ok"],
        "use_token": True, "timeout_seconds": 5, "method": "GET", "note": None,
    }
    assert config["headers"] == {"Authorization": "Bearer t", "X-Trace": "plain"}  # a copy
    assert redact_text("ConnectError for http://user:pw@10.0.0.1/x: refused") == (
        "ConnectError for http://***@10.0.0.1/x: refused")
    assert redact_text("mailto-less user@example.com stays") == "mailto-less user@example.com stays"


# -- catalog -----------------------------------------------------------------------------

async def test_systems_are_listed_by_id_with_their_upstream_dependencies(api: Api) -> None:
    page = await get_json(api, "/api/systems")
    assert [s["id"] for s in page["items"]] == ["batch", "ledger", "payments", "shop"]
    assert page["next_after"] is None
    shop = page["items"][3]
    assert shop == {"id": "shop", "name": SHOP_NAME, "tags": ["core"],
                    "description": f"the {SHOP_NAME} system",
                    "dependencies": [{"system_id": "payments", "kind": "critical"}]}
    assert await get_json(api, "/api/systems/shop") == shop
    first = await get_json(api, "/api/systems?limit=2")
    assert [s["id"] for s in first["items"]] == ["batch", "ledger"]
    second = await get_json(api, f"/api/systems?limit=2&after={first['next_after']}")
    assert [s["id"] for s in second["items"]] == ["payments", "shop"]
    assert second["next_after"] is None
    await assert_not_found(api, "/api/systems/warehouse", "warehouse")
    assert (await api.client.get("/api/systems?limit=1001")).status_code == 422


# -- health ------------------------------------------------------------------------------

async def test_health_says_why_each_failing_system_is_not_healthy(api: Api) -> None:
    items = {i["system_id"]: i for i in (await get_json(api, "/api/health"))["items"]}
    assert sorted(items) == ["batch", "ledger", "payments", "shop"]
    shop = items["shop"]
    assert (shop["status"], shop["reason"], shop["name"]) == ("healthy", None, SHOP_NAME)
    assert (shop["healthy_checks"], shop["total_checks"]) == (1, 1)
    payments = items["payments"]
    assert payments["status"] == "unhealthy"
    assert payments["since"] is not None
    reason = payments["reason"]
    assert reason["check_id"] == "payments-http" and reason["status"] == "unhealthy"
    assert reason["status_code"] == 404
    assert reason["error"] == "status 404, expected 2xx"
    assert reason["latency_ms"] >= 0 and reason["at"]
    ledger = items["ledger"]["reason"]
    assert items["ledger"]["status"] == "unhealthy"
    assert ledger["check_id"] == "ledger-http" and ledger["status_code"] is None
    assert ledger["error"]  # the connection was refused: the error says so


async def test_one_systems_health_shows_each_check_its_last_failure_and_recent_runs(
        api: Api) -> None:
    shop = await get_json(api, "/api/health/shop")
    assert (shop["system_id"], shop["status"], shop["reason"]) == ("shop", "healthy", None)
    [check] = shop["checks"]
    assert check["check_id"] == "shop-http" and check["status"] == "healthy"
    assert check["paused"] is False and check["enabled"] is True
    assert check["last_run"]["status"] == "healthy"
    assert check["last_failure"]["status_code"] == 503
    assert check["last_failure"]["latency_ms"] == 12.5
    assert [r["status"] for r in shop["runs"]] == ["healthy", "unhealthy", "healthy"]
    stamps = [datetime.fromisoformat(r["at"]) for r in shop["runs"]]
    assert stamps == sorted(stamps, reverse=True)
    assert len((await get_json(api, "/api/health/shop?limit=1"))["runs"]) == 1
    payments = await get_json(api, "/api/health/payments")
    assert payments["status"] == "unhealthy"
    assert payments["reason"]["status_code"] == 404
    assert payments["checks"][0]["last_failure"]["error"] == "status 404, expected 2xx"
    await assert_not_found(api, "/api/health/warehouse", "warehouse")


async def test_checks_are_listed_with_their_secrets_redacted(api: Api) -> None:
    page = await get_json(api, "/api/checks")
    checks = {c["id"]: c for c in page["items"]}
    assert list(checks) == ["batch-tcp", "ledger-http", "payments-http", "shop-http"]
    ledger = checks["ledger-http"]
    assert ledger["strategy"] == "http" and ledger["paused"] is False
    assert ledger["interval_seconds"] == 60.0
    assert ledger["config"]["headers"] == {"Authorization": "***"}
    assert ledger["config"]["url"] == "http://***@127.0.0.1:1/"
    assert checks["batch-tcp"]["config"] == {"host": "127.0.0.1", "port": 1}


async def test_no_secret_appears_in_any_response(api: Api) -> None:
    reads = ["/api/systems", "/api/systems/ledger", "/api/health", "/api/health/ledger",
             "/api/checks", "/api/objectives", "/api/objectives/shop-availability",
             "/api/objectives/shop-availability/burndown.svg"]
    bodies = [(await api.client.get(path)).text for path in reads]
    run = await api.client.post("/api/checks/ledger-http/run", headers=bearer(api.write_token))
    assert run.status_code == 200 and run.json()["status"] == "unhealthy"
    bodies.append(run.text)
    for action in ("pause", "resume"):
        response = await api.client.post(f"/api/checks/ledger-http/{action}",
                                         headers=bearer(api.write_token))
        assert response.status_code == 200
        bodies.append(response.text)
    bodies.append((await api.client.get("/api/health/ledger")).text)
    for body in bodies:
        assert "s3cret" not in body and "user:pw" not in body and ":pw@" not in body


# -- SLO ---------------------------------------------------------------------------------

async def test_objectives_show_their_budget_events_and_streak(api: Api) -> None:
    [item] = (await get_json(api, "/api/objectives"))["items"]
    assert (item["id"], item["system_id"], item["system_name"]) == (
        "shop-availability", "shop", SHOP_NAME)
    assert (item["target"], item["window_days"]) == (90.0, 1)
    status = item["status"]
    # One hour down of a budget of 144 minutes (10 % of a day).
    assert status["budgetRemainingPercent"] == pytest.approx(100 * (144 - 60) / 144)
    assert status["burnRate"] == pytest.approx(60 / 144)
    assert status["availability"] == pytest.approx(100 * (1440 - 60) / 1440)
    assert (status["burnAlert"], status["isBreaching"]) == ("none", False)
    assert status["hasOpenDowntime"] is False
    assert status["attribution"] == {"selfMinutes": pytest.approx(60), "upstreams": []}
    detail = await get_json(api, "/api/objectives/shop-availability")
    assert detail["status"] == status
    [event] = detail["events"]
    assert (event["attribution"], event["open"]) == ("self", False)
    assert event["duration_seconds"] == pytest.approx(3600)
    assert event["upstream_system_id"] is None and event["upstream_system_name"] is None
    assert datetime.fromisoformat(event["end"]) - datetime.fromisoformat(
        event["start"]) == timedelta(hours=1)
    assert detail["streak"] == {"current": 0, "best": 0, "best_end": None}
    assert detail["snapshots"] == []  # no daily round ran
    # The first recovery unlocked the system's first achievement.
    assert [a["achievement"] for a in detail["achievements"]] == ["first_steps"]
    await assert_not_found(api, "/api/objectives/nope", "nope")
    await assert_not_found(api, "/api/objectives/nope/burndown.svg", "nope")


def test_budget_points_step_down_at_each_event_and_end_at_the_budget_now() -> None:
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    objective = Objective(id="o", system_id="s", target=99, window_days=10)  # 144 min
    self_ = Attribution.SELF
    events = [  # one hour inside the window, 72 minutes, then an open one (2 h so far)
        DowntimeEvent(start=now - timedelta(days=12), end=now - timedelta(days=9, hours=23),
                      attribution=self_),
        DowntimeEvent(start=now - timedelta(days=5),
                      end=now - timedelta(days=5) + timedelta(minutes=72), attribution=self_),
        DowntimeEvent(start=now - timedelta(hours=2), end=None, attribution=self_),
    ]
    down = budget_points(objective, events, now=now, currently_down=True)
    assert [p.at for p in down] == [
        now - timedelta(days=10), now - timedelta(days=9, hours=23), now - timedelta(days=5),
        now - timedelta(days=5) + timedelta(minutes=72), now - timedelta(hours=2), now]
    assert [round(p.remaining_percent, 2) for p in down] == [
        100.0, 58.33, 58.33, 8.33, 8.33, -75.0]  # overspent: below zero, drawn clipped
    # Recovered without the event closing yet: an orphan counts nothing (as in the engine).
    up = budget_points(objective, events, now=now, currently_down=False)
    assert [round(p.remaining_percent, 2) for p in up] == [100.0, 58.33, 58.33, 8.33, 8.33]
    status = compute_status(objective, events, now=now, currently_down=False)
    assert up[-1].remaining_percent == pytest.approx(status.error_budget_remaining_percent)


def polyline_levels(svg: ET.Element) -> list[tuple[float, float]]:
    line = svg.find(f"{SVG}polyline")
    assert line is not None
    return [(float(x), float(y)) for x, y in
            (pair.split(",") for pair in line.attrib["points"].split())]


async def test_the_burndown_is_an_svg_whose_line_steps_down_at_the_outage(api: Api) -> None:
    response = await api.client.get("/api/objectives/shop-availability/burndown.svg")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    svg = ET.fromstring(response.text)
    assert svg.tag == f"{SVG}svg"
    assert int(svg.attrib["width"]) > 0 and int(svg.attrib["height"]) > 0
    title = svg.find(f"{SVG}title")
    assert title is not None and title.text is not None
    assert "shop-availability" in title.text and SHOP_NAME in title.text  # escaped, read back
    texts = [t.text or "" for t in svg.iter(f"{SVG}text")]
    assert "100%" in texts and "0%" in texts and "budget remaining (%)" in texts
    assert any(t.startswith("day of the window") for t in texts)
    points = polyline_levels(svg)
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    assert xs == sorted(xs)
    # SVG's y grows downwards: the budget only falls, and fell during the outage.
    assert ys == sorted(ys)
    assert ys[0] == ys[1] < ys[-1]  # full budget until the outage began, less after it
    assert ys[-2] == ys[-1]  # flat since the recovery
    now = svg.find(f"{SVG}circle")
    assert now is not None and float(now.attrib["cy"]) == pytest.approx(ys[-1], abs=0.01)
    assert "58.33%" in texts


# -- writes ------------------------------------------------------------------------------

async def test_check_actions_need_a_write_token_and_act_as_its_name(api: Api) -> None:
    for action in ("pause", "resume", "run"):
        path = f"/api/checks/batch-tcp/{action}"
        anonymous = await api.client.post(path)
        assert anonymous.status_code == 401, anonymous.text
        read_only = await api.client.post(path, headers=bearer(api.read_token))
        assert read_only.status_code == 403, read_only.text
        assert "viewer" in read_only.json()["detail"]

    paused = await api.client.post("/api/checks/batch-tcp/pause", headers=bearer(
        api.write_token), json={"reason": "nightly maintenance"})
    assert paused.status_code == 200, paused.text
    assert (paused.json()["paused"], paused.json()["changed"]) == (True, True)
    again = await api.client.post("/api/checks/batch-tcp/pause",
                                  headers=bearer(api.write_token))
    assert (again.json()["paused"], again.json()["changed"]) == (True, False)
    checks = {c["id"]: c for c in (await get_json(api, "/api/checks"))["items"]}
    assert checks["batch-tcp"]["paused"] is True
    batch = await get_json(api, "/api/health/batch")
    assert batch["checks"][0]["paused"] is True
    [change] = await api.host.changes(kind="health", entity_id="batch", newest=True, limit=1)
    assert (change.actor.type, change.actor.id) == ("http", "ops")
    assert change.reason == "nightly maintenance"

    resumed = await api.client.post("/api/checks/batch-tcp/resume",
                                    headers=bearer(api.write_token))
    assert resumed.status_code == 200
    assert (resumed.json()["paused"], resumed.json()["changed"]) == (False, True)
    [change] = await api.host.changes(kind="health", entity_id="batch", newest=True, limit=1)
    assert (change.actor.type, change.actor.id) == ("http", "ops")
    assert change.reason == "check batch-tcp resumed over HTTP by token ops"

    before = len((await get_json(api, "/api/health/batch"))["runs"])
    ran = await api.client.post("/api/checks/batch-tcp/run", headers=bearer(api.write_token))
    assert ran.status_code == 200, ran.text
    outcome = ran.json()
    assert outcome["check_id"] == "batch-tcp" and outcome["status"] == "unhealthy"
    assert outcome["error"]
    after = await get_json(api, "/api/health/batch")
    assert len(after["runs"]) == before + 1
    assert after["status"] == "unhealthy" and after["reason"]["check_id"] == "batch-tcp"

    for action in ("pause", "resume", "run"):
        await assert_not_found(api, f"/api/checks/nope/{action}", "nope", method="POST")
    bad = await api.client.post("/api/checks/batch-tcp/pause", headers=bearer(
        api.write_token), json={"reason": ""})
    assert bad.status_code == 422
