"""The catalog plugin: systems (kind `catalog-system`) and the dependencies between them.

A dependency edge says that `source_system_id` depends on `target_system_id`: the
target is upstream, the source downstream.
"""

from __future__ import annotations

from .derivers import (
    CATALOG_CREATED,
    CATALOG_DELETED,
    CATALOG_UPDATED,
    catalog_change_payload,
    derive_catalog_triggers,
)
from .hooks import CatalogPlugin
from .models import (
    CATALOG_KIND,
    CatalogSystem,
    Dependency,
    DependencyDeclaration,
    Impact,
    SystemDeclaration,
)
from .service import (
    EDGE_CLEANUP_GROUP,
    Catalog,
    CatalogError,
    DependencyWrite,
    InvalidDependency,
    SystemWrite,
    UnknownSystem,
    catalog_of,
)

__all__ = [
    "CATALOG_CREATED",
    "CATALOG_DELETED",
    "CATALOG_KIND",
    "CATALOG_UPDATED",
    "Catalog",
    "CatalogError",
    "CatalogPlugin",
    "CatalogSystem",
    "Dependency",
    "DependencyDeclaration",
    "DependencyWrite",
    "EDGE_CLEANUP_GROUP",
    "Impact",
    "InvalidDependency",
    "SystemDeclaration",
    "SystemWrite",
    "UnknownSystem",
    "catalog_change_payload",
    "catalog_of",
    "derive_catalog_triggers",
]
