"""The computed `health` kind: `read(tx, ids)` assembles each system's health from tables.

A system's health counts its *enabled* associations whose check is not paused; each
such check is evaluated on its newest 100 runs with the association's thresholds, and
the system takes the worst check status. A system without any enabled association is
absent (the entity does not exist); one whose enabled checks are all paused is
`{healthy, 0, 0}` — pausing the only failing check is a recovery, not a deletion.

The entity exists from the first enabled association on, as `{healthy, n, n}` (no
runs is healthy), so a check's first failing run changes a real previous state. With
the default thresholds one failure is noise and that first run changes nothing; it is
a healthy -> unhealthy change when the association's thresholds make one failure
unhealthy (`degraded_min_failures: 1, unhealthy_min_failures: 1`, either mode).

The statements are built once. The runs statement reads, per counted pair, only the
rows at or after the pair's 100th newest timestamp (one correlated index probe per
pair), through an index that covers the status, so the cost does not grow with a
pair's history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, DateTime, and_, bindparam, exists, func, select

from .evaluator import MAX_RUNS, HealthStatus, Thresholds, aggregate_checks, evaluate_status
from .models import HealthState
from .schema import health_check_runs, health_system_associations

_a = health_system_associations
_r = health_check_runs
_newer = _r.alias("newer")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CHUNK = 500

def _counted(match: Any) -> Any:
    return (
        select(_a.c.system_id, _a.c.configuration_id, _a.c.thresholds, _a.c.check_paused)
        .where(match, _a.c.enabled)
        .order_by(_a.c.system_id, _a.c.configuration_id)
    )


_floor = (
    select(_newer.c.timestamp)
    .where(_newer.c.system_id == _a.c.system_id,
           _newer.c.configuration_id == _a.c.configuration_id)
    .order_by(_newer.c.timestamp.desc(), _newer.c.id.desc())
    .limit(1)
    .offset(MAX_RUNS - 1)
    .correlate(_a)
    .scalar_subquery()
)

def _newest_runs(match: Any) -> Any:
    return (
        select(_r.c.system_id, _r.c.configuration_id, _r.c.status)
        .select_from(_a.join(_r, and_(
            _r.c.system_id == _a.c.system_id,
            _r.c.configuration_id == _a.c.configuration_id,
            _r.c.timestamp >= func.coalesce(
                _floor, bindparam("epoch", _EPOCH, type_=DateTime(timezone=True))),
        )))
        .where(match, _a.c.enabled, ~_a.c.check_paused)
        .order_by(_r.c.system_id, _r.c.configuration_id, _r.c.timestamp.desc(),
                  _r.c.id.desc())
    )


# One system (the write path reads one entity twice per mutation) and many systems
# (an expanding IN list, compiled per list length).
_ONE = _a.c.system_id == bindparam("id")
_MANY = _a.c.system_id.in_(bindparam("ids", expanding=True))
_COUNTED_ONE, _COUNTED_MANY = _counted(_ONE), _counted(_MANY)
_NEWEST_RUNS_ONE, _NEWEST_RUNS_MANY = _newest_runs(_ONE), _newest_runs(_MANY)

_PAIR_NEWEST = (
    select(_r.c.status)
    .where(_r.c.system_id == bindparam("s"), _r.c.configuration_id == bindparam("c"))
    .order_by(_r.c.timestamp.desc(), _r.c.id.desc())
    .limit(MAX_RUNS)
)

_ALL_COUNTED_SYSTEMS = (
    select(_a.c.system_id).where(_a.c.enabled).distinct().order_by(_a.c.system_id)
)

_HAS_ENABLED = select(exists().where(_a.c.system_id == bindparam("s"), _a.c.enabled))
_HAS_OTHER_ENABLED = select(exists().where(
    _a.c.system_id == bindparam("s"), _a.c.enabled, _a.c.configuration_id != bindparam("c")))


_PARSED: dict[tuple[tuple[str, str, Any], ...], Thresholds] = {}
"""Thresholds parsed from stored JSON, by its items (with their types: `true` is not
`1`): a read of many systems meets the same few settings again and again."""
_PARSED_MAX = 10_000


def parse_thresholds(raw: Mapping[str, Any] | None) -> Thresholds | None:
    """Stored thresholds JSON as a model (None stays None: the defaults apply)."""
    if raw is None:
        return None
    try:
        key = tuple(sorted((name, type(value).__name__, value) for name, value in raw.items()))
        parsed = _PARSED.get(key)
    except TypeError:  # not a flat mapping of plain values (a hand-edited row)
        key, parsed = None, None
    if parsed is not None:
        return parsed
    try:
        parsed = Thresholds.model_validate(raw)
    except ValidationError as exc:  # only a hand-edited row can get here
        raise ValueError(f"stored thresholds {dict(raw)!r} are not valid: {exc}") from exc
    if key is not None:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = parsed
    return parsed


def read_health(tx: Connection, ids: Sequence[str]) -> dict[str, HealthState]:
    """The `health` state of each system in `ids` that has an enabled association."""
    states: dict[str, HealthState] = {}
    wanted = list(ids)
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start: start + _CHUNK]
        if len(chunk) == 1:
            params: dict[str, Any] = {"id": chunk[0], "epoch": _EPOCH}
            counted_stmt, runs_stmt = _COUNTED_ONE, _NEWEST_RUNS_ONE
        else:
            params = {"ids": chunk, "epoch": _EPOCH}
            counted_stmt, runs_stmt = _COUNTED_MANY, _NEWEST_RUNS_MANY
        counted = tx.execute(counted_stmt, params).all()
        if not counted:
            continue
        newest: dict[tuple[str, str], list[str]] = {}
        for system_id, configuration_id, status in tx.execute(runs_stmt, params).all():
            runs = newest.get((system_id, configuration_id))
            if runs is None:
                newest[(system_id, configuration_id)] = [status]
            elif len(runs) < MAX_RUNS:
                runs.append(status)
        checks: dict[str, list[HealthStatus]] = {}
        for row in counted:
            per_system = checks.setdefault(row.system_id, [])
            if row.check_paused:
                continue
            per_system.append(evaluate_status(
                newest.get((row.system_id, row.configuration_id), ()),
                parse_thresholds(row.thresholds),
            ))
        for system_id, statuses in checks.items():
            status, healthy, total = aggregate_checks(statuses)
            states[system_id] = HealthState(
                status=status, healthy_checks=healthy, total_checks=total)
    return states


def read_one(tx: Connection, system_id: str) -> HealthState | None:
    """The `health` state of one system, or None when it has no enabled association."""
    return read_health(tx, [system_id]).get(system_id)


def health_ids(tx: Connection) -> list[str]:
    """The ids of every system that has a `health` entity (an enabled association), sorted."""
    return list(tx.execute(_ALL_COUNTED_SYSTEMS).scalars())


def read_all(tx: Connection) -> dict[str, HealthState]:
    """The `health` state of every system that has one, by system id (sorted)."""
    return read_health(tx, health_ids(tx))


def pair_statuses(tx: Connection, system_id: str, configuration_id: str) -> list[str]:
    """The newest `MAX_RUNS` run statuses of one (system, check) pair, newest first."""
    return list(tx.execute(_PAIR_NEWEST, {"s": system_id, "c": configuration_id}).scalars())


def has_enabled_association(
    tx: Connection, system_id: str, *, excluding: str | None = None
) -> bool:
    """True when `system_id` has an enabled association (other than `excluding`)."""
    if excluding is None:
        return bool(tx.execute(_HAS_ENABLED, {"s": system_id}).scalar())
    return bool(tx.execute(_HAS_OTHER_ENABLED, {"s": system_id, "c": excluding}).scalar())


def system_ids(values: Iterable[str]) -> list[str]:
    """Distinct ids in sorted order: the order in which several systems are locked."""
    return sorted(set(values))


@dataclass(frozen=True, slots=True)
class CheckState:
    """One (system, check) pair's evaluated status, and since when it holds."""

    status: HealthStatus
    since: datetime


def check_state_in(tx: Connection, system_id: str, check_id: str) -> CheckState | None:
    """The evaluated status of check `check_id` for system `system_id` and when it began
    (None when the pair was never evaluated: no association)."""
    from .queries import LAST_CHECK_TRANSITION

    row = tx.execute(LAST_CHECK_TRANSITION, {"s": system_id, "c": check_id}).first()
    if row is None:
        return None
    since = row.transitioned_at
    return CheckState(status=HealthStatus(row.to_status),
                      since=since if since.tzinfo else since.replace(tzinfo=UTC))
