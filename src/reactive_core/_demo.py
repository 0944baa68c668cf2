"""`reactive demo`: a short, self-contained run of the catalog that prints what happens.

It declares a few systems and dependencies, updates some, makes an update that
changes nothing, and deletes one, while a broadcast subscriber prints every logged
change (with its derived triggers, payload and transition rows) and a work-queue
subscriber (`demo-audit`) prints each delivery it handles. The catalog's own
work-queue subscriber removes the deleted system's dependency edges.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from . import _tables as tables
from ._changes import Actor, EntityChange
from ._errors import PluginLoadError
from ._host import Host
from ._registry import WorkQueue

if TYPE_CHECKING:
    from catalog_plugin import Catalog

AUDIT_GROUP = "demo-audit"
OPERATOR = Actor("user", "demo")
STEPS = 6

SYSTEMS: dict[str, dict[str, Any]] = {
    "web": {"name": "Web shop", "tags": ["frontend"], "metadata": {"team": "storefront"}},
    "api": {"name": "Orders API", "tags": ["backend"], "metadata": {"team": "orders"}},
    "db": {"name": "Orders database", "tags": ["data"], "metadata": {"team": "platform"}},
    "cdn": {"name": "Static CDN", "tags": ["edge"], "metadata": {"vendor": "example"}},
}
EDGES = (("web", "api", "critical"), ("api", "db", "critical"), ("web", "cdn", "degraded"))


class _OutputClosed(Exception):
    """Whoever read the demo's output went away (`reactive demo | head`)."""


class Console:
    """Prints whole lines at once; after a broken pipe it stays silent."""

    def __init__(self) -> None:
        self.closed = False

    def line(self, text: str = "") -> None:
        """Print `text` (may hold several lines) and flush."""
        if self.closed:
            return
        try:
            print(text, flush=True)
        except BrokenPipeError:
            self.closed = True


class DemoPrinter:
    """The demo's two subscribers and what they saw."""

    def __init__(self, host: Host, console: Console) -> None:
        self._host = host
        self._console = console
        self.triggers: Counter[str] = Counter()
        self.audited = 0
        self._printed = 0
        self._progress = anyio.Event()

    async def on_change(self, change: EntityChange) -> None:
        """Broadcast: print the change, its triggers, payload and transition rows."""
        triggers = self._host.derive_triggers(change)
        self.triggers.update(triggers)
        payload = json.dumps(self._host.trigger_payload(change), separators=(", ", ": "),
                             ensure_ascii=False)
        rows = [t for t in await self._host.transitions(kind=change.kind, entity_id=change.id)
                if t.change_seq == change.seq]
        to = tables.arrow()
        lines = [
            (f"  change  #{change.seq:<3} {change.kind}:{change.id}  "
             f"{tables.change_label(change)} by {change.actor.type}:{change.actor.id}"),
            f"          fields    {', '.join(change.changed_fields) or '-'}",
            f"          triggers  {', '.join(triggers) or '-'}",
            f"          payload   {payload}",
        ]
        width = max((len(r.field) for r in rows), default=0)
        lines += [f"          {r.field.ljust(width)}  {tables.fmt_value(r.from_value, 40)} "
                  f"{to} {tables.fmt_value(r.to_value, 40)}" for r in rows]
        self._console.line("\n".join(lines))
        self._printed = max(self._printed, change.seq)
        self._progress.set()
        self._progress = anyio.Event()

    async def audit(self, change: EntityChange) -> None:
        """Work queue `demo-audit`: one instance handles each change, in per-entity order."""
        self.audited += 1
        # Only for tidy output: print after the broadcast printer showed the change.
        with anyio.move_on_after(2):
            while self._printed < change.seq:
                await self._progress.wait()
        self._console.line(f"  worker  {AUDIT_GROUP} handled #{change.seq} "
                           f"{change.kind}:{change.id} ({tables.change_label(change)})")


async def run_demo(*, database_url: str | None, seconds: float,
                   plugins: Sequence[object] = ()) -> int:
    """Run the demo on `database_url` (default: a temporary SQLite file, removed after)."""
    try:
        from catalog_plugin import CATALOG_KIND, Catalog, CatalogPlugin
    except ImportError as exc:
        raise PluginLoadError(f"the demo needs the catalog plugin (catalog_plugin): {exc}") from exc

    console = Console()
    with ExitStack() as stack:
        if database_url is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="reactive-demo-"))
            database_url = f"sqlite:///{Path(folder) / 'demo.db'}"
        host = Host(database_url=database_url, plugins=[CatalogPlugin(), *plugins],
                    entry_points=False, config={"run_jobs": False, "poll_interval": 0.2})
        host.load_plugins()
        printer = DemoPrinter(host, console)
        host.registry.on_entity_changed(CATALOG_KIND, printer.on_change)
        host.registry.on_entity_changed(CATALOG_KIND, printer.audit,
                                        delivery=WorkQueue(AUDIT_GROUP))
        async with host:
            demo = _Demo(host=host, catalog=Catalog(host), kind=CATALOG_KIND, printer=printer,
                         console=console, pause=max(seconds, 0.0) / STEPS)
            try:
                await demo.run()
            except _OutputClosed:
                pass
    return 0


class _Demo:
    """The scripted steps, each waiting until everything the last one caused was handled."""

    def __init__(self, *, host: Host, catalog: Catalog, kind: str, printer: DemoPrinter,
                 console: Console, pause: float) -> None:
        self.host = host
        self.catalog = catalog
        self.kind = kind
        self.printer = printer
        self.out = console.line
        self.console = console
        self.pause = pause

    async def step(self, title: str) -> None:
        """Wait for the previous step's effects, pause, print the next heading."""
        await self.host.drain()
        if self.console.closed:
            raise _OutputClosed
        await anyio.sleep(self.pause)
        self.out()
        self.out(f"== {title}")

    async def run(self) -> None:
        """Declare, wire, update, re-declare unchanged, delete; then summarise."""
        host, catalog, to = self.host, self.catalog, tables.arrow()
        self.out(f"reactive demo on {tables.display_url(host.db.url)}")
        self.out(f"plugins: {', '.join(host.plugin_names)}; host {host.instance_id}")

        await self.step("declare four systems")
        for system_id, fields in SYSTEMS.items():
            await catalog.upsert_system(system_id, **fields, actor=OPERATOR, reason="demo setup")
            await host.drain()

        await self.step("wire dependencies (edges are bookkeeping rows, not entities)")
        for source, target, impact in EDGES:
            edge = await catalog.add_dependency(source, target, impact)
            self.out(f"  edge    {source} {to} {target}  ({edge.impact}): "
                     f"{source} depends on {target}")

        await self.step("update: api gets a tag, db a description")
        api, db = SYSTEMS["api"], SYSTEMS["db"]
        await catalog.upsert_system("api", name=api["name"], metadata=api["metadata"],
                                    tags=[*api["tags"], "tier-1"], actor=OPERATOR,
                                    reason="api is tier 1")
        await host.drain()
        await catalog.upsert_system("db", name=db["name"], metadata=db["metadata"],
                                    tags=db["tags"], description="PostgreSQL primary for orders",
                                    actor=OPERATOR)

        await self.step("no-op: declare web again, exactly as it is")
        before = len(await host.changes(kind=self.kind))
        await catalog.upsert_system("web", **SYSTEMS["web"], actor=OPERATOR, reason="re-declare")
        await host.drain()
        after = len(await host.changes(kind=self.kind))
        self.out(f"  no-op   web unchanged: nothing logged, nothing delivered "
                 f"({after - before} new changes)")

        await self.step("delete cdn (a tombstone; the catalog's worker removes its edges)")
        edges = ", ".join(f"{d.source_system_id} {to} {d.target_system_id}"
                          for d in await catalog.downstream_of("cdn"))
        self.out(f"  edges   into cdn before: {edges or 'none'}")
        await host.entity(self.kind).remove("cdn", actor=OPERATOR, reason="retired")
        await host.drain()
        left = await catalog.downstream_of("cdn")
        cleanup = await host.deliveries(group="catalog-edge-cleanup", limit=1)
        status = f"delivery {cleanup[0].id} {cleanup[0].status}" if cleanup else "no delivery"
        self.out(f"  edges   into cdn after catalog-edge-cleanup ({status}): "
                 f"{len(left) or 'none'}")

        await self.step("summary")
        await self.summary()

    async def summary(self) -> None:
        """Systems, edges, and how many changes, transitions, deliveries, triggers."""
        host, to = self.host, tables.arrow()
        systems = await self.catalog.systems()
        self.out(tables.render_table(
            ["system", "name", "tags", "description"],
            ([sid, s.name, ", ".join(s.tags) or "-", s.description or "-"]
             for sid, s in systems.items()),
        ))
        edges = await self.catalog.dependencies()
        self.out()
        self.out("edges: " + (", ".join(
            f"{d.source_system_id} {to} {d.target_system_id} ({d.impact})" for d in edges)
            or "none"))
        changes = await host.changes(kind=self.kind)
        transitions = await host.transitions(kind=self.kind)
        deliveries = await host.deliveries(limit=10_000)
        statuses = Counter(d.status for d in deliveries)
        self.out(f"changes: {len(changes)}  transitions: {len(transitions)}  "
                 f"deliveries: {len(deliveries)} "
                 f"({', '.join(f'{n} {s}' for s, n in sorted(statuses.items())) or 'none'}); "
                 f"{AUDIT_GROUP} handled {self.printer.audited}")
        self.out("triggers: " + (", ".join(
            f"{t} x{n}" for t, n in self.printer.triggers.items()) or "none"))
