"""The catalog plugin's hooks; the `catalog` entry point names `CatalogPlugin`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reactive_core import CliCommand, DemoStep, WorkQueue, hookimpl

from .commands import systems_command
from .config import (
    DEPENDENCIES_ORDER,
    DEPENDENCIES_SECTION,
    SYSTEMS_ORDER,
    SYSTEMS_SECTION,
    apply_dependencies,
    apply_systems,
    prune_dependencies,
    prune_systems,
)
from .demo import CatalogDemo
from .derivers import catalog_change_payload, derive_catalog_triggers
from .models import CATALOG_KIND, CatalogSystem, DependencyDeclaration, SystemDeclaration
from .schema import catalog_dependencies, metadata
from .service import EDGE_CLEANUP_GROUP, Catalog

if TYPE_CHECKING:
    from reactive_core import Host, Registry


class CatalogPlugin:
    """Systems (kind `catalog-system`) and their dependency edges."""

    name = "catalog"

    def __init__(self) -> None:
        self.catalog: Catalog | None = None

    @hookimpl
    def reactive_register(self, registry: Registry, host: Host) -> None:
        """Declare the edge table, the kind, its triggers, edge cleanup and config sections."""
        registry.add_tables(metadata, migrations="catalog_plugin:migrations")
        registry.declare_non_reactive_state(
            catalog_dependencies.name, "bookkeeping",
            "dependency edges are topology that other plugins read when they need it "
            "(SLO attribution, digests); nothing reacts to an edge changing, and systems "
            "themselves are reactive catalog-system entities",
        )
        registry.define_entity(CATALOG_KIND, state=CatalogSystem)
        self.catalog = catalog = Catalog(host)
        registry.register_change_deriver(
            CATALOG_KIND, derive_catalog_triggers, to_payload=catalog_change_payload)
        registry.on_entity_changed(
            CATALOG_KIND, catalog.cleanup_edges, delivery=WorkQueue(EDGE_CLEANUP_GROUP))
        registry.add_config_section(
            SYSTEMS_SECTION, SystemDeclaration,
            lambda tx, _host, items: apply_systems(tx, catalog, items),
            order=SYSTEMS_ORDER, identity=["id"],
            prune=lambda tx, _host, items: prune_systems(tx, catalog, items))
        registry.add_config_section(
            DEPENDENCIES_SECTION, DependencyDeclaration,
            lambda tx, _host, items: apply_dependencies(tx, catalog, items),
            order=DEPENDENCIES_ORDER, identity=["source", "target"],
            prune=lambda tx, _host, items: prune_dependencies(tx, catalog, items))

    @hookimpl
    def reactive_cli_commands(self) -> list[CliCommand]:
        """`reactive systems`."""
        assert self.catalog is not None
        return [systems_command(self.catalog)]

    @hookimpl
    def reactive_demo_steps(self) -> list[DemoStep]:
        """Declare, wire, update, re-declare unchanged, delete."""
        assert self.catalog is not None
        return CatalogDemo(self.catalog).steps()

    @hookimpl
    def reactive_http_routes(self, host: Host) -> list[Any]:
        """The plugin's part of the HTTP API (`catalog_plugin.http`)."""
        assert self.catalog is not None
        from .http import routes
        return routes(self.catalog)

    @hookimpl
    def reactive_metrics(self, host: Host) -> list[Any]:
        """The plugin's collectors on `/metrics` (`catalog_plugin.metrics`)."""
        assert self.catalog is not None
        from .metrics import collectors
        return collectors(self.catalog)
