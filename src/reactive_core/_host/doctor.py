"""`reactive doctor`: find plugin tables that are neither reactive nor declared."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._host.host import Host


@dataclass(frozen=True, slots=True, kw_only=True)
class TableFinding:
    """One plugin table and how `doctor` classifies it."""

    table: str
    plugin: str | None
    status: str  # "entity", "declared", "undeclared"
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteFinding:
    """A work-queue (group, kind) route known to the cluster, with its backlog."""

    group: str
    kind: str
    last_seen_at: datetime | None
    pending: int
    stale: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class DoctorReport:
    """Everything `reactive doctor` checks."""

    tables: tuple[TableFinding, ...]
    stale_declarations: tuple[str, ...]
    dead_letters: int
    plugins: tuple[str, ...]
    routes: tuple[RouteFinding, ...] = ()

    @property
    def undeclared(self) -> tuple[TableFinding, ...]:
        """Plugin tables that back no entity kind and are not declared non-reactive."""
        return tuple(t for t in self.tables if t.status == "undeclared")

    @property
    def ok(self) -> bool:
        """True when nothing needs an operator's or plugin author's attention."""
        return (not self.undeclared and not self.stale_declarations
                and not any(r.stale and r.pending for r in self.routes))


async def doctor(host: Host) -> DoctorReport:
    """Classify every plugin table; count dead letters."""
    registry = host.registry
    backing: dict[str, str] = {}
    for kind in registry.kinds.values():
        for table in kind.tables:
            backing.setdefault(table, kind.kind)
    findings: list[TableFinding] = []
    for table, plugin in sorted(registry.table_owners.items()):
        declared = registry.declarations.get(table)
        if table in backing:
            findings.append(TableFinding(table=table, plugin=plugin, status="entity",
                                         detail=f"backs kind {backing[table]!r}"))
        elif declared is not None:
            findings.append(TableFinding(table=table, plugin=plugin, status="declared",
                                         detail=f"{declared.reason}: {declared.note}"))
        else:
            findings.append(TableFinding(
                table=table, plugin=plugin, status="undeclared",
                detail="backs no entity kind and is not declared with "
                       "declare_non_reactive_state"))
    stale = tuple(sorted(t for t in registry.declarations if t not in registry.table_owners))
    queue = await host.work_queue_status()
    now = host.clock()
    routes = tuple(RouteFinding(
        group=r.group, kind=r.kind, last_seen_at=r.last_seen_at, pending=r.pending,
        stale=r.last_seen_at is None or now - r.last_seen_at > _STALE_AFTER)
        for r in queue.routes)
    return DoctorReport(tables=tuple(findings), stale_declarations=stale,
                        dead_letters=queue.dead, plugins=tuple(host.plugin_names),
                        routes=routes)


# A route is refreshed by every instance that handles it (at start and every minute);
# one not refreshed for an hour has no live instance.
_STALE_AFTER = timedelta(hours=1)
