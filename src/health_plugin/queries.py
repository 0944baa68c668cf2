"""Statements on the health tables (built once) and the rows they return as models.

Only statements and read helpers live here; what may be written when is the
business of `service.py` (the write rule) and `entity.py` (the `health` read).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, insert, select, update

from .entity import parse_thresholds
from .evaluator import HealthStatus
from .models import Association, CheckConfiguration, CheckRun, CheckStateTransition
from .schema import (
    health_check_configurations as _cfg,
)
from .schema import (
    health_check_run_aggregates as _agg,
)
from .schema import (
    health_check_runs as _runs,
)
from .schema import (
    health_check_state_transitions as _trans,
)
from .schema import (
    health_system_associations as _assoc,
)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """A stored timestamp as aware UTC (SQLite returns naive datetimes)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


CONFIG = select(_cfg).where(_cfg.c.id == bindparam("id"))
CONFIG_FOR_UPDATE = CONFIG.with_for_update()
ALL_CONFIGS = select(_cfg).order_by(_cfg.c.id)
INSERT_CONFIG = insert(_cfg)
_PAIR = (_assoc.c.system_id == bindparam("s"), _assoc.c.configuration_id == bindparam("c"))
ASSOC = select(_assoc).where(*_PAIR)
ASSOCS_OF_CHECK = select(_assoc).where(_assoc.c.configuration_id == bindparam("c")).order_by(
    _assoc.c.system_id)
ASSOCS_OF_SYSTEM = select(_assoc).where(_assoc.c.system_id == bindparam("s")).order_by(
    _assoc.c.configuration_id)
INSERT_ASSOC = insert(_assoc)
UPDATE_ASSOC = update(_assoc).where(*_PAIR)
SET_CHECK_PAUSED = update(_assoc).where(*_PAIR).values(check_paused=bindparam("paused"))
INSERT_RUN = insert(_runs)
INSERT_TRANSITION = insert(_trans)
LAST_CHECK_TRANSITION = (
    select(_trans.c.to_status, _trans.c.transitioned_at)
    .where(_trans.c.system_id == bindparam("s"), _trans.c.configuration_id == bindparam("c"))
    .order_by(_trans.c.transitioned_at.desc(), _trans.c.id.desc())
    .limit(1)
)
LAST_CHECK_STATE = (
    select(_trans.c.to_status)
    .where(_trans.c.system_id == bindparam("s"), _trans.c.configuration_id == bindparam("c"))
    .order_by(_trans.c.transitioned_at.desc(), _trans.c.id.desc())
    .limit(1)
)
DELETE_PAIR_ROWS = tuple(
    delete(table).where(table.c.system_id == bindparam("s"),
                        table.c.configuration_id == bindparam("c"))
    for table in (_runs, _trans, _agg, _assoc)
)
"""Everything a (system, check) pair owns: its runs, state history, roll-ups, itself."""


def check_from_row(row: Row[Any]) -> CheckConfiguration:
    """A `health_check_configurations` row as a model."""
    return CheckConfiguration(
        id=row.id, name=row.name, strategy=row.strategy, config=dict(row.config or {}),
        interval_seconds=float(row.interval_seconds), paused=bool(row.paused))


def association_from_row(row: Row[Any]) -> Association:
    """A `health_system_associations` row as a model."""
    return Association(
        system_id=row.system_id, configuration_id=row.configuration_id,
        enabled=bool(row.enabled), thresholds=parse_thresholds(row.thresholds))


def associations_in(tx: Connection, *, system_id: str | None = None,
                    check_id: str | None = None) -> list[Association]:
    """Associations, optionally of one system and/or one check, by (system, check)."""
    query = select(_assoc).order_by(_assoc.c.system_id, _assoc.c.configuration_id)
    if system_id is not None:
        query = query.where(_assoc.c.system_id == system_id)
    if check_id is not None:
        query = query.where(_assoc.c.configuration_id == check_id)
    return [association_from_row(r) for r in tx.execute(query)]


def runs_in(tx: Connection, system_id: str, check_id: str | None = None, *,
            limit: int = 100) -> list[CheckRun]:
    """The newest runs of a system (optionally of one check), newest first."""
    query = select(_runs).where(_runs.c.system_id == system_id)
    if check_id is not None:
        query = query.where(_runs.c.configuration_id == check_id)
    query = query.order_by(_runs.c.timestamp.desc(), _runs.c.id.desc()).limit(limit)
    return [CheckRun(
        id=int(r.id), system_id=r.system_id, configuration_id=r.configuration_id,
        status=HealthStatus(r.status), latency_ms=r.latency_ms, result=r.result or {},
        timestamp=as_utc(r.timestamp)) for r in tx.execute(query)]


def check_transitions_in(tx: Connection, system_id: str,
                         check_id: str | None = None) -> list[CheckStateTransition]:
    """Per-check status transitions of a system, oldest first."""
    query = select(_trans).where(_trans.c.system_id == system_id)
    if check_id is not None:
        query = query.where(_trans.c.configuration_id == check_id)
    query = query.order_by(_trans.c.transitioned_at, _trans.c.id)
    return [CheckStateTransition(
        id=int(r.id), system_id=r.system_id, configuration_id=r.configuration_id,
        from_status=None if r.from_status is None else HealthStatus(r.from_status),
        to_status=HealthStatus(r.to_status), run_id=r.run_id,
        transitioned_at=as_utc(r.transitioned_at)) for r in tx.execute(query)]
