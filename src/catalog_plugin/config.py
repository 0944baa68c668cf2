"""The `systems` and `dependencies` sections of config files (`reactive apply`).

Both run inside the one transaction of the apply, in `order` (systems first), so a
dependency may name a system declared in the same file, and any bad item rolls the
whole file back. Unchanged items change nothing and report nothing.

With `reactive apply --prune`, what the files no longer declare goes too: edges first,
then systems (each tombstoned, with its edges, as `Catalog.delete_system_in` does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection

from reactive_core import CONFIG_ACTOR, CONFIG_REASON, ConfigItemError, InvalidEntityState

from .models import DependencyDeclaration, SystemDeclaration
from .service import InvalidDependency, UnknownSystem

if TYPE_CHECKING:
    from .service import Catalog

SYSTEMS_SECTION = "systems"
DEPENDENCIES_SECTION = "dependencies"
SYSTEMS_ORDER = 10
DEPENDENCIES_ORDER = 20
PRUNE_REASON = "no longer declared in a config file"
"""The reason recorded on the changes `reactive apply --prune` causes."""


def apply_systems(tx: Connection, catalog: Catalog, items: list[SystemDeclaration]) -> list[str]:
    """Upsert each declared system; report created and updated ones."""
    lines: list[str] = []
    for index, item in enumerate(items):
        try:
            write = catalog.write_system_in(
                tx, item.id, name=item.name, description=item.description,
                metadata=item.metadata, tags=item.tags, actor=CONFIG_ACTOR,
                reason=CONFIG_REASON)
        except InvalidEntityState as exc:
            field = exc.fields[0].split(".")[0] if exc.fields else None
            raise ConfigItemError(index, str(exc), field=field) from exc
        if write.prev is None:
            lines.append(f"created system {item.id}")
        elif write.changed_fields:
            lines.append(f"updated system {item.id} ({', '.join(write.changed_fields)})")
    return lines


def apply_dependencies(
    tx: Connection, catalog: Catalog, items: list[DependencyDeclaration]
) -> list[str]:
    """Upsert each declared edge; report new edges and impact changes."""
    lines: list[str] = []
    for index, item in enumerate(items):
        edge = f"{item.source} -> {item.target}"
        try:
            write = catalog.write_dependency_in(tx, item.source, item.target, item.impact)
        except UnknownSystem as exc:
            raise ConfigItemError(
                index, f"dependency {edge}: unknown {exc.role} system {exc.system_id!r}, "
                       f"expected a system declared under {SYSTEMS_SECTION!r} in this file or "
                       f"already in the catalog", field=exc.role) from exc
        except InvalidDependency as exc:
            raise ConfigItemError(index, str(exc), field=exc.field) from exc
        impact = write.dependency.impact
        if write.previous_impact is None:
            lines.append(f"added dependency {edge} ({impact})")
        elif write.previous_impact != impact:
            lines.append(f"updated dependency {edge} ({write.previous_impact} -> {impact})")
    return lines


def prune_systems(tx: Connection, catalog: Catalog, items: list[SystemDeclaration]) -> list[str]:
    """Tombstone every system (with its edges) that `items` do not declare."""
    declared = {item.id for item in items}
    lines: list[str] = []
    for system_id in catalog.systems_in(tx):
        if system_id not in declared:
            catalog.delete_system_in(tx, system_id, actor=CONFIG_ACTOR, reason=PRUNE_REASON)
            lines.append(f"removed system {system_id}")
    return lines


def prune_dependencies(
    tx: Connection, catalog: Catalog, items: list[DependencyDeclaration]
) -> list[str]:
    """Delete every edge that `items` do not declare."""
    declared = {(item.source, item.target) for item in items}
    lines: list[str] = []
    for edge in catalog.dependencies_in(tx):
        source, target = edge.source_system_id, edge.target_system_id
        if (source, target) not in declared and catalog.remove_dependency_in(tx, source, target):
            lines.append(f"removed dependency {source} -> {target}")
    return lines
