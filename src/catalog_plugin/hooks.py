"""The catalog plugin's hooks; `plugin` is what the `catalog` entry point loads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reactive_core import WorkQueue, hookimpl

from .config import (
    DEPENDENCIES_ORDER,
    DEPENDENCIES_SECTION,
    SYSTEMS_ORDER,
    SYSTEMS_SECTION,
    apply_dependencies,
    apply_systems,
)
from .derivers import catalog_change_payload, derive_catalog_triggers
from .models import CATALOG_KIND, CatalogSystem, DependencyDeclaration, SystemDeclaration
from .schema import catalog_dependencies, metadata
from .service import EDGE_CLEANUP_GROUP, edge_cleanup_handler

if TYPE_CHECKING:
    from reactive_core import Registry


class CatalogPlugin:
    """Systems (kind `catalog-system`) and their dependency edges."""

    name = "catalog"

    @hookimpl
    def reactive_register(self, registry: Registry) -> None:
        """Declare the edge table, the kind, its triggers, edge cleanup and config sections."""
        registry.add_tables(metadata)
        registry.declare_non_reactive_state(
            catalog_dependencies.name, "bookkeeping",
            "dependency edges are topology that other plugins read when they need it "
            "(SLO attribution, digests); nothing reacts to an edge changing, and systems "
            "themselves are reactive catalog-system entities",
        )
        registry.define_entity(CATALOG_KIND, state=CatalogSystem)
        registry.register_change_deriver(
            CATALOG_KIND, derive_catalog_triggers, to_payload=catalog_change_payload)
        registry.on_entity_changed(
            CATALOG_KIND, edge_cleanup_handler(registry), delivery=WorkQueue(EDGE_CLEANUP_GROUP))
        registry.add_config_section(
            SYSTEMS_SECTION, SystemDeclaration, apply_systems, order=SYSTEMS_ORDER,
            identity=["id"])
        registry.add_config_section(
            DEPENDENCIES_SECTION, DependencyDeclaration, apply_dependencies,
            order=DEPENDENCIES_ORDER, identity=["source", "target"])


plugin = CatalogPlugin()
