"""The SLO plugin's part of `reactive demo`: an objective on the flaky target's system,
an upstream that fails first, and the `slo` entity's changes as they happen.

Before the health story (order 15) it adds system `dns`, which `api` depends on, with
a `tcp` check on a local port where nothing listens: its first run fails, so `dns` is
down before anything else. The objective `api-availability` asks 99.999 % of `api`
over one day — 0.864 s of error budget, so the demo's sub-second outage shows — and is
`self-only`: downtime blamed on an upstream that is down costs `api` nothing. `db` is
an excluded dependency (the team of `api` runs its database, so its outages are
`api`'s own), which leaves `dns` the only upstream to blame.

While the health story plays, a watcher prints each downtime event as it opens and
closes. `api` goes down while `dns` is down: the event is `upstream` (dns). As soon as
it is open, `dns` is fixed (its port starts listening and its check runs): the
upstream event closes and, `api` being still down, a `self` one opens — the outage is
split. `api` recovers: the self event closes and the budget shows what it cost. A
broadcast subscriber prints every change of the `slo` entity meanwhile. After the
health story (order 25) comes what `reactive slo` prints.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import anyio

from catalog_plugin import catalog_of
from health_plugin import health_service
from reactive_core import Actor, DemoContext, DemoStep, EntityChange
from reactive_core.automation import DemoWebhook, automation_of

from .commands import (
    events_table,
    fmt_days,
    fmt_percent,
    fmt_seconds,
    objective_text,
    objectives_table,
)
from .entity import SLO_KIND
from .models import Attribution, DependencyExclusion, Objective
from .surroundings import CATALOG_KIND, HEALTH_KIND

if TYPE_CHECKING:
    from .reads import EventView
    from .service import SloService

OPERATOR = Actor("user", "demo")
SYSTEM = "api"
"""The flaky target's system (the health plugin's demo checks it)."""
EXCLUDED = "db"
UPSTREAM, UPSTREAM_NAME, UPSTREAM_CHECK = "dns", "Name service", "dns-tcp"
UPSTREAM_THRESHOLDS = {"degraded_min_failures": 1, "unhealthy_min_failures": 1}
OBJECTIVE = Objective(
    id="api-availability", system_id=SYSTEM, target=99.999, window_days=1,
    dependency_exclusion=DependencyExclusion.SELF_ONLY, excluded_dependency_ids=(EXCLUDED,))
SHOWN_FIELDS = ("budgetRemainingPercent", "burnAlert", "isBreaching", "burnRate",
                "availability", "currentStreak", "bestStreak")
"""The `slo` fields a printed change shows, in this order (when they changed)."""
BUDGET_RULE = """
id: {objective}-budget-low
description: the error budget stayed below 20 % (for 1 second here; 10 minutes in earnest)
triggers:
  - numeric_state:
      value: "state.slo['{objective}'].budgetRemainingPercent"
      below: 20
      for: {{seconds: 1}}
actions:
  - webhook:
      url: "{url}/budget-low"
      body:
        objective: "{{{{ trigger.id }}}}"
        budgetRemainingPercent: "{{{{ trigger.value | round(1) }}}}"
"""
"""The demo's rule on the objective: a `for` hold, then a call of a local webhook."""
POLL_SECONDS = 0.01
"""How often the watcher reads the objective's events."""


def _value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value).lower()
    if isinstance(value, float):
        return f"{value + 0.0:.7g}"  # + 0.0: a negative zero prints as 0
    return str(value)


class SloPrinter:
    """Broadcast subscriber on `slo`: prints each change of the demo's objective."""

    def __init__(self, ctx: DemoContext) -> None:
        self._ctx = ctx

    async def on_change(self, change: EntityChange) -> None:
        """The created state in a line, or the fields that moved, with why."""
        ctx, to = self._ctx, self._ctx.arrow()
        head = f"  slo     {change.kind}:{change.id}  "
        if change.is_tombstone:
            ctx.line(f"{head}removed ({change.reason or '-'})")
            return
        after = change.next or {}
        if change.is_create:
            ctx.line(f"{head}created  " + ", ".join(
                f"{name} {_value(after.get(name))}"
                for name in ("budgetRemainingPercent", "burnAlert", "availability")))
            return
        before = change.prev or {}
        moved = [name for name in SHOWN_FIELDS
                 if _value(before.get(name)) != _value(after.get(name))]
        if not moved:
            return
        width = max(len(name) for name in moved)
        indent = " " * (len(head) + len("updated  "))
        lines = [f"{head}updated  ({change.reason or 'no reason given'})"]
        lines += [f"{indent}{name.ljust(width)}  {_value(before.get(name))} {to} "
                  f"{_value(after.get(name))}" for name in moved]
        ctx.line("\n".join(lines))


def _closed_port(ctx: DemoContext) -> socket.socket:
    """A socket bound to a local port and not listening (connections are refused until
    it listens), closed when the demo ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ctx.callback(sock.close)
    sock.bind(("127.0.0.1", 0))
    return sock


class Watcher:
    """Prints the objective's downtime events as they open and close, and fixes the
    upstream once an event is blamed on it."""

    def __init__(self, ctx: DemoContext, service: SloService, port: socket.socket) -> None:
        self._ctx = ctx
        self._service = service
        self._port = port
        self.shown: dict[int, EventView] = {}
        self.fixed = False
        self.done = anyio.Event()

    async def run(self) -> None:
        """Until every event is closed after the fix (or the demo stops it)."""
        while not self._ctx.closed:
            events = list(reversed(await self._service.events(OBJECTIVE.id)))
            for event in events:
                self._show(event)
            if not self.fixed and any(e.end is None and e.attribution == Attribution.UPSTREAM
                                      for e in events):
                await self._fix_upstream()
            elif self.fixed and all(e.end is not None for e in events):
                self.done.set()
                return
            await anyio.sleep(POLL_SECONDS)

    def _show(self, event: EventView) -> None:
        seen = self.shown.get(event.id)
        self.shown[event.id] = event
        blamed = event.attribution + (f" ({event.upstream_system_id})"
                                      if event.upstream_system_id is not None else "")
        label = f"  event   #{event.id} {blamed.ljust(len('upstream ') + len(UPSTREAM) + 2)}"
        if seen is None:
            if event.attribution == Attribution.UPSTREAM:
                why = (f"{SYSTEM} is down while {event.upstream_system_id}, which it depends "
                       f"on, is down: not {SYSTEM}'s fault, no budget spent")
            elif self.fixed:
                why = (f"{UPSTREAM} is up again, {SYSTEM} still down: its own downtime from "
                       "now (the outage is split)")
            else:
                why = f"{SYSTEM} is down on its own: its budget burns"
            self._ctx.line(f"{label}  opened  {why}")
        if event.end is not None and (seen is None or seen.end is None):
            seconds = event.duration_seconds or 0.0
            self._ctx.line(f"{label}  closed  after {fmt_seconds(seconds)}")

    async def _fix_upstream(self) -> None:
        self.fixed = True
        self._port.listen(8)
        outcome = await health_service(self._ctx.host).run_check(UPSTREAM_CHECK)
        self._ctx.line(f"  fix     {UPSTREAM}: its port listens now; {UPSTREAM_CHECK} runs: "
                       f"{outcome.status}")


class SloDemo:
    """The SLO plugin's demo steps."""

    def __init__(self, service: SloService) -> None:
        self._service = service
        self._watcher: Watcher | None = None
        self._webhook: DemoWebhook | None = None

    def steps(self) -> list[DemoStep]:
        """The objective and its upstream before the health story; its budget after."""
        return [DemoStep(title="slo objective", order=15, run=self.setup),
                DemoStep(title="slo budget", order=25, run=self.report, summary=self.summary)]

    async def setup(self, ctx: DemoContext) -> bool:
        """Add the upstream (failing), the objective, the printer and the watcher."""
        host, to = ctx.host, ctx.arrow()
        await ctx.step(f"slo: an objective on {SYSTEM}, and an upstream that fails first")
        kinds = host.registry.kinds
        if CATALOG_KIND not in kinds or HEALTH_KIND not in kinds:
            ctx.line("  the SLO part needs the catalog and health plugins: skipped")
            return True
        catalog, health = catalog_of(host), health_service(host)
        if await host.entity(CATALOG_KIND).get(SYSTEM) is None:
            ctx.line(f"  the SLO part needs system {SYSTEM} (the catalog's demo): skipped")
            return True
        await catalog.upsert_system(UPSTREAM, name=UPSTREAM_NAME, tags=["infra"],
                                    actor=OPERATOR, reason="demo setup")
        await host.drain()
        await catalog.add_dependency(SYSTEM, UPSTREAM, "critical")
        port = _closed_port(ctx)
        address = f"127.0.0.1:{port.getsockname()[1]}"
        await health.upsert_check(
            UPSTREAM_CHECK, strategy="tcp", interval_seconds=60.0,
            config={"host": "127.0.0.1", "port": port.getsockname()[1], "timeout_seconds": 2},
            actor=OPERATOR, reason="demo setup")
        await health.associate(UPSTREAM, UPSTREAM_CHECK, thresholds=UPSTREAM_THRESHOLDS,
                               actor=OPERATOR, reason="demo setup")
        outcome = await health.run_check(UPSTREAM_CHECK)
        ctx.line(f"  edge    {SYSTEM} {to} {UPSTREAM}  (critical): {SYSTEM} depends on "
                 f"{UPSTREAM} ({UPSTREAM_NAME})")
        ctx.line(f"  check   {UPSTREAM_CHECK}  tcp {address}, where nothing listens "
                 f"{to} system {UPSTREAM}, unhealthy after 1 failure: ran {outcome.status}")
        printer = SloPrinter(ctx)
        host.registry.on_entity_changed(SLO_KIND, printer.on_change)
        objective = OBJECTIVE
        budget = (100 - objective.target) / 100 * objective.window_days * 86_400
        ctx.line(f"  goal    {objective.id}: {objective.target:g}% of {SYSTEM} over "
                 f"{fmt_days(objective.window_days)}, {budget:.3g}s of error budget")
        ctx.line(f"          {objective.dependency_exclusion}: downtime blamed on a down "
                 f"upstream costs {SYSTEM} nothing; {EXCLUDED} excluded (its outages are "
                 f"{SYSTEM}'s own)")
        automation = automation_of(host)
        if automation is not None:
            self._webhook = webhook = DemoWebhook(ctx)
            await automation.install(BUDGET_RULE.format(objective=objective.id, url=webhook.url),
                                     origin="demo")
            ctx.line(f"  rule    {objective.id}-budget-low: budget below 20% for 1s {to} "
                     f"POST {webhook.url}/budget-low")
        await self._service.upsert_objective(objective, actor=OPERATOR)
        await host.drain()
        self._watcher = watcher = Watcher(ctx, self._service, port)
        group = await ctx.enter(anyio.create_task_group())
        ctx.callback(group.cancel_scope.cancel)  # left before the group waits for it
        group.start_soon(watcher.run)
        return True

    async def report(self, ctx: DemoContext) -> bool:
        """Wait for the last event to close; print `reactive slo` and the events."""
        watcher = self._watcher
        if watcher is None:
            return True
        await ctx.step("slo (what `reactive slo` prints)")
        with anyio.move_on_after(10 + 3 * ctx.seconds):
            await watcher.done.wait()
        told = [(e.attribution, e.upstream_system_id) for e in watcher.shown.values()]
        ctx.line(objectives_table(await self._service.objectives()))
        await ctx.step(f"slo {OBJECTIVE.id} (what `reactive slo {OBJECTIVE.id}` prints)")
        view = await self._service.objective(OBJECTIVE.id)
        events = await self._service.events(OBJECTIVE.id)
        now = ctx.host.clock()
        ctx.line(objective_text(view, events, now) if view is not None
                 else events_table(events, now))
        if told[:2] != [(Attribution.UPSTREAM, UPSTREAM), (Attribution.SELF, None)]:
            ctx.line(f"  the story did not finish: expected an outage of {SYSTEM} blamed on "
                     f"{UPSTREAM}, then split into {SYSTEM}'s own once {UPSTREAM} was fixed")
            return False
        return await self._budget_rule(ctx)

    async def _budget_rule(self, ctx: DemoContext) -> bool:
        """The budget rule's hold, then its call of the local webhook."""
        webhook = self._webhook
        if webhook is None:
            return True
        await ctx.step(f"automation: {OBJECTIVE.id}-budget-low (the budget stays below 20%)")
        if not await webhook.wait(10 + 3 * ctx.seconds):
            ctx.line("  the webhook was not called: expected the budget rule's hold to fire "
                     "once the budget stayed below 20% for 1s")
            return False
        return True

    async def summary(self, ctx: DemoContext) -> list[str]:
        """The objective's budget and its events in a line."""
        view = await self._service.objective(OBJECTIVE.id)
        if view is None or self._watcher is None:
            return []
        events = ", ".join(f"{e.attribution}" + (f" ({e.upstream_system_id})"
                                                  if e.upstream_system_id else "")
                           for e in self._watcher.shown.values())
        status = view.status
        return [f"objective {OBJECTIVE.id}: {fmt_percent(status.error_budget_remaining_percent)} "
                f"of its budget left, burn alert {status.burn_alert}; events: "
                f"{events or 'none'}"]
