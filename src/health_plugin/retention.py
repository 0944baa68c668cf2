"""Retention: raw runs roll up into hourly aggregates; old per-check transitions go.

Raw runs older than `raw_retention_days` are folded into
`health_check_run_aggregates` — per (system, check, hour): run count, healthy count,
latency sum and count, and the p95 latency (nearest rank) — and deleted. Two rules
keep this exact and invisible to the `health` entity:

* the newest 100 runs of every pair are never pruned (the evaluation reads them), so
  retention never changes any system's health and needs no `mutate`;
* only whole hours are pruned: the pruning bound of a pair is the older of the
  retention cut-off and the start of the hour holding its 100th newest run, both
  floored to the hour, so every aggregated hour is complete and aggregated once. (If
  a bucket row exists anyway, counts and sums add up and p95 keeps the larger value,
  a conservative bound.)

Per-check state transitions older than `transition_retention_days` are deleted except
the newest of each pair, so a check's current state always has its "since".
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection, and_, bindparam, delete, exists, insert, select, update

from .evaluator import MAX_RUNS, HealthStatus
from .models import HealthSettings
from .queries import as_utc, utcnow
from .schema import (
    health_check_run_aggregates as _agg,
)
from .schema import (
    health_check_runs as _runs,
)
from .schema import (
    health_check_state_transitions as _trans,
)

if TYPE_CHECKING:
    from reactive_core import Host

logger = logging.getLogger("health_plugin.retention")

RETENTION_JOB = "health.retention"
RETENTION_EVERY_SECONDS = 3600.0

_PAIRS_WITH_OLD_RUNS = (
    select(_runs.c.system_id, _runs.c.configuration_id)
    .where(_runs.c.timestamp < bindparam("cutoff"))
    .distinct()
    .order_by(_runs.c.system_id, _runs.c.configuration_id)
)
_PAIR = (_runs.c.system_id == bindparam("s"), _runs.c.configuration_id == bindparam("c"))
_PROTECTED_FROM = (
    select(_runs.c.timestamp).where(*_PAIR)
    .order_by(_runs.c.timestamp.desc(), _runs.c.id.desc())
    .limit(1).offset(MAX_RUNS - 1)
)
_PRUNABLE = (
    select(_runs.c.timestamp, _runs.c.status, _runs.c.latency_ms)
    .where(*_PAIR, _runs.c.timestamp < bindparam("bound"))
)
_DELETE_PRUNABLE = delete(_runs).where(*_PAIR, _runs.c.timestamp < bindparam("bound"))
_BUCKET = (_agg.c.system_id == bindparam("s"), _agg.c.configuration_id == bindparam("c"),
           _agg.c.bucket_start == bindparam("b"))


def floor_hour(value: datetime) -> datetime:
    """`value` (as UTC) truncated to the start of its hour."""
    return as_utc(value).replace(minute=0, second=0, microsecond=0)


def p95(latencies: list[float]) -> float | None:
    """The 95th percentile by nearest rank; None without latencies."""
    if not latencies:
        return None
    ordered = sorted(latencies)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


def prune_runs_in(tx: Connection, *, older_than: datetime) -> dict[str, int]:
    """Fold runs older than `older_than` into hourly aggregates and delete them.

    Returns `{"runs": deleted runs, "buckets": aggregate rows written}`.
    """
    cutoff = floor_hour(older_than)
    pruned = buckets = 0
    for system_id, check_id in tx.execute(_PAIRS_WITH_OLD_RUNS, {"cutoff": cutoff}).all():
        pair = {"s": system_id, "c": check_id}
        protected = tx.execute(_PROTECTED_FROM, pair).scalar()
        if protected is None:
            continue  # fewer than 100 runs: all of them still count
        bound = min(cutoff, floor_hour(protected))
        grouped: dict[datetime, list[tuple[str, float | None]]] = defaultdict(list)
        for timestamp, status, latency in tx.execute(_PRUNABLE, {**pair, "bound": bound}):
            grouped[floor_hour(timestamp)].append((status, latency))
        if not grouped:
            continue
        for bucket, runs in sorted(grouped.items()):
            latencies = [float(lat) for _, lat in runs if lat is not None]
            values = {
                "run_count": len(runs),
                "healthy_count": sum(1 for s, _ in runs if s == HealthStatus.HEALTHY.value),
                "latency_sum_ms": float(sum(latencies)),
                "latency_count": len(latencies),
                "p95_latency_ms": p95(latencies),
            }
            key = {**pair, "b": bucket}
            existing = tx.execute(select(_agg).where(*_BUCKET), key).first()
            if existing is None:
                tx.execute(insert(_agg), {"system_id": system_id, "configuration_id": check_id,
                                          "bucket_start": bucket, **values})
            else:
                p95s = [v for v in (existing.p95_latency_ms, values["p95_latency_ms"])
                        if v is not None]
                tx.execute(update(_agg).where(*_BUCKET).values(
                    run_count=existing.run_count + values["run_count"],
                    healthy_count=existing.healthy_count + values["healthy_count"],
                    latency_sum_ms=existing.latency_sum_ms + values["latency_sum_ms"],
                    latency_count=existing.latency_count + values["latency_count"],
                    p95_latency_ms=max(p95s) if p95s else None,
                ), key)
            buckets += 1
        pruned += int(tx.execute(_DELETE_PRUNABLE, {**pair, "bound": bound}).rowcount or 0)
    return {"runs": pruned, "buckets": buckets}


def prune_check_transitions_in(tx: Connection, *, older_than: datetime) -> int:
    """Delete per-check transitions older than `older_than`, keeping each pair's newest."""
    newer = _trans.alias("newer")
    has_newer = exists().where(
        newer.c.system_id == _trans.c.system_id,
        newer.c.configuration_id == _trans.c.configuration_id,
        (newer.c.transitioned_at > _trans.c.transitioned_at)
        | and_(newer.c.transitioned_at == _trans.c.transitioned_at, newer.c.id > _trans.c.id),
    )
    result = tx.execute(delete(_trans).where(_trans.c.transitioned_at < older_than, has_newer))
    return int(result.rowcount or 0)


def run_retention_in(tx: Connection, *, now: datetime, raw_retention: timedelta,
                     transition_retention: timedelta) -> dict[str, int]:
    """Both prunings in one unit of work."""
    counts = prune_runs_in(tx, older_than=now - raw_retention)
    counts["transitions"] = prune_check_transitions_in(tx, older_than=now - transition_retention)
    return counts


class Retention:
    """The `health.retention` job (hourly, once per cluster)."""

    def __init__(self, *, host: Host, settings: HealthSettings) -> None:
        self._host = host
        self._settings = settings

    async def run(self, host: Host, slot: datetime) -> None:
        """Prune once; the job's signature `(host, slot)`."""
        settings = self._settings
        counts = await self._host.run(lambda tx: run_retention_in(
            tx, now=utcnow(), raw_retention=timedelta(days=settings.raw_retention_days),
            transition_retention=timedelta(days=settings.transition_retention_days)))
        logger.info("health retention pruned %s", counts)
