"""`reactive systems`, the command the catalog plugin adds to the CLI: every system with
what it depends on (its upstream systems and how badly)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from reactive_core import CliCommand, CliContext

if TYPE_CHECKING:
    from .service import Catalog


async def system_rows(catalog: Catalog) -> list[dict[str, Any]]:
    """Every system by id: `id`, `name`, `tags`, `description` and `dependencies`
    (`{"system_id", "kind"}`: an upstream system and the impact; the HTTP API's names)."""
    systems = await catalog.systems()
    upstream: dict[str, list[dict[str, str]]] = {system_id: [] for system_id in systems}
    for edge in await catalog.dependencies():
        upstream.setdefault(edge.source_system_id, []).append(
            {"system_id": edge.target_system_id, "kind": edge.impact.value})
    return [{"id": system_id, "name": system.name, "tags": list(system.tags),
             "description": system.description, "dependencies": upstream[system_id]}
            for system_id, system in systems.items()]


def systems_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """`reactive systems`: id, name, tags, depends on (`db (critical)`)."""
    if not rows:
        return "no systems"
    return CliContext.table(
        ["system", "name", "tags", "depends on"],
        ([r["id"], r["name"], ",".join(r["tags"]) or "-",
          ", ".join(f"{d['system_id']} ({d['kind']})" for d in r["dependencies"]) or "-"]
         for r in rows))


def systems_command(catalog: Catalog) -> CliCommand:
    """`reactive systems`: the catalog's systems and their dependencies."""

    async def run(ctx: CliContext) -> int:
        rows = await system_rows(catalog)
        ctx.emit(rows, systems_table)
        return 0

    return CliCommand(name="systems", help="the catalog's systems with what each depends on",
                      run=run, listing=True)
