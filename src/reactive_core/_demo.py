"""`reactive demo`: a short, self-contained run of the catalog and health plugins.

Catalog: it declares a few systems and dependencies, updates some, makes an update
that changes nothing, and deletes one, while a broadcast subscriber prints every
logged change (its derived triggers and, for updates and deletes, payload and
transition rows) and a work-queue subscriber (`demo-audit`) handles each change once.
The catalog's own work-queue subscriber removes the deleted system's dependency edges.

Health: a flaky HTTP target on 127.0.0.1 (`health_plugin.demo.FlakyTarget`) answers
200, then 500, then nothing at all, then 200 again; an `http` check on it is attached
to system `api`, and a `tcp` check on a local port where nothing listens to system
`db`. The health scheduler runs both inside the demo's host, and a broadcast
subscriber prints each health transition as it happens, with the runs that led to it
and its derived triggers, until `api` has recovered and `db` is unhealthy. A status
table (what `reactive status` prints) and a summary end the run.

Everything runs on 127.0.0.1 and, by default, on a temporary SQLite file.
"""

from __future__ import annotations

import json
import socket
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio

from . import _tables as tables
from ._changes import Actor, EntityChange
from ._errors import PluginLoadError
from ._host import Host
from ._registry import WorkQueue

if TYPE_CHECKING:
    from catalog_plugin import Catalog
    from health_plugin import CheckRun, HealthService
    from health_plugin.demo import FlakyTarget

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

TARGET_PLAN: tuple[tuple[Literal["ok", "error", "hang"], int], ...] = (
    ("ok", 4), ("error", 4), ("hang", 2), ("ok", 1))
"""What the flaky target answers, by request: with the default thresholds the `api`
check turns degraded at the 2nd failure, unhealthy at the 5th, healthy at the next 200."""
HTTP_CHECK, HTTP_SYSTEM = "api-http", "api"
TCP_CHECK, TCP_SYSTEM = "db-tcp", "db"
TCP_THRESHOLDS = {"degraded_min_failures": 2, "unhealthy_min_failures": 2}
RUNS_SHOWN = 7
"""How many of the newest runs a printed health transition shows."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Pacing:
    """How `--seconds N` spreads the demo: about 15% for the catalog, the rest for health."""

    step_pause: float
    check_interval: float
    http_timeout: float
    linger: float
    deadline: float

    @classmethod
    def for_seconds(cls, seconds: float) -> Pacing:
        """The pacing of a demo meant to take about `seconds` (0: as fast as it goes)."""
        seconds = max(seconds, 0.0)
        # The health story takes about 12 check intervals, plus a few to show it holds.
        interval = max(0.05, seconds / 20)
        return cls(step_pause=0.15 * seconds / STEPS, check_interval=interval,
                   # Long enough that a loaded machine never times out a 200 by accident.
                   http_timeout=max(0.3, 0.8 * interval), linger=3 * interval,
                   deadline=30.0 + 3 * seconds)


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


def _json(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)


class CatalogPrinter:
    """The catalog part's two subscribers and what they saw."""

    def __init__(self, host: Host, console: Console) -> None:
        self._host = host
        self._console = console
        self.triggers: Counter[str] = Counter()
        self.audited: list[int] = []
        self._audit_printed = 0

    async def on_change(self, change: EntityChange) -> None:
        """Broadcast: print the change and its triggers; for updates and deletes also the
        payload and the transition rows (a create's rows all start from nothing)."""
        triggers = self._host.derive_triggers(change)
        self.triggers.update(triggers)
        head = (f"  change  #{change.seq:<3} {change.kind}:{change.id.ljust(ID_WIDTH)}  "
                f"{tables.change_label(change)} by {change.actor.type}:{change.actor.id}")
        if change.is_create:
            self._console.line(f"{head}  triggers {', '.join(triggers) or '-'}")
            return
        rows = [t for t in await self._host.transitions(kind=change.kind, entity_id=change.id)
                if t.change_seq == change.seq]
        to = tables.arrow()
        cells = [("triggers", ", ".join(triggers) or "-"),
                 ("payload", _json(self._host.trigger_payload(change)))]
        cells += [(r.field, " ".join((tables.fmt_value(r.from_value, 40), to,
                                      tables.fmt_value(r.to_value, 40)))) for r in rows]
        width = max(len(name) for name, _ in cells)
        lines = [head, *(f"          {name.ljust(width)}  {value}" for name, value in cells)]
        self._console.line("\n".join(lines))

    async def audit(self, change: EntityChange) -> None:
        """Work queue `demo-audit`: one instance handles each change, in per-entity order."""
        self.audited.append(change.seq)

    def flush_audit(self) -> None:
        """Print which changes `demo-audit` handled since the last call."""
        new = self.audited[self._audit_printed:]
        self._audit_printed = len(self.audited)
        if new:
            self._console.line(f"  worker  {AUDIT_GROUP} handled "
                               + " ".join(f"#{seq}" for seq in new))


def _run_label(run: CheckRun) -> str:
    """A run in a word: the HTTP status, `open`, `timeout`, `refused` or `error`."""
    if (code := run.result.get("status_code")) is not None:
        return str(code)
    if run.status == "healthy":
        return "open" if "connected" in run.result else "ok"
    error = str(run.result.get("error", "")).lower()
    if "timed out" in error:
        return "timeout"
    return "refused" if "refused" in error else "error"


class HealthPrinter:
    """Broadcast subscriber on `health`: prints each change as it happens."""

    def __init__(self, host: Host, console: Console, service: HealthService) -> None:
        self._host = host
        self._console = console
        self._service = service
        self.triggers: Counter[str] = Counter()
        self.statuses: defaultdict[str, list[str | None]] = defaultdict(list)
        self.started = datetime.now(UTC)
        self.id_width = 0
        self._changed = anyio.Event()

    async def on_change(self, change: EntityChange) -> None:
        """Print the transition rows, the runs that led to them, and the triggers."""
        triggers = self._host.derive_triggers(change)
        self.triggers.update(triggers)
        after = change.next or {}
        self.statuses[change.id].append(after.get("status"))
        offset = (change.occurred_at - self.started).total_seconds()
        head = f"  {f'+{offset:.2f}s':>7}  {change.kind}:{change.id.ljust(self.id_width)}  "
        label = len("healthyChecks")
        if change.is_create:
            counts = f"{after.get('healthyChecks')} of {after.get('totalChecks')} checks"
            created = f"{after.get('status')}: {counts}, no runs yet"
            lines = [f"{head}{'created'.ljust(label)}  {created}"]
        elif change.is_tombstone:
            lines = [f"{head}{'removed'.ljust(label)}  no enabled check left"]
        else:
            to = tables.arrow()
            rows = sorted((t for t in await self._host.transitions(kind=change.kind,
                                                                   entity_id=change.id)
                           if t.change_seq == change.seq), key=lambda t: t.field != "status")
            runs = [r for r in await self._service.runs(change.id, limit=RUNS_SHOWN + 1)
                    if r.timestamp <= change.occurred_at]
            shown = " ".join(_run_label(r) for r in reversed(runs[:RUNS_SHOWN]))
            more = tables.ellipsis() + " " if len(runs) > RUNS_SHOWN else ""
            cells = [(r.field, f"{r.from_value or '-'} {to} {r.to_value or '-'}") for r in rows]
            cells += [("runs", f"{more}{shown} (newest last)"),
                      ("triggers", ", ".join(triggers) or "-")]
            indent = " " * len(head)
            lines = [f"{head if i == 0 else indent}{name.ljust(label)}  {value}"
                     for i, (name, value) in enumerate(cells)]
        self._console.line("\n".join(lines))
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until `done()` holds after some change; False after `timeout` seconds."""
        with anyio.move_on_after(timeout):
            while not done():
                if self._console.closed:
                    raise _OutputClosed
                await self._changed.wait()
            return True
        return False


def _closed_port(stack: AsyncExitStack) -> int:
    """A local port where nothing listens: bound (so nobody else takes it), never listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stack.callback(sock.close)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    return port


async def run_demo(*, database_url: str | None, seconds: float,
                   plugins: Sequence[object] = ()) -> int:
    """Run the demo on `database_url` (default: a temporary SQLite file, removed after).

    Returns 0, or 1 when the health story did not complete in time.
    """
    try:
        from catalog_plugin import CATALOG_KIND, Catalog, CatalogPlugin
    except ImportError as exc:
        raise PluginLoadError(f"the demo needs the catalog plugin (catalog_plugin): {exc}") from exc
    try:
        from health_plugin import HEALTH_KIND, HealthPlugin, HealthService
        from health_plugin.demo import FlakyTarget
    except ImportError as exc:
        raise PluginLoadError(f"the demo needs the health plugin (health_plugin): {exc}") from exc

    console = Console()
    pacing = Pacing.for_seconds(seconds)
    status = 0
    async with AsyncExitStack() as stack:
        if database_url is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="reactive-demo-"))
            database_url = f"sqlite:///{Path(folder) / 'demo.db'}"
        closed_port = _closed_port(stack)
        target = await stack.enter_async_context(FlakyTarget(TARGET_PLAN))
        host = Host(
            database_url=database_url, plugins=[CatalogPlugin(), HealthPlugin(), *plugins],
            entry_points=False,
            config={"run_jobs": False, "poll_interval": 0.2,
                    # Checks run here although scheduled jobs do not; no jitter, so the
                    # story keeps its pace.
                    "plugins": {"health": {"scheduler": True, "jitter_ratio": 0.0}}})
        host.load_plugins()
        catalog_printer = CatalogPrinter(host, console)
        host.registry.on_entity_changed(CATALOG_KIND, catalog_printer.on_change)
        host.registry.on_entity_changed(CATALOG_KIND, catalog_printer.audit,
                                        delivery=WorkQueue(AUDIT_GROUP))
        service = HealthService(host)
        health_printer = HealthPrinter(host, console, service)
        host.registry.on_entity_changed(HEALTH_KIND, health_printer.on_change)
        async with host:
            demo = _Demo(host=host, catalog=Catalog(host), kind=CATALOG_KIND,
                         catalog_printer=catalog_printer, health=service,
                         health_printer=health_printer, target=target,
                         closed_port=closed_port, console=console, pacing=pacing)
            try:
                status = await demo.run()
            except _OutputClosed:
                pass
    return status


class _Demo:
    """The scripted steps, each waiting until everything the last one caused was handled."""

    def __init__(self, *, host: Host, catalog: Catalog, kind: str,
                 catalog_printer: CatalogPrinter, health: HealthService,
                 health_printer: HealthPrinter, target: FlakyTarget, closed_port: int,
                 console: Console, pacing: Pacing) -> None:
        self.host = host
        self.catalog = catalog
        self.kind = kind
        self.printer = catalog_printer
        self.health = health
        self.health_printer = health_printer
        self.target = target
        self.closed_port = closed_port
        self.out = console.line
        self.console = console
        self.pacing = pacing

    async def step(self, title: str) -> None:
        """Wait for the previous step's effects, pause, print the next heading."""
        await self.host.drain()
        self.printer.flush_audit()
        if self.console.closed:
            raise _OutputClosed
        await anyio.sleep(self.pacing.step_pause)
        self.out()
        self.out(f"== {title}")

    async def run(self) -> int:
        """The catalog part, the health part, the status table and the summary."""
        host = self.host
        self.out(f"reactive demo on {tables.display_url(host.db.url)}")
        self.out(f"plugins: {', '.join(host.plugin_names)}; host {host.instance_id}")
        await self.catalog_part()
        story = await self.health_part()
        await self.step("status (what `reactive status` prints)")
        rows = await tables.system_statuses(host)
        self.out(tables.status_table(rows, now=datetime.now(UTC)))
        await self.step("summary")
        await self.summary()
        return 0 if story else 1

    async def catalog_part(self) -> None:
        """Declare, wire, update, re-declare unchanged, delete."""
        host, catalog, to = self.host, self.catalog, tables.arrow()
        await self.step("catalog: declare four systems")
        for system_id, fields in SYSTEMS.items():
            await catalog.upsert_system(system_id, **fields, actor=OPERATOR, reason="demo setup")
            await host.drain()

        await self.step("catalog: wire dependencies (edges are bookkeeping rows, not entities)")
        for source, target, impact in EDGES:
            edge = await catalog.add_dependency(source, target, impact)
            self.out(f"  edge    {source} {to} {target.ljust(3)}  ({edge.impact}): "
                     f"{source} depends on {target}")

        await self.step("catalog: update api's tags and db's description")
        api, db = SYSTEMS["api"], SYSTEMS["db"]
        await catalog.upsert_system("api", name=api["name"], metadata=api["metadata"],
                                    tags=[*api["tags"], "tier-1"], actor=OPERATOR,
                                    reason="api is tier 1")
        await host.drain()
        await catalog.upsert_system("db", name=db["name"], metadata=db["metadata"],
                                    tags=db["tags"], description="PostgreSQL primary for orders",
                                    actor=OPERATOR)

        await self.step("catalog: declare web again, exactly as it is")
        before = len(await host.changes(kind=self.kind))
        await catalog.upsert_system("web", **SYSTEMS["web"], actor=OPERATOR, reason="re-declare")
        await host.drain()
        after = len(await host.changes(kind=self.kind))
        self.out(f"  no-op   web unchanged: nothing logged, nothing delivered "
                 f"({after - before} new changes)")

        await self.step("catalog: delete cdn (a tombstone; the catalog's worker removes its edges)")
        edges = ", ".join(f"{d.source_system_id} {to} {d.target_system_id}"
                          for d in await catalog.downstream_of("cdn"))
        self.out(f"  edges   into cdn before: {edges or 'none'}")
        await host.entity(self.kind).remove("cdn", actor=OPERATOR, reason="retired")
        await host.drain()
        self.printer.flush_audit()
        left = await catalog.downstream_of("cdn")
        cleanup = await host.deliveries(group="catalog-edge-cleanup", limit=1)
        status = f"delivery {cleanup[0].id} {cleanup[0].status}" if cleanup else "no delivery"
        self.out(f"  edges   into cdn after catalog-edge-cleanup ({status}): "
                 f"{len(left) or 'none'}")

    async def health_part(self) -> bool:
        """Two checks run by the scheduler; print transitions until the story is told."""
        pacing, to = self.pacing, tables.arrow()
        await self.step(f"health: the scheduler runs two checks every "
                        f"{pacing.check_interval:g}s (times since they start)")
        plan = ", ".join(f"{n}x {_BEHAVIOUR[b]}" for b, n in TARGET_PLAN[:-1])
        self.out(f"  target  {self.target.url} answers {plan}, "
                 f"then {_BEHAVIOUR[TARGET_PLAN[-1][0]]}")
        self.out(f"  check   {HTTP_CHECK}  http GET on the target, timeout "
                 f"{pacing.http_timeout:g}s {to} system {HTTP_SYSTEM}")
        self.out("          degraded after 2 failures in a row, unhealthy after 5 (defaults)")
        self.out(f"  check   {TCP_CHECK}    tcp 127.0.0.1:{self.closed_port}, where nothing "
                 f"listens {to} system {TCP_SYSTEM}")
        self.out(f"          unhealthy after {TCP_THRESHOLDS['unhealthy_min_failures']} "
                 "failures in a row")
        await self.health.upsert_check(
            HTTP_CHECK, strategy="http", interval_seconds=pacing.check_interval,
            config={"url": self.target.url, "timeout_seconds": pacing.http_timeout},
            actor=OPERATOR, reason="demo setup")
        await self.health.upsert_check(
            TCP_CHECK, strategy="tcp", interval_seconds=pacing.check_interval,
            config={"host": "127.0.0.1", "port": self.closed_port,
                    "timeout_seconds": pacing.http_timeout},
            actor=OPERATOR, reason="demo setup")
        printer = self.health_printer
        printer.id_width = max(len(HTTP_SYSTEM), len(TCP_SYSTEM))
        printer.started = datetime.now(UTC)
        await self.health.associate(HTTP_SYSTEM, HTTP_CHECK, actor=OPERATOR, reason="demo setup")
        await self.health.associate(TCP_SYSTEM, TCP_CHECK, thresholds=TCP_THRESHOLDS,
                                    actor=OPERATOR, reason="demo setup")

        def told() -> bool:
            api, db = printer.statuses[HTTP_SYSTEM], printer.statuses[TCP_SYSTEM]
            recovered = any(s != "healthy" for s in api) and api[-1:] == ["healthy"]
            return recovered and db[-1:] == ["unhealthy"]

        if not await printer.wait_for(told, pacing.deadline):
            self.out(f"  the story did not finish within {pacing.deadline:g}s: expected "
                     f"{HTTP_SYSTEM} to recover and {TCP_SYSTEM} to stay unhealthy")
            return False
        await anyio.sleep(pacing.linger)  # the recovery holds
        return True

    async def summary(self) -> None:
        """Systems, edges, what the target served, and how many changes, transitions,
        deliveries and triggers there were."""
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
        served = ", ".join(f"{len(list(group))} {behaviour}"
                           for behaviour, group in groupby(self.target.served))
        ran = [f"{check} {len(await self.health.runs(system, limit=100_000))}"
               for system, check in ((HTTP_SYSTEM, HTTP_CHECK), (TCP_SYSTEM, TCP_CHECK))]
        self.out(f"target: {self.target.requests} requests ({served or 'none'}); "
                 f"check runs: {', '.join(ran)}")
        changes = Counter(c.kind for c in await host.changes())
        transitions = await host.transitions()
        deliveries = await host.deliveries(limit=100_000)
        statuses = Counter(d.status for d in deliveries)
        self.out("changes: " + (", ".join(f"{n} {kind}" for kind, n in changes.items())
                                or "none") + f"; transitions: {len(transitions)}")
        self.out(f"deliveries: {len(deliveries)} "
                 f"({', '.join(f'{n} {s}' for s, n in sorted(statuses.items())) or 'none'}); "
                 f"{AUDIT_GROUP} handled {len(self.printer.audited)}")
        lines = [", ".join(f"{t} x{n}" for t, n in counter.items())
                 for counter in (self.printer.triggers, self.health_printer.triggers) if counter]
        self.out("triggers: " + ("\n          ".join(lines) or "none"))


_BEHAVIOUR = {"ok": "200", "error": "500", "hang": "no answer"}
