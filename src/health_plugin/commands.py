"""What an operator sees of health: `reactive status`, `reactive checks`, the check runs
of `reactive runs --system S`, and the lines `reactive serve` logs.

`reactive status` and `reactive checks` are the commands the health plugin adds to the
CLI; `reactive runs --system` is the automation plugin's command, answered through the
hook `reactive_system_runs`. `reactive serve` logs each change of a system's status
(`health api: degraded -> unhealthy (api-http: 500)`) and counts the systems by status
in its summary line (hook `reactive_summary`).

Its exit status follows the Nagios plugin convention, so a monitoring system can run it
as a check: 0 when every system is healthy (or none has health checks), 1 when the worst
is degraded (warning), 2 when one is unhealthy (critical). Each row also says when the
system's checks last ran: `reactive status` reads what `reactive serve` recorded, so a
view that nothing updates any more (no server running the checks) shows as an old time.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from reactive_core import CliCommand, CliContext

from .evaluator import HealthStatus
from .runs import RUN_ACTOR_TYPE

if TYPE_CHECKING:
    from reactive_core import EntityChange

    from .models import CheckRun
    from .service import HealthService
    from .status import SystemStatus

logger = logging.getLogger("health_plugin.health")

EXIT_HEALTHY, EXIT_DEGRADED, EXIT_UNHEALTHY = 0, 1, 2
"""`reactive status`'s exit statuses (Nagios: OK, WARNING, CRITICAL); they are the
worst status's `HealthStatus.severity`."""


def status_exit_code(rows: Sequence[SystemStatus]) -> int:
    """The worst severity among `rows`: 0 all healthy (or no rows), 1 degraded, 2
    unhealthy."""
    return max((HealthStatus(r.status).severity for r in rows), default=EXIT_HEALTHY)


def status_rows_table(rows: Sequence[SystemStatus], *, now: datetime,
                      last_runs: Mapping[str, datetime | None] | None = None) -> str:
    """System (and name, when any is known), status, healthy checks, since when the
    status holds, and with `last_runs` when the system's checks last ran; times in UTC
    with how long ago, relative to `now`."""
    if not rows:
        return "no systems with health checks"
    named = any(r.name is not None for r in rows)
    headers = ["system", *(["name"] if named else []), "status", "healthy",
               CliContext.utc("since"),
               *([CliContext.utc("last run")] if last_runs is not None else [])]
    return CliContext.table(headers, (
        [r.system_id, *([r.name or "-"] if named else []), r.status,
         f"{r.healthy_checks}/{r.total_checks}", CliContext.fmt_since(r.since, now),
         *([CliContext.fmt_since(last_runs.get(r.system_id), now, future=True)]
           if last_runs is not None else [])]
        for r in rows))


def status_rows_json(rows: Sequence[SystemStatus],
                     last_runs: Mapping[str, datetime | None]) -> list[dict[str, Any]]:
    """The rows of `reactive status --json`: the `SystemStatus` fields and `last_run_at`."""
    return [{"system_id": r.system_id, "name": r.name, "status": r.status,
             "healthy_checks": r.healthy_checks, "total_checks": r.total_checks,
             "since": r.since, "last_run_at": last_runs.get(r.system_id)} for r in rows]


async def last_runs(service: HealthService,
                    rows: Sequence[SystemStatus]) -> dict[str, datetime | None]:
    """When the newest run of each row's system was recorded (None: never), by system."""
    newest: dict[str, datetime | None] = {}
    for row in rows:
        runs = await service.runs(row.system_id, limit=1)
        newest[row.system_id] = runs[0].timestamp if runs else None
    return newest


def status_command(service: HealthService) -> CliCommand:
    """`reactive status`: each system's health, since when, and when its checks last ran;
    exits 0, 1 or 2 by the worst status."""

    async def run(ctx: CliContext) -> int:
        rows = await service.system_statuses()
        ran = await last_runs(service, rows)
        ctx.emit(status_rows_json(rows, ran),
                 lambda _: status_rows_table(rows, now=ctx.host.clock(), last_runs=ran))
        return status_exit_code(rows)

    return CliCommand(name="status", help="each system's health, since when, and when its "
                      "checks last ran; exit status 0 all healthy, 1 degraded, 2 unhealthy",
                      run=run, listing=True)


# -- `reactive checks` ------------------------------------------------------------------

def run_row(run: CheckRun) -> dict[str, Any]:
    """A check run as the CLI prints it: `check_id`, `status`, `status_code`, `error`,
    `latency_ms`, `at` (the names of the HTTP API)."""
    return {"check_id": run.configuration_id, "status": run.status.value,
            "status_code": run.result.get("status_code"), "error": run.result.get("error"),
            "latency_ms": run.latency_ms, "at": run.timestamp}


async def check_rows(service: HealthService) -> list[dict[str, Any]]:
    """Every check by id: strategy, interval, paused, its systems and its newest run
    (of any of its systems; None before the first). The config is left out: it may
    hold secrets."""
    associations = await service.associations()
    systems: dict[str, list[str]] = {}
    for association in associations:
        systems.setdefault(association.configuration_id, []).append(association.system_id)
    rows = []
    for check in await service.checks():
        newest: CheckRun | None = None
        for system_id in systems.get(check.id, []):
            runs = await service.runs(system_id, check.id, limit=1)
            if runs and (newest is None or runs[0].timestamp > newest.timestamp):
                newest = runs[0]
        last = None if newest is None else {
            k: v for k, v in run_row(newest).items() if k != "check_id"}
        rows.append({"id": check.id, "name": check.name, "strategy": check.strategy,
                     "interval_seconds": check.interval_seconds, "paused": check.paused,
                     "systems": systems.get(check.id, []), "last_run": last})
    return rows


def checks_table(rows: Sequence[Mapping[str, Any]], *, now: datetime) -> str:
    """`reactive checks`: check, strategy, every, paused, systems, last run."""
    if not rows:
        return "no checks"

    def last(run: Mapping[str, Any] | None) -> list[str]:
        if run is None:
            return ["-", "-", "-"]
        latency = run["latency_ms"]
        outcome = run["status"] + (f" ({run['status_code']})" if run["status_code"] else "")
        return [outcome, f"{latency:.0f} ms" if latency is not None else "-",
                CliContext.fmt_since(run["at"], now, future=True)]

    return CliContext.table(
        ["check", "strategy", "every", "paused", "systems", "last run", "latency",
         CliContext.utc("at")],
        ([r["id"], r["strategy"], _every(r["interval_seconds"]),
          "yes" if r["paused"] else "no", ",".join(r["systems"]) or "-", *last(r["last_run"])]
         for r in rows))


def _every(seconds: float) -> str:
    """An interval: `0.5s`, `10s`, `5m 00s`."""
    return f"{seconds:g}s" if seconds < 60 else CliContext.fmt_duration(seconds)


def checks_command(service: HealthService) -> CliCommand:
    """`reactive checks`: every check with its schedule, its systems and its last run."""

    async def run(ctx: CliContext) -> int:
        rows = await check_rows(service)
        ctx.emit(rows, lambda _: checks_table(rows, now=ctx.host.clock()))
        return 0

    return CliCommand(name="checks", help="every health check: strategy, interval, paused, "
                      "its systems and its last run (status, latency, when)",
                      run=run, listing=True)


async def system_runs(service: HealthService, system_id: str, check_id: str | None,
                      limit: int) -> list[dict[str, Any]]:
    """The newest `limit` runs of a system (of one check), newest first, as rows."""
    return [run_row(r) for r in await service.runs(system_id, check_id, limit=limit)]


# -- what `reactive serve` logs ---------------------------------------------------------

async def _cause(service: HealthService, change: EntityChange) -> str | None:
    """What made the status change: `api-http: 500` (the check and what its newest run
    of the system got), or the change's reason when no check run caused it."""
    if change.actor.type != RUN_ACTOR_TYPE:
        return change.reason
    runs = await service.runs(change.id, change.actor.id, limit=1)
    if not runs:
        return change.actor.id
    result = runs[0].result
    code, error = result.get("status_code"), result.get("error")
    return f"{change.actor.id}: {code if code is not None else error or runs[0].status.value}"


def health_change_logger(service: HealthService) -> Callable[[EntityChange], Awaitable[None]]:
    """A broadcast handler logging each change of a system's status at INFO, e.g.
    `health api: degraded -> unhealthy (api-http: 500)` (a system's first status is not
    logged; nothing is read unless INFO is logged)."""

    async def log(change: EntityChange) -> None:
        if change.prev is None or change.next is None or not logger.isEnabledFor(logging.INFO):
            return
        before, after = change.prev.get("status"), change.next.get("status")
        if before == after:
            return
        cause = await _cause(service, change)
        logger.info("health %s: %s -> %s%s", change.id, before, after,
                    f" ({cause})" if cause else "",
                    extra={"system_id": change.id, "from_status": before,
                           "to_status": after, "cause": cause})

    return log


async def summary(service: HealthService) -> dict[str, Any]:
    """`reactive serve`'s summary: the systems by status, e.g. `{"systems": {"healthy": 2,
    "unhealthy": 1}}` (statuses no system has are left out)."""
    counts = {status.value: 0 for status in HealthStatus}
    for state in (await service.statuses()).values():
        counts[state.status.value] += 1
    return {"systems": {status: n for status, n in counts.items() if n}}
