"""The catalog's part of `reactive demo`: declare, wire, update, re-declare, delete.

A broadcast subscriber prints every logged change of a system (its derived triggers
and, for updates and deletes, the payload and transition rows), and a work-queue
subscriber (`demo-audit`) handles each change once, in per-entity order. The catalog's
own work-queue subscriber removes the deleted system's dependency edges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reactive_core import Actor, DemoContext, DemoStep, EntityChange, WorkQueue

from .models import CATALOG_KIND
from .service import EDGE_CLEANUP_GROUP

if TYPE_CHECKING:
    from .service import Catalog

AUDIT_GROUP = "demo-audit"
OPERATOR = Actor("user", "demo")
STEPS = 6
"""Paced steps of the catalog part."""
SYSTEMS: dict[str, dict[str, Any]] = {
    "web": {"name": "Web shop", "tags": ["frontend"], "metadata": {"team": "storefront"}},
    "api": {"name": "Orders API", "tags": ["backend"], "metadata": {"team": "orders"}},
    "db": {"name": "Orders database", "tags": ["data"], "metadata": {"team": "platform"}},
    "cdn": {"name": "Static CDN", "tags": ["edge"], "metadata": {"vendor": "example"}},
}
ID_WIDTH = max(map(len, SYSTEMS))
EDGES = (("web", "api", "critical"), ("api", "db", "critical"), ("web", "cdn", "degraded"))


class CatalogPrinter:
    """The catalog part's two subscribers and what they saw."""

    def __init__(self, ctx: DemoContext) -> None:
        self._ctx = ctx
        self.audited: list[int] = []
        self._audit_printed = 0

    async def on_change(self, change: EntityChange) -> None:
        """Broadcast: print the change and its triggers; for updates and deletes also the
        payload and the transition rows (a create's rows all start from nothing)."""
        ctx, host = self._ctx, self._ctx.host
        triggers = host.derive_triggers(change)
        what = "deleted" if change.is_tombstone else "created" if change.is_create else "updated"
        head = (f"  change  #{change.seq:<3} {change.kind}:{change.id.ljust(ID_WIDTH)}  "
                f"{what} by {change.actor.type}:{change.actor.id}")
        if change.is_create:
            ctx.line(f"{head}  triggers {', '.join(triggers) or '-'}")
            return
        rows = [t for t in await host.transitions(kind=change.kind, entity_id=change.id)
                if t.change_seq == change.seq]
        to = ctx.arrow()
        cells = [("triggers", ", ".join(triggers) or "-"),
                 ("payload", ctx.json(host.trigger_payload(change)))]
        cells += [(r.field, " ".join((ctx.fmt_value(r.from_value, 40), to,
                                      ctx.fmt_value(r.to_value, 40)))) for r in rows]
        width = max(len(name) for name, _ in cells)
        lines = [head, *(f"          {name.ljust(width)}  {value}" for name, value in cells)]
        ctx.line("\n".join(lines))

    async def audit(self, change: EntityChange) -> None:
        """Work queue `demo-audit`: one instance handles each change, in per-entity order."""
        self.audited.append(change.seq)

    def flush_audit(self) -> None:
        """Print which changes `demo-audit` handled since the last call."""
        new = self.audited[self._audit_printed:]
        self._audit_printed = len(self.audited)
        if new:
            self._ctx.line(f"  worker  {AUDIT_GROUP} handled " + " ".join(f"#{s}" for s in new))


class CatalogDemo:
    """The catalog's demo step."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._printer: CatalogPrinter | None = None

    def steps(self) -> list[DemoStep]:
        """Declare, wire, update, re-declare unchanged, delete."""
        return [DemoStep(title="catalog", order=10, run=self.run, summary=self.summary)]

    async def run(self, ctx: DemoContext) -> bool:
        """The catalog's story, step by step, each after the last one's effects."""
        host, catalog, to = ctx.host, self._catalog, ctx.arrow()
        self._printer = printer = CatalogPrinter(ctx)
        host.registry.on_entity_changed(CATALOG_KIND, printer.on_change)
        host.registry.on_entity_changed(CATALOG_KIND, printer.audit,
                                        delivery=WorkQueue(AUDIT_GROUP))
        pause = 0.15 * ctx.seconds / STEPS

        async def step(title: str) -> None:
            await host.drain()
            printer.flush_audit()
            await ctx.step(title, pause=pause)

        await step("catalog: declare four systems")
        for system_id, fields in SYSTEMS.items():
            await catalog.upsert_system(system_id, **fields, actor=OPERATOR, reason="demo setup")
            await host.drain()

        await step("catalog: wire dependencies (edges are bookkeeping rows, not entities)")
        for source, target, impact in EDGES:
            edge = await catalog.add_dependency(source, target, impact)
            ctx.line(f"  edge    {source} {to} {target.ljust(3)}  ({edge.impact}): "
                     f"{source} depends on {target}")

        await step("catalog: update api's tags and db's description")
        api, db = SYSTEMS["api"], SYSTEMS["db"]
        await catalog.upsert_system("api", name=api["name"], metadata=api["metadata"],
                                    tags=[*api["tags"], "tier-1"], actor=OPERATOR,
                                    reason="api is tier 1")
        await host.drain()
        await catalog.upsert_system("db", name=db["name"], metadata=db["metadata"],
                                    tags=db["tags"], description="PostgreSQL primary for orders",
                                    actor=OPERATOR)

        await step("catalog: declare web again, exactly as it is")
        before = len(await host.changes(kind=CATALOG_KIND))
        await catalog.upsert_system("web", **SYSTEMS["web"], actor=OPERATOR, reason="re-declare")
        await host.drain()
        after = len(await host.changes(kind=CATALOG_KIND))
        ctx.line(f"  no-op   web unchanged: nothing logged, nothing delivered "
                 f"({after - before} new changes)")

        await step("catalog: delete cdn (a tombstone; the catalog's worker removes its edges)")
        edges = ", ".join(f"{d.source_system_id} {to} {d.target_system_id}"
                          for d in await catalog.downstream_of("cdn"))
        ctx.line(f"  edges   into cdn before: {edges or 'none'}")
        await host.entity(CATALOG_KIND).remove("cdn", actor=OPERATOR, reason="retired")
        await host.drain()
        printer.flush_audit()
        left = await catalog.downstream_of("cdn")
        cleanup = await host.deliveries(group=EDGE_CLEANUP_GROUP, limit=1)
        status = f"delivery {cleanup[0].id} {cleanup[0].status}" if cleanup else "no delivery"
        ctx.line(f"  edges   into cdn after {EDGE_CLEANUP_GROUP} ({status}): "
                 f"{len(left) or 'none'}")
        return True

    async def summary(self, ctx: DemoContext) -> list[str]:
        """The systems, the edges, and what `demo-audit` handled."""
        to = ctx.arrow()
        systems = await self._catalog.systems()
        edges = await self._catalog.dependencies()
        audited = len(self._printer.audited) if self._printer is not None else 0
        return [
            ctx.table(["system", "name", "tags", "description"],
                      ([sid, s.name, ", ".join(s.tags) or "-", s.description or "-"]
                       for sid, s in systems.items())),
            "",
            "edges: " + (", ".join(f"{d.source_system_id} {to} {d.target_system_id} "
                                   f"({d.impact})" for d in edges) or "none"),
            f"{AUDIT_GROUP} handled {audited} changes",
        ]
