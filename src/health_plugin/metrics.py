"""The health plugin's collectors on `/metrics`, read from the database at scrape time.

* `reactive_system_health{system,status}`: 1 for the system's current status, 0 for the
  other statuses; `reactive_system_healthy_checks{system}` and
  `reactive_system_checks{system}` (the checks that count).
* `reactive_check_run_latency_seconds{check}`: a histogram of the latencies of the
  retained runs of each check (the newest runs per system and check), its buckets
  counted in SQL; `reactive_check_runs{check,status}`: the retained runs by status.
  Both describe the retained runs, not a running total: read them as a distribution
  (`histogram_quantile` on the buckets themselves), not with `rate()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from sqlalchemy import Connection, case, func, select

from .entity import read_all
from .evaluator import HealthStatus
from .models import HealthState
from .schema import health_check_configurations, health_check_runs

if TYPE_CHECKING:
    from .service import HealthService

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of the finite buckets of `reactive_check_run_latency_seconds`."""

_runs = health_check_runs
_LATENCY = select(
    _runs.c.configuration_id,
    func.count(_runs.c.latency_ms).label("n"),
    func.coalesce(func.sum(_runs.c.latency_ms), 0.0).label("total_ms"),
    *(func.sum(case((_runs.c.latency_ms <= bound * 1000.0, 1), else_=0)).label(f"b{i}")
      for i, bound in enumerate(LATENCY_BUCKETS)),
).where(_runs.c.latency_ms.is_not(None)).group_by(_runs.c.configuration_id)
_BY_STATUS = (select(_runs.c.configuration_id, _runs.c.status, func.count().label("n"))
              .group_by(_runs.c.configuration_id, _runs.c.status))
_CHECKS = select(health_check_configurations.c.id).order_by(health_check_configurations.c.id)


@dataclass(frozen=True, slots=True, kw_only=True)
class Latencies:
    """One check's retained run latencies: cumulative bucket counts, count, sum."""

    buckets: tuple[int, ...]
    count: int
    sum_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthSnapshot:
    """What the health plugin reports, as read by one scrape."""

    systems: dict[str, HealthState]
    checks: tuple[str, ...]
    latencies: dict[str, Latencies]
    runs: dict[tuple[str, str], int]


class HealthCollector:
    """System health and check runs."""

    def read(self, tx: Connection) -> HealthSnapshot:
        latencies = {
            row.configuration_id: Latencies(
                buckets=tuple(int(getattr(row, f"b{i}") or 0)
                              for i in range(len(LATENCY_BUCKETS))),
                count=int(row.n), sum_seconds=float(row.total_ms) / 1000.0)
            for row in tx.execute(_LATENCY)}
        runs = {(row.configuration_id, row.status): int(row.n) for row in tx.execute(_BY_STATUS)}
        checks = sorted({*tx.execute(_CHECKS).scalars(), *latencies, *(c for c, _ in runs)})
        return HealthSnapshot(systems=read_all(tx), checks=tuple(checks), latencies=latencies,
                              runs=runs)

    def render(self, snapshot: HealthSnapshot) -> Iterator[Metric]:
        health = GaugeMetricFamily(
            "reactive_system_health", "1 for the system's current health status, 0 for the "
            "others", labels=["system", "status"])
        healthy = GaugeMetricFamily("reactive_system_healthy_checks",
                                    "Healthy checks of the system", labels=["system"])
        total = GaugeMetricFamily("reactive_system_checks",
                                  "Checks that count towards the system's health",
                                  labels=["system"])
        for system, state in snapshot.systems.items():
            for status in HealthStatus:
                health.add_metric([system, status.value], int(state.status is status))
            healthy.add_metric([system], state.healthy_checks)
            total.add_metric([system], state.total_checks)
        yield from (health, healthy, total)
        latency = HistogramMetricFamily(
            "reactive_check_run_latency_seconds", "Latency of the retained runs of each check "
            "(runs without a latency left out)", labels=["check"])
        runs = GaugeMetricFamily("reactive_check_runs", "Retained runs of each check, by status",
                                 labels=["check", "status"])
        empty = Latencies(buckets=(0,) * len(LATENCY_BUCKETS), count=0, sum_seconds=0.0)
        for check in snapshot.checks:
            seen = snapshot.latencies.get(check, empty)
            buckets: list[tuple[str, Any]] = [
                (_bound(b), n) for b, n in zip(LATENCY_BUCKETS, seen.buckets, strict=True)]
            latency.add_metric([check], [*buckets, ("+Inf", seen.count)], seen.sum_seconds)
            for status in HealthStatus:
                runs.add_metric([check, status.value], snapshot.runs.get((check, status.value), 0))
        yield from (latency, runs)


def _bound(value: float) -> str:
    return repr(float(value))


def collectors(service: HealthService) -> list[HealthCollector]:
    """The collectors the health plugin adds to `/metrics`."""
    return [HealthCollector()]
