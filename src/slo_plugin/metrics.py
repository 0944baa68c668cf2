"""The SLO plugin's collectors on `/metrics`: each objective's budget as of the scrape.

Every series is labelled `objective` and `system`:

* `reactive_slo_target_percent`, `reactive_slo_availability_percent` (over the
  objective's window, as its exclusion mode counts), `reactive_slo_budget_remaining_percent`;
* `reactive_slo_burn_rate{window}`: the budget spent over the last `window` divided by
  what that window may spend (1 = on course to spend exactly the budget), for each
  window of the burn-rate pairs (`5m`, `1h`, `30m`, `6h`, `3d`) and the objective's
  whole window (e.g. `30d`); absent when the objective has no budget (target 100);
* `reactive_slo_breaching` (1 when the budget is overspent) and
  `reactive_slo_burn_alert{alert}` (1 for the current alert level, 0 for the others).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import Connection

from . import store
from .models import BurnAlert, Objective, SloStatus

if TYPE_CHECKING:
    from .entity import SloReader
    from .service import SloService

SloSnapshot = dict[str, tuple[Objective, SloStatus]]
"""Each objective by id, with its status at the scrape."""


def window_label(minutes: int) -> str:
    """A window length the way Prometheus spells durations: `5m`, `6h`, `3d`."""
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


def burn_rates(objective: Objective, status: SloStatus) -> dict[str, float]:
    """The burn rate over each window, by window label (empty without a budget)."""
    rates: dict[str, float] = {}
    for pair in status.burn_windows:
        for minutes, rate in ((pair.short_window_minutes, pair.short_burn_rate),
                              (pair.long_window_minutes, pair.long_burn_rate)):
            if rate is not None:
                rates.setdefault(window_label(minutes), rate)
    if status.burn_rate is not None:
        rates.setdefault(window_label(objective.window_days * 1440), status.burn_rate)
    return dict(sorted(rates.items(), key=lambda item: _minutes(item[0])))


def _minutes(label: str) -> int:
    return int(label[:-1]) * {"m": 1, "h": 60, "d": 1440}[label[-1]]


class SloCollector:
    """Objectives' budgets, availability and burn rates."""

    def __init__(self, reader: SloReader) -> None:
        self._reader = reader

    def read(self, tx: Connection) -> SloSnapshot:
        return self._reader.statuses_in(tx, store.objective_ids_in(tx))

    def render(self, snapshot: SloSnapshot) -> Iterator[Metric]:
        labels = ["objective", "system"]

        def gauge(name: str, documentation: str, *extra: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, documentation, labels=[*labels, *extra])

        target = gauge("reactive_slo_target_percent", "The objective's availability target")
        availability = gauge("reactive_slo_availability_percent",
                             "Availability over the objective's window")
        remaining = gauge("reactive_slo_budget_remaining_percent",
                          "Error budget left over the objective's window")
        burn = gauge("reactive_slo_burn_rate", "Budget spent over the window divided by the "
                     "budget that window may spend (1: on course to spend it all)", "window")
        breaching = gauge("reactive_slo_breaching", "1 when the error budget is overspent")
        alert = gauge("reactive_slo_burn_alert", "1 for the objective's current burn alert, 0 "
                      "for the others", "alert")
        for oid, (objective, status) in sorted(snapshot.items()):
            key = [oid, objective.system_id]
            target.add_metric(key, objective.target)
            availability.add_metric(key, status.current_availability)
            remaining.add_metric(key, status.error_budget_remaining_percent)
            for window, rate in burn_rates(objective, status).items():
                burn.add_metric([*key, window], rate)
            breaching.add_metric(key, int(status.is_breaching))
            for level in BurnAlert:
                alert.add_metric([*key, level.value], int(status.burn_alert is level))
        yield from (target, availability, remaining, burn, breaching, alert)


def collectors(service: SloService) -> list[SloCollector]:
    """The collectors the SLO plugin adds to `/metrics`."""
    return [SloCollector(service.reader)]
