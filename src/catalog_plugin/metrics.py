"""The catalog plugin's collectors on `/metrics`: `reactive_systems` (systems in the
catalog) and `reactive_dependencies` (dependency edges between them)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import Connection, func, select

from .schema import catalog_dependencies

if TYPE_CHECKING:
    from .service import Catalog

_EDGES = select(func.count()).select_from(catalog_dependencies)


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogSnapshot:
    """What the catalog reports, as read by one scrape."""

    systems: int
    dependencies: int


class CatalogCollector:
    """How many systems and dependency edges the catalog holds."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def read(self, tx: Connection) -> CatalogSnapshot:
        return CatalogSnapshot(systems=len(self._catalog.systems_in(tx)),
                               dependencies=int(tx.execute(_EDGES).scalar_one()))

    def render(self, snapshot: CatalogSnapshot) -> Iterator[Metric]:
        yield GaugeMetricFamily("reactive_systems", "Systems in the catalog",
                                value=snapshot.systems)
        yield GaugeMetricFamily("reactive_dependencies",
                                "Dependency edges between systems of the catalog",
                                value=snapshot.dependencies)


def collectors(catalog: Catalog) -> list[CatalogCollector]:
    """The collectors the catalog plugin adds to `/metrics`."""
    return [CatalogCollector(catalog)]
