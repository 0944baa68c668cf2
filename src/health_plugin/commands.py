"""`reactive status`, the command the health plugin adds to the CLI.

Its exit status follows the Nagios plugin convention, so a monitoring system can run it
as a check: 0 when every system is healthy (or none has health checks), 1 when the worst
is degraded (warning), 2 when one is unhealthy (critical). Each row also says when the
system's checks last ran: `reactive status` reads what `reactive serve` recorded, so a
view that nothing updates any more (no server running the checks) shows as an old time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from reactive_core import CliCommand, CliContext

from .evaluator import HealthStatus

if TYPE_CHECKING:
    from .service import HealthService
    from .status import SystemStatus

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
