"""What the `reactive` CLI prints: aligned text tables for people, JSON for scripts.

Every listing command renders its rows through one function here, so the text and
the JSON forms of a listing stay in step. Tables shorten long cells (JSON never does).

Times are UTC everywhere: a table's time columns say so in their header (`TIME (UTC)`,
`DUE (UTC)`), and JSON times are ISO 8601 with the offset `+00:00`. JSON rows use one
name per concept across the listings: `kind` and `entity_id` for the entity a row is
about, `change_seq` for the change a row belongs to, `<what>_at` for a moment.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import make_url

from .._delivery.queue import DeliveryRow
from .._entities.changes import EntityChange
from .._entities.logs import Transition
from .._host.doctor import DoctorReport
from .._timers.timers import Timer

CELL_WIDTH = 48
"""Longest cell a table prints before shortening it with an ellipsis."""


def _encodable(text: str) -> bool:
    try:
        text.encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def arrow() -> str:
    """The arrow used in `from → to`, or `->` where stdout cannot print it."""
    return "→" if _encodable("→…") else "->"


def ellipsis() -> str:
    """The character that marks a shortened cell."""
    return "…" if _encodable("…") else "~"


def display_url(url: str) -> str:
    """A database URL fit to print: any password masked."""
    return make_url(url).render_as_string(hide_password=True)


UTC_SUFFIX = " (UTC)"
"""What a table header of a time column ends with: the values themselves are bare."""


def utc(header: str) -> str:
    """The header of a time column: `utc("time")` is `time (UTC)`."""
    return header + UTC_SUFFIX


def as_utc(value: datetime) -> datetime:
    """`value` in UTC; a naive value is taken to be UTC already (what is stored)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def fmt_time(value: datetime | None) -> str:
    """A moment as `YYYY-MM-DD HH:MM:SS` in UTC (for a column headed `... (UTC)`); `-`
    for none."""
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def fmt_duration(seconds: float) -> str:
    """A short duration: `42s`, `3m 12s`, `5h 03m`, `2d 4h` (negative counts as 0)."""
    minutes, secs = divmod(max(int(seconds), 0), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def fmt_since(since: datetime | None, now: datetime, *, future: bool = False) -> str:
    """`2025-06-01 12:00:03 (for 3m 12s)`, or with `future` `... (in 3m 12s)` /
    `(3m 12s ago)`, in UTC (for a column headed `... (UTC)`); `-` when unknown."""
    if since is None:
        return "-"
    seconds = (as_utc(now) - as_utc(since)).total_seconds()
    if not future:
        return f"{fmt_time(since)} (for {fmt_duration(seconds)})"
    when = f"in {fmt_duration(-seconds)}" if seconds < 0 else f"{fmt_duration(seconds)} ago"
    return f"{fmt_time(since)} ({when})"


def shorten(text: str, width: int = CELL_WIDTH) -> str:
    """`text` on one line, cut to `width` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + ellipsis()


def fmt_value(value: str | None, width: int = 28) -> str:
    """A transition-log value for a table: `-` for NULL, long values shortened."""
    return "-" if value is None else shorten(value, width)


def render_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Rows under upper-case headers, columns aligned; the last column is not padded."""
    cells = [[str(h).upper() for h in headers]]
    cells += [[shorten(str(c)) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=False)] + [row[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


# -- JSON -----------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def to_json(value: Any) -> str:
    """Dataclasses, datetimes (ISO 8601, UTC) and containers as indented JSON."""
    return json.dumps(_plain(value), indent=2, ensure_ascii=False)


def change_json(change: EntityChange) -> dict[str, Any]:
    """A change as a JSON row: its fields, the entity's id as `entity_id` (as in the
    other listings, where `id` is the row's own number)."""
    row: dict[str, Any] = _plain(change)
    return {("entity_id" if key == "id" else key): value for key, value in row.items()}


def changes_json(rows: Sequence[EntityChange]) -> str:
    """`reactive changes --json`."""
    return to_json([change_json(c) for c in rows])


# -- the listings ---------------------------------------------------------------------

def transitions_table(rows: Sequence[Transition]) -> str:
    """`reactive transitions`: time, kind, id, field, from → to."""
    if not rows:
        return "no transitions"
    to = arrow()
    return render_table(
        [utc("time"), "kind", "id", "field", f"from {to} to"],
        ([fmt_time(r.transitioned_at), r.kind, r.entity_id, r.field,
          f"{fmt_value(r.from_value)} {to} {fmt_value(r.to_value)}"] for r in rows),
    )


def change_label(change: EntityChange) -> str:
    """`created`, `deleted` or `updated`."""
    if change.is_tombstone:
        return "deleted"
    return "created" if change.is_create else "updated"


def changes_table(rows: Sequence[EntityChange]) -> str:
    """`reactive changes`: seq, time, kind, id, what, changed fields, actor, reason."""
    if not rows:
        return "no changes"
    return render_table(
        ["seq", utc("time"), "kind", "id", "what", "changed", "actor", "reason"],
        ([c.seq, fmt_time(c.occurred_at), c.kind, c.id, change_label(c),
          ",".join(c.changed_fields) or "-", f"{c.actor.type}:{c.actor.id}",
          c.reason or "-"] for c in rows),
    )


def change_line(change: EntityChange) -> str:
    """`changes --follow`: one change on one line, e.g. `#12 2026-11-29 17:41:17 UTC
    health:api updated [status,healthyChecks] by health-check:api-http (check api-http
    run: unhealthy)`."""
    fields = f" [{','.join(change.changed_fields)}]" if change.changed_fields else ""
    reason = f" ({' '.join(change.reason.split())})" if change.reason else ""
    return (f"#{change.seq} {fmt_time(change.occurred_at)} UTC {change.kind}:{change.id} "
            f"{change_label(change)}{fields} by {change.actor.type}:{change.actor.id}{reason}")


def deliveries_table(rows: Sequence[DeliveryRow]) -> str:
    """`reactive deliveries`: id, group, kind:id, status, attempts, last error."""
    if not rows:
        return "no deliveries"
    return render_table(
        ["id", "change", "group", "entity", "status", "attempts", "last error"],
        ([d.id, f"#{d.change_seq}", d.group, f"{d.kind}:{d.entity_id}", d.status, d.attempts,
          d.last_error or "-"] for d in rows),
    )


def doctor_text(report: DoctorReport) -> str:
    """`reactive doctor`: plugins, plugin tables, work-queue routes, problems."""
    lines = [f"plugins: {', '.join(report.plugins) or 'none'}", ""]
    if report.tables:
        lines.append(render_table(
            ["table", "plugin", "status", "detail"],
            ([t.table, t.plugin or "-", t.status, t.detail] for t in report.tables),
        ))
    else:
        lines.append("no plugin tables")
    lines.append("")
    if report.routes:
        lines.append(render_table(
            ["group", "kind", utc("last seen"), "pending", "route"],
            ([r.group, r.kind, fmt_time(r.last_seen_at), r.pending,
              "stale" if r.stale else "live"] for r in report.routes),
        ))
    else:
        lines.append("no work-queue routes")
    lines.append("")
    stale = ", ".join(report.stale_declarations)
    lines.append(f"stale declarations: {stale or 'none'}"
                 + (" (declared non-reactive, but no plugin adds these tables)" if stale else ""))
    lines.append(f"dead letters: {report.dead_letters}"
                 + (" (see `reactive deliveries --dead`)" if report.dead_letters else ""))
    lines.append("")
    problems = doctor_problems(report)
    if not problems:
        lines.append("ok")
    else:
        lines.append(f"{len(problems)} problem{'s' if len(problems) != 1 else ''}:")
        lines += [f"- {problem}" for problem in problems]
    return "\n".join(lines)


def doctor_problems(report: DoctorReport) -> list[str]:
    """What makes `report.ok` false, one sentence each."""
    problems = [
        f"table {t.table} (plugin {t.plugin or '?'}) backs no entity kind and is not "
        "declared: declare it with registry.declare_non_reactive_state" for t in report.undeclared
    ]
    problems += [f"declaration of table {table} is stale: no plugin adds that table"
                 for table in report.stale_declarations]
    problems += [
        f"work-queue group {r.group} has {r.pending} pending "
        f"deliver{'y' if r.pending == 1 else 'ies'} of {r.kind}, but no "
        f"running instance handles it (last seen "
        f"{fmt_time(r.last_seen_at) + ' UTC' if r.last_seen_at else 'never'})"
        for r in report.routes if r.stale and r.pending
    ]
    return problems


def doctor_json(report: DoctorReport) -> str:
    """The doctor report as JSON, with `ok` and the undeclared table names."""
    data = _plain(report)
    data["ok"] = report.ok
    data["undeclared"] = [t.table for t in report.undeclared]
    data["problems"] = doctor_problems(report)
    return to_json(data)


def timers_table(rows: Sequence[Timer], *, now: datetime) -> str:
    """`reactive timers`: topic, key, due, schedule, status, fired, last error."""
    if not rows:
        return "no timers"
    return render_table(
        ["topic", "key", utc("due"), "schedule", "status", "fired", "last error"],
        ([t.topic, t.key, fmt_since(t.due_at, now, future=True),
          t.cron or (f"every {fmt_duration(t.every_seconds)}" if t.every_seconds else "once"),
          t.status, t.fired_count, t.last_error or "-"] for t in rows))
