"""The health plugin's part of `reactive demo`: two checks, told as their health changes.

A flaky HTTP target on 127.0.0.1 (`flaky.FlakyTarget`) answers 200, then 500, then
nothing at all, then 200 again; an `http` check on it is attached to system `api`, and
a `tcp` check on a local port where nothing listens to system `db`. The host's timers
run both; a broadcast subscriber prints each health transition as it happens, with the
runs that led to it and its derived triggers, until `api` has recovered and `db` is
unhealthy. Then the status table `reactive status` prints.
"""

from __future__ import annotations

import socket
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from typing import TYPE_CHECKING, Literal

import anyio

from reactive_core import Actor, DemoContext, DemoStep, EntityChange
from reactive_core.automation import automation_of

from .commands import status_rows_table
from .flaky import FlakyTarget
from .models import HEALTH_KIND, CheckRun

if TYPE_CHECKING:
    from .service import HealthService

OPERATOR = Actor("user", "demo")
TARGET_PLAN: tuple[tuple[Literal["ok", "error", "hang"], int], ...] = (
    ("ok", 4), ("error", 4), ("hang", 2), ("ok", 1))
"""What the flaky target answers, by request: with the default thresholds the `api`
check turns degraded at the 2nd failure, unhealthy at the 5th, healthy at the next 200."""
HTTP_CHECK, HTTP_SYSTEM = "api-http", "api"
TCP_CHECK, TCP_SYSTEM = "db-tcp", "db"
TCP_THRESHOLDS = {"degraded_min_failures": 2, "unhealthy_min_failures": 2}
FLAPPING_RULE = f"""
id: {HTTP_SYSTEM}-flapping
description: a system whose health changed twice within ten minutes is flapping
triggers:
  - event: healthcheck.system_health_changed
    filter: "trigger.systemId == '{HTTP_SYSTEM}'"
    window: {{count: 2, minutes: 10, refire: once}}
actions:
  - log: >-
      {{{{ trigger.systemId }}}} is flapping:
      {{{{ trigger.previousStatus }}}} -> {{{{ trigger.newStatus }}}}
"""
"""The demo's rule on the flaky target: a window gate lets the second change through."""
RUNS_SHOWN = 7
"""How many of the newest runs a printed health transition shows."""
_BEHAVIOUR = {"ok": "200", "error": "500", "hang": "no answer"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Pacing:
    """How `--seconds N` spreads the health part (most of the demo's time)."""

    check_interval: float
    http_timeout: float
    linger: float
    deadline: float

    @classmethod
    def for_seconds(cls, seconds: float) -> Pacing:
        """The pacing of a demo meant to take about `seconds` (0: as fast as it goes)."""
        # The story takes about 12 check intervals, plus a few to show it holds.
        interval = max(0.05, seconds / 20)
        return cls(check_interval=interval,
                   # Long enough that a loaded machine never times out a 200 by accident.
                   http_timeout=max(0.3, 0.8 * interval), linger=3 * interval,
                   deadline=30.0 + 3 * seconds)


def run_label(run: CheckRun) -> str:
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

    def __init__(self, ctx: DemoContext, service: HealthService) -> None:
        self._ctx = ctx
        self._service = service
        self.statuses: defaultdict[str, list[str | None]] = defaultdict(list)
        self.started = datetime.now(UTC)
        self.id_width = max(len(HTTP_SYSTEM), len(TCP_SYSTEM))
        self._changed = anyio.Event()

    async def on_change(self, change: EntityChange) -> None:
        """Print the transition rows, the runs that led to them, and the triggers."""
        ctx, host = self._ctx, self._ctx.host
        triggers = host.derive_triggers(change)
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
            to = ctx.arrow()
            rows = sorted((t for t in await host.transitions(kind=change.kind,
                                                             entity_id=change.id)
                           if t.change_seq == change.seq), key=lambda t: t.field != "status")
            runs = [r for r in await self._service.runs(change.id, limit=RUNS_SHOWN + 1)
                    if r.timestamp <= change.occurred_at]
            shown = " ".join(run_label(r) for r in reversed(runs[:RUNS_SHOWN]))
            more = ctx.ellipsis() + " " if len(runs) > RUNS_SHOWN else ""
            cells = [(r.field, f"{r.from_value or '-'} {to} {r.to_value or '-'}") for r in rows]
            cells += [("runs", f"{more}{shown} (newest last)"),
                      ("triggers", ", ".join(triggers) or "-")]
            indent = " " * len(head)
            lines = [f"{head if i == 0 else indent}{name.ljust(label)}  {value}"
                     for i, (name, value) in enumerate(cells)]
        ctx.line("\n".join(lines))
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until `done()` holds after some change; False after `timeout` seconds."""
        with anyio.move_on_after(timeout):
            while not done():
                self._ctx.check_open()
                await self._changed.wait()
            return True
        return False


def _closed_port(ctx: DemoContext) -> int:
    """A local port where nothing listens: bound (so nobody else takes it), never listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ctx.callback(sock.close)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    return port


class HealthDemo:
    """The health plugin's demo steps."""

    def __init__(self, service: HealthService) -> None:
        self._service = service
        self._target: FlakyTarget | None = None

    def steps(self) -> list[DemoStep]:
        """The checks' story, then the status table."""
        return [DemoStep(title="health checks", order=20, run=self.run, summary=self.summary)]

    async def run(self, ctx: DemoContext) -> bool:
        """Two checks run by the timers; print transitions until the story is told."""
        pacing, to, service = Pacing.for_seconds(ctx.seconds), ctx.arrow(), self._service
        self._target = target = await ctx.enter(FlakyTarget(TARGET_PLAN))
        closed_port = _closed_port(ctx)
        printer = HealthPrinter(ctx, service)
        ctx.host.registry.on_entity_changed(HEALTH_KIND, printer.on_change)
        automation = automation_of(ctx.host)
        if automation is not None:
            await automation.install(FLAPPING_RULE, origin="demo")
        await ctx.step(f"health: the scheduler runs two checks every "
                       f"{pacing.check_interval:g}s (times since they start)")
        plan = ", ".join(f"{n}x {_BEHAVIOUR[b]}" for b, n in TARGET_PLAN[:-1])
        ctx.line(f"  target  {target.url} answers {plan}, then {_BEHAVIOUR[TARGET_PLAN[-1][0]]}")
        ctx.line(f"  check   {HTTP_CHECK}  http GET on the target, timeout "
                 f"{pacing.http_timeout:g}s {to} system {HTTP_SYSTEM}")
        ctx.line("          degraded after 2 failures in a row, unhealthy after 5 (defaults)")
        ctx.line(f"  check   {TCP_CHECK}    tcp 127.0.0.1:{closed_port}, where nothing "
                 f"listens {to} system {TCP_SYSTEM}")
        ctx.line(f"          unhealthy after {TCP_THRESHOLDS['unhealthy_min_failures']} "
                 "failures in a row")
        if automation is not None:
            ctx.line(f"  rule    {HTTP_SYSTEM}-flapping: {HTTP_SYSTEM}'s health changes twice "
                     f"within 10 minutes {to} log it (once)")
        await service.upsert_check(
            HTTP_CHECK, strategy="http", interval_seconds=pacing.check_interval,
            config={"url": target.url, "timeout_seconds": pacing.http_timeout},
            actor=OPERATOR, reason="demo setup")
        await service.upsert_check(
            TCP_CHECK, strategy="tcp", interval_seconds=pacing.check_interval,
            config={"host": "127.0.0.1", "port": closed_port,
                    "timeout_seconds": pacing.http_timeout},
            actor=OPERATOR, reason="demo setup")
        printer.started = datetime.now(UTC)
        await service.associate(HTTP_SYSTEM, HTTP_CHECK, actor=OPERATOR, reason="demo setup")
        await service.associate(TCP_SYSTEM, TCP_CHECK, thresholds=TCP_THRESHOLDS,
                                actor=OPERATOR, reason="demo setup")

        def told() -> bool:
            api, db = printer.statuses[HTTP_SYSTEM], printer.statuses[TCP_SYSTEM]
            recovered = any(s != "healthy" for s in api) and api[-1:] == ["healthy"]
            return recovered and db[-1:] == ["unhealthy"]

        if not await printer.wait_for(told, pacing.deadline):
            ctx.line(f"  the story did not finish within {pacing.deadline:g}s: expected "
                     f"{HTTP_SYSTEM} to recover and {TCP_SYSTEM} to stay unhealthy")
            return False
        await anyio.sleep(pacing.linger)  # the recovery holds
        await ctx.step("status (what `reactive status` prints)")
        ctx.line(status_rows_table(await service.system_statuses(), now=datetime.now(UTC)))
        return True

    async def summary(self, ctx: DemoContext) -> list[str]:
        """What the target served and how many runs each check recorded."""
        target = self._target
        if target is None:
            return []
        served = ", ".join(f"{len(list(group))} {behaviour}"
                           for behaviour, group in groupby(target.served))
        ran = [f"{check} {len(await self._service.runs(system, limit=100_000))}"
               for system, check in ((HTTP_SYSTEM, HTTP_CHECK), (TCP_SYSTEM, TCP_CHECK))]
        return [f"target: {target.requests} requests ({served or 'none'}); "
                f"check runs: {', '.join(ran)}"]
