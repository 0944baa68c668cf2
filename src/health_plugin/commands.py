"""`reactive status`, the command the health plugin adds to the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from reactive_core import CliCommand, CliContext

if TYPE_CHECKING:
    from .service import HealthService
    from .status import SystemStatus


def status_rows_table(rows: Sequence[SystemStatus], *, now: datetime) -> str:
    """System (and name, when any is known), status, healthy checks, and since when the
    status holds (UTC, with how long until `now`)."""
    if not rows:
        return "no systems with health checks"
    named = any(r.name is not None for r in rows)
    headers = ["system", *(["name"] if named else []), "status", "healthy", "since"]
    return CliContext.table(headers, (
        [r.system_id, *([r.name or "-"] if named else []), r.status,
         f"{r.healthy_checks}/{r.total_checks}", CliContext.fmt_since(r.since, now)]
        for r in rows))


def status_command(service: HealthService) -> CliCommand:
    """`reactive status`: each system's health, and since when."""

    async def run(ctx: CliContext) -> int:
        rows = await service.system_statuses()
        ctx.emit(rows, lambda rows: status_rows_table(rows, now=ctx.host.clock()))
        return 0

    return CliCommand(name="status", help="each system's health: status, healthy checks, "
                      "since when", run=run, listing=True)
