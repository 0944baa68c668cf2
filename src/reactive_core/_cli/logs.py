"""What the `reactive` command line logs, and how: text or JSON lines, and `serve`'s
periodic summary.

Logs go to stderr. The text form is `<time> <LEVEL> <logger>: <message>`; the JSON form
(`reactive serve --log-format json`) is one object per line with `time` (ISO 8601 UTC),
`level`, `logger` and `message`, plus the structured fields a line carries (a health
change's `system_id`, `from_status`, `to_status`, …; the summary's counts).

The summary (`reactive serve --summary-seconds N`, default 60, 0 = off) is one INFO
line every N seconds: what the plugins report through the hook `reactive_summary`
(systems by status, objectives breaching, …), then the work queue's pending deliveries
and dead letters and the automation runs started since the previous summary. It reads
the database, so every instance of a cluster reports the same numbers.
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import Connection, func, select

if TYPE_CHECKING:
    from .._host.host import Host

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
SUMMARY_SECONDS = 60.0
"""The default period of `serve`'s summary line."""

logger = logging.getLogger("reactive_core.summary")

# The attributes every LogRecord has; anything else on a record came as `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: `time`, `level`, `logger`, `message` and the fields
    given with `extra=` (values JSON cannot hold are written as text)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in data:
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def setup_logging(level: int, log_format: str = "text") -> None:
    """Log at `level` to stderr, as text lines or (`log_format="json"`) JSON lines."""
    # httpx logs every request at INFO: one line per health check run is noise.
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
    # Alembic logs its context on every start; the host logs each upgrade it applies.
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])


# -- the summary ----------------------------------------------------------------------

def _count_runs_since(tx: Connection, since: datetime) -> int:
    from ..automation.schema import automation_runs

    query = select(func.count()).select_from(automation_runs).where(
        automation_runs.c.created_at > since)
    return int(tx.execute(query).scalar_one())


async def summary_fields(host: Host, since: datetime) -> dict[str, Any]:
    """The summary's counts: each plugin's (hook `reactive_summary`), then
    `queue_pending`, `dead_letters` and (with the automation plugin) `rule_runs`
    started after `since`."""
    fields: dict[str, Any] = {}
    for part in host.hook.reactive_summary(host=host):
        if inspect.isawaitable(part):
            part = await part
        if isinstance(part, Mapping):
            fields.update(part)
    queue = await host.work_queue_status()
    fields["queue_pending"] = queue.pending
    fields["dead_letters"] = queue.dead
    if "automation" in host.plugin_names:
        fields["rule_runs"] = await host.read(_count_runs_since, since)
    return fields


def summary_text(fields: Mapping[str, Any]) -> str:
    """`summary: systems: 2 healthy, 1 unhealthy; objectives breaching: 0; …`."""
    parts = []
    for key, value in fields.items():
        name = key.replace("_", " ")
        if isinstance(value, Mapping):
            shown = ", ".join(f"{count} {what}" for what, count in value.items()) or "none"
        else:
            shown = str(value)
        parts.append(f"{name}: {shown}")
    return "summary: " + "; ".join(parts)


async def summary_loop(host: Host, every: float) -> None:
    """Log a summary line every `every` seconds until cancelled (the host stops)."""
    since = host.clock()
    while True:
        await anyio.sleep(every)
        now = host.clock()
        try:
            fields = await summary_fields(host, since)
        except Exception:  # the next one tries again
            logger.warning("summary: could not read the counts", exc_info=True)
            continue
        since = now
        logger.info("%s", summary_text(fields),
                    extra={k: v for k, v in fields.items() if k not in _STANDARD})
