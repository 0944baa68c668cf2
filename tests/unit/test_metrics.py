"""`/metrics` on a real HTTP server: every family parses with the Prometheus text
parser, and the numbers move as a system goes down, its SLO burns, a work-queue
handler dead-letters a delivery and another one holds its queue.

One host on SQLite with a settable clock serves the whole scenario; health moves
through recorded check runs, and handlers run on `host.drain()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from catalog_plugin import Catalog, CatalogPlugin
from health_plugin import CheckOutcome, HealthPlugin, HealthStatus, Thresholds, health_service
from plugins_for_tests import SubscriberPlugin
from reactive_core import EntityChange, Host, WorkQueue
from reactive_core.automation.plugin import AutomationPlugin
from reactive_core.http.metrics import Metrics
from reactive_core.http.plugin import HttpPlugin
from slo_plugin import Objective, SloPlugin, slo_service
from slo_plugin.metrics import window_label

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
EAGER = Thresholds(degraded_min_failures=1, unhealthy_min_failures=1)
UP = CheckOutcome(status=HealthStatus.HEALTHY, latency_ms=20.0)
DOWN = CheckOutcome(status=HealthStatus.UNHEALTHY, latency_ms=3000.0)

RULES = """
- id: api-down
  triggers:
    - numeric_state: {entity: "health:api", field: healthyChecks, below: 1}
  actions:
    - log: "api is down"
- id: api-down-long
  triggers:
    - numeric_state: {entity: "health:api", field: healthyChecks, below: 1, for: {hours: 2}}
  actions:
    - log: "api down for two hours"
"""


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Audit:
    """A work-queue handler of catalog changes: `poison` always fails, `slow` waits."""

    def __init__(self) -> None:
        self.release = anyio.Event()

    async def __call__(self, change: EntityChange) -> None:
        if change.id == "poison":
            raise RuntimeError("poison system refused")
        if change.id == "slow":
            await self.release.wait()


class Scrape:
    """One parsed `/metrics`: sample values by (name, labels)."""

    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in self.families.values():
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def series(self, name: str) -> Iterator[tuple[dict[str, str], float]]:
        for (sample, labels), value in self.samples.items():
            if sample == name:
                yield dict(labels), value


async def scrape(url: str) -> Scrape:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{url}/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    return Scrape(response.text)


async def test_metrics_parse_and_move_when_a_system_goes_down_and_its_slo_burns(
        sqlite_url: str) -> None:
    clock = Clock()
    audit = Audit()
    subscriber = SubscriberPlugin("catalog-system", audit,
                                  WorkQueue("audit", max_retries=0), name="audit")
    async with Host(database_url=sqlite_url, clock=clock, entry_points=False,
                    plugins=[CatalogPlugin, HealthPlugin, SloPlugin, AutomationPlugin,
                             HttpPlugin, subscriber],
                    config={"poll_interval": 0.05, "retry_base_seconds": 0.01,
                            "run_jobs": False, "shutdown_timeout_seconds": 0.5,
                            "plugins": {"health": {"scheduler": False},
                                        "http": {"enabled": True, "listen": "127.0.0.1:0"}}},
                    ) as host:
        http = host.plugin("http")
        assert isinstance(http, HttpPlugin) and http.url is not None
        url = http.url
        health, slo = health_service(host), slo_service(host)
        automation = host.plugin("automation")
        assert isinstance(automation, AutomationPlugin)
        catalog = Catalog(host)
        await catalog.upsert_system("api", name="API")
        await catalog.upsert_system("db", name="Database")
        await catalog.add_dependency("api", "db")
        await health.upsert_check("api-check", strategy="tcp",
                                  config={"host": "127.0.0.1", "port": 9})
        await health.associate("api", "api-check", thresholds=EAGER)
        await slo.upsert_objective(Objective(id="api-slo", system_id="api", target=99.9,
                                             window_days=30))
        await automation.install(RULES, origin="test")
        for minute in range(3):
            clock.now = T0 + timedelta(minutes=minute)
            await health.record_run("api-check", UP, timestamp=clock.now)
        await host.drain()

        before = await scrape(url)
        assert before("reactive_up") == 1
        assert before("reactive_systems") == 2
        assert before("reactive_dependencies") == 1
        assert before("reactive_system_health", system="api", status="healthy") == 1
        assert before("reactive_system_health", system="api", status="unhealthy") == 0
        assert before("reactive_system_healthy_checks", system="api") == 1
        assert before("reactive_system_checks", system="api") == 1
        assert before("reactive_check_runs", check="api-check", status="healthy") == 3
        assert before("reactive_check_runs", check="api-check", status="unhealthy") == 0
        assert before("reactive_check_run_latency_seconds_count", check="api-check") == 3
        assert before("reactive_check_run_latency_seconds_bucket", check="api-check",
                      le="0.025") == 3
        assert before("reactive_check_run_latency_seconds_bucket", check="api-check",
                      le="1.0") == 3
        assert before("reactive_check_run_latency_seconds_sum",
                      check="api-check") == pytest.approx(0.06)
        slo_labels = {"objective": "api-slo", "system": "api"}
        assert before("reactive_slo_target_percent", **slo_labels) == 99.9
        assert before("reactive_slo_budget_remaining_percent", **slo_labels) == 100
        assert before("reactive_slo_availability_percent", **slo_labels) == 100
        assert before("reactive_slo_breaching", **slo_labels) == 0
        assert before("reactive_slo_burn_alert", alert="none", **slo_labels) == 1
        windows = {labels["window"]: value
                   for labels, value in before.series("reactive_slo_burn_rate")}
        assert windows == {"5m": 0, "30m": 0, "1h": 0, "6h": 0, "3d": 0, "30d": 0}
        assert before("reactive_queue_depth", group="audit") == 0
        assert before("reactive_dead_letters", group="audit") == 0
        assert before("reactive_rule_holds") == 0
        assert before.get("reactive_rule_runs", rule="api-down", status="succeeded") is None
        assert before.families["reactive_delivery_duration_seconds"].type == "histogram"

        # The system goes down for half an hour: failing runs, time passes.
        for minute in range(3, 6):
            clock.now = T0 + timedelta(minutes=minute)
            await health.record_run("api-check", DOWN, timestamp=clock.now)
        await host.drain()
        clock.now = T0 + timedelta(minutes=35)
        # A delivery that fails for good, and one whose handler holds the queue.
        await catalog.upsert_system("poison", name="Poison")
        await host.drain()
        await catalog.upsert_system("slow", name="Slow")
        clock.now += timedelta(minutes=5)
        try:
            after = await scrape(url)
        finally:
            audit.release.set()
        assert after("reactive_system_health", system="api", status="healthy") == 0
        assert after("reactive_system_health", system="api", status="unhealthy") == 1
        assert after("reactive_system_healthy_checks", system="api") == 0
        assert after("reactive_check_runs", check="api-check", status="unhealthy") == 3
        assert after("reactive_check_run_latency_seconds_count", check="api-check") == 6
        assert after("reactive_check_run_latency_seconds_bucket", check="api-check",
                     le="1.0") == 3
        assert after("reactive_check_run_latency_seconds_bucket", check="api-check",
                     le="5.0") == 6
        assert after("reactive_check_run_latency_seconds_bucket", check="api-check",
                     le="+Inf") == 6
        # Down since minute 3, now minute 40: 37 of the 43.2 minutes of budget spent.
        remaining = after("reactive_slo_budget_remaining_percent", **slo_labels)
        assert remaining == pytest.approx((43.2 - 37) / 43.2 * 100)
        assert after("reactive_slo_availability_percent", **slo_labels) < 100
        assert after("reactive_slo_burn_rate", window="1h", **slo_labels) == pytest.approx(
            37 / (0.001 * 60))
        assert after("reactive_slo_burn_rate", window="30d", **slo_labels) == pytest.approx(
            37 / 43.2)
        assert after("reactive_slo_burn_alert", alert="fast_burn", **slo_labels) == 1
        assert after("reactive_slo_breaching", **slo_labels) == 0
        assert after("reactive_systems") == 4
        assert after("reactive_dead_letters", group="audit") == 1
        assert after("reactive_queue_depth", group="audit") == 1
        assert after("reactive_queue_oldest_age_seconds", group="audit") == 300
        assert after("reactive_delivery_duration_seconds_count",
                     group="audit", outcome="dead") == 1
        assert after("reactive_rule_runs", rule="api-down", status="succeeded") == 1
        assert after("reactive_rule_holds") == 1
        assert after("reactive_timers_pending", topic="automation.hold") == 1

        await host.drain()
        drained = await scrape(url)
        assert drained("reactive_queue_depth", group="audit") == 0
        assert drained("reactive_queue_oldest_age_seconds", group="audit") == 0
        assert drained("reactive_delivery_duration_seconds_count",
                       group="audit", outcome="done") == 1  # `slow`, once observed
        assert drained("reactive_dead_letters", group="audit") == 1


class _Rows:
    """A reading collector of a plugin: reads a number, renders it."""

    def read(self, tx: Any) -> int:
        return 7

    def render(self, snapshot: int) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("reactive_test_rows", "rows", value=snapshot)


def test_burn_windows_are_labelled_the_way_prometheus_spells_durations() -> None:
    assert [window_label(m) for m in (5, 30, 60, 360, 4320, 43200, 90)] == [
        "5m", "30m", "1h", "6h", "3d", "30d", "90m"]


async def test_a_plugin_collector_is_read_in_the_scrape_and_a_bad_one_is_refused(
        sqlite_url: str) -> None:
    class Plugin:
        name = "rows"

        def __init__(self, collector: object) -> None:
            self.collector = collector

        from reactive_core import hookimpl

        @hookimpl
        def reactive_metrics(self, host: Host) -> list[Any]:
            return [self.collector]

    async with Host(database_url=sqlite_url, entry_points=False,
                    plugins=[Plugin(_Rows())], config={"run_jobs": False}) as host:
        metrics = Metrics(host)
        text = metrics.render(await host.read(metrics.read)).decode()
        scraped = Scrape(text)
        assert scraped("reactive_test_rows") == 7
        assert scraped("reactive_up") == 1
        assert scraped.get("reactive_rule_holds") is None  # no automation plugin
        assert "reactive_test_rows" not in metrics.render({}).decode()
    async with Host(database_url=sqlite_url, entry_points=False,
                    plugins=[Plugin(object())], config={"run_jobs": False}) as host:
        with pytest.raises(TypeError, match="expected collectors with read"):
            Metrics(host)
