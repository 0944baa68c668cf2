"""`GET /metrics`: the cluster in the Prometheus text format.

Collectors read the database at scrape time, so every instance of a cluster reports
the same numbers (scrape any one of them). A scrape reads everything in one unit of
work, then renders: each reading collector has

* `read(tx) -> snapshot`, run inside the scrape's one `host.read`, and
* `render(snapshot) -> Iterable[Metric]`, pure, yielding metric families
  (`GaugeMetricFamily`, `CounterMetricFamily`, `HistogramMetricFamily`).

Plugins add collectors with the hook `reactive_metrics(host)`; a plain
`prometheus_client` collector (with only `collect()`) is accepted too, for numbers
kept in memory. The registry is the app's own (never `prometheus_client`'s global one),
built on the first scrape.

The core's metrics (prefix `reactive_`): `reactive_up`; the work queue per group
(`reactive_queue_depth`, `reactive_queue_oldest_age_seconds`, `reactive_dead_letters`);
the handler durations of work-queue deliveries run by this instance
(`reactive_delivery_duration_seconds{group,outcome}`, the one number kept in memory:
a handler runs on one instance); automation (`reactive_rule_runs{rule,status}`, the runs
kept per rule, `reactive_rule_holds`); durable timers (`reactive_timers_pending{topic}`,
`reactive_timers_overdue{topic}`, `reactive_timers_dead{topic}`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard, cast

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, bindparam, func, select

from .._clock import as_utc
from .._delivery.policy import DeliveryStatus
from .._store.schema import entity_deliveries, timers, work_queue_routes
from .._timers.timers import TimerStatus
from .auth import ReadAccess, host_of

if TYPE_CHECKING:
    from .._host.host import Host

router = APIRouter()

HANDLER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   float("inf"))
"""Bucket bounds (seconds) of `reactive_delivery_duration_seconds`."""


class ReadingCollector(Protocol):
    """A collector that reads the database at scrape time (see the module docstring)."""

    def read(self, tx: Connection) -> Any:
        """What to report, read inside the scrape's unit of work."""

    def render(self, snapshot: Any) -> Iterable[Metric]:
        """The metric families of a snapshot `read` returned (no I/O)."""


def is_reading(collector: object) -> TypeGuard[ReadingCollector]:
    """Whether `collector` reads at scrape time (`read` and `render`)."""
    return callable(getattr(collector, "read", None)) and callable(
        getattr(collector, "render", None))


_SNAPSHOTS: ContextVar[Mapping[int, object]] = ContextVar("reactive_metrics_snapshots")
"""The snapshots of the scrape being rendered, by `id` of their `_Scraped` adapter."""


class _Scraped:
    """A reading collector in the app's registry: renders what the current scrape read."""

    def __init__(self, collector: ReadingCollector) -> None:
        self.collector = collector

    def describe(self) -> list[Metric]:
        return []  # no names ahead of a read; also keeps the registry from collecting

    def collect(self) -> Iterator[Metric]:
        snapshots = _SNAPSHOTS.get({})
        if id(self) in snapshots:
            yield from self.collector.render(snapshots[id(self)])


class Metrics:
    """One app's registry: the core's collectors and every plugin's."""

    def __init__(self, host: Host) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._reading: list[_Scraped] = []
        self._add(CoreCollector(host))
        durations = Histogram(
            "reactive_delivery_duration_seconds",
            "How long work-queue handlers ran on this instance, by group and outcome (done; "
            "retry: failed, retried later; dead: failed for the last time)",
            labelnames=("group", "outcome"), buckets=HANDLER_BUCKETS, registry=None)
        self.registry.register(durations)
        host.dispatcher.observers.append(
            lambda group, _kind, seconds, outcome: durations.labels(group, outcome)
            .observe(seconds))
        for collectors in host.hook.reactive_metrics(host=host):
            for collector in collectors or ():
                self._add(collector)

    def _add(self, collector: object) -> None:
        if is_reading(collector):
            scraped = _Scraped(collector)
            self._reading.append(scraped)
            self.registry.register(scraped)
        elif callable(getattr(collector, "collect", None)):
            self.registry.register(cast(Collector, collector))
        else:
            raise TypeError(f"reactive_metrics returned {collector!r}: expected collectors with "
                            "read(tx) and render(snapshot), or prometheus_client collectors "
                            "with collect()")

    def read(self, tx: Connection) -> dict[int, object]:
        """Every reading collector's snapshot (one unit of work)."""
        return {id(s): s.collector.read(tx) for s in self._reading}

    def render(self, snapshots: Mapping[int, object]) -> bytes:
        """The text exposition of `snapshots` and the in-memory collectors."""
        token = _SNAPSHOTS.set(snapshots)
        try:
            return generate_latest(self.registry)
        finally:
            _SNAPSHOTS.reset(token)


def metrics_of(request: Request) -> Metrics:
    """The app's `Metrics`, built on the first scrape."""
    metrics: Metrics | None = getattr(request.app.state, "metrics", None)
    if metrics is None:
        metrics = request.app.state.metrics = Metrics(host_of(request))
    return metrics


@router.get("/metrics", tags=["operations"], summary="Prometheus metrics",
            response_class=Response)
async def scrape(request: Request, _access: ReadAccess) -> Response:
    """The cluster's queues, timers, rules and every plugin's numbers, read now."""
    metrics = metrics_of(request)
    snapshots = await host_of(request).read(metrics.read)
    return Response(metrics.render(snapshots), media_type=CONTENT_TYPE_LATEST)


# -- the core's own numbers -----------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class GroupQueue:
    """One work-queue group: its backlog and dead letters."""

    depth: int = 0
    oldest_age_seconds: float = 0.0
    dead: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicTimers:
    """The durable timers of one topic."""

    pending: int = 0
    overdue: int = 0
    dead: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreSnapshot:
    """What the core reports, as read by one scrape."""

    groups: dict[str, GroupQueue]
    timers: dict[str, TopicTimers]
    rule_runs: dict[tuple[str, str], int] | None
    """Kept runs by (rule, status); None without the automation plugin."""
    holds: int


_d, _t = entity_deliveries, timers
_PENDING, _DEAD = DeliveryStatus.PENDING.value, DeliveryStatus.DEAD.value
_BACKLOG = (select(_d.c.group_name, func.count().label("n"), func.min(_d.c.created_at)
                   .label("oldest"))
            .where(_d.c.status == _PENDING).group_by(_d.c.group_name))
_DEAD_LETTERS = (select(_d.c.group_name, func.count().label("n"))
                 .where(_d.c.status == _DEAD).group_by(_d.c.group_name))
_GROUPS = select(work_queue_routes.c.group_name).distinct()
_TIMERS = (select(_t.c.topic, _t.c.status, func.count().label("n"))
           .group_by(_t.c.topic, _t.c.status))
_OVERDUE = (select(_t.c.topic, func.count().label("n"))
            .where(_t.c.status == TimerStatus.SCHEDULED.value,
                   _t.c.due_at <= bindparam("now", type_=_t.c.due_at.type))
            .group_by(_t.c.topic))


class CoreCollector:
    """The work queue, durable timers and automation runs of the cluster."""

    def __init__(self, host: Host) -> None:
        self._host = host

    def read(self, tx: Connection) -> CoreSnapshot:
        now = self._host.clock()
        groups: dict[str, dict[str, Any]] = {
            row.group_name: {} for row in tx.execute(_GROUPS)}
        for row in tx.execute(_BACKLOG):
            groups.setdefault(row.group_name, {}).update(
                depth=int(row.n), oldest_age_seconds=_age(now, row.oldest))
        for row in tx.execute(_DEAD_LETTERS):
            groups.setdefault(row.group_name, {})["dead"] = int(row.n)
        topics: dict[str, dict[str, int]] = {}
        for row in tx.execute(_TIMERS):
            name = "pending" if row.status == TimerStatus.SCHEDULED.value else "dead"
            topics.setdefault(row.topic, {})[name] = int(row.n)
        for row in tx.execute(_OVERDUE, {"now": now}):
            topics.setdefault(row.topic, {})["overdue"] = int(row.n)
        rule_runs, holds = self._automation(tx, topics)
        return CoreSnapshot(
            groups={g: GroupQueue(**v) for g, v in sorted(groups.items())},
            timers={t: TopicTimers(**v) for t, v in sorted(topics.items())},
            rule_runs=rule_runs, holds=holds)

    def _automation(self, tx: Connection, topics: Mapping[str, Mapping[str, int]],
                    ) -> tuple[dict[tuple[str, str], int] | None, int]:
        from ..automation.engine import HOLD_TOPIC
        from ..automation.plugin import automation_of
        from ..automation.schema import automation_runs as r

        if automation_of(self._host) is None:
            return None, 0
        runs = {(row.rule_id, row.status): int(row.n) for row in tx.execute(
            select(r.c.rule_id, r.c.status, func.count().label("n"))
            .group_by(r.c.rule_id, r.c.status))}
        return dict(sorted(runs.items())), topics.get(HOLD_TOPIC, {}).get("pending", 0)

    def render(self, snapshot: CoreSnapshot) -> Iterator[Metric]:
        yield _gauge("reactive_up", "1 while this instance serves /metrics", [((), 1)])
        groups = snapshot.groups.items()
        yield _gauge("reactive_queue_depth", "Work-queue deliveries not finished yet (waiting, "
                     "running or backing off), by group",
                     [((g,), q.depth) for g, q in groups], ("group",))
        yield _gauge("reactive_queue_oldest_age_seconds", "Age of the oldest unfinished "
                     "work-queue delivery, by group (0 when none)",
                     [((g,), q.oldest_age_seconds) for g, q in groups], ("group",))
        yield _gauge("reactive_dead_letters", "Dead-lettered work-queue deliveries (until "
                     "replayed), by group", [((g,), q.dead) for g, q in groups], ("group",))
        topics = snapshot.timers.items()
        yield _gauge("reactive_timers_pending", "Armed durable timers, by topic",
                     [((t,), n.pending) for t, n in topics], ("topic",))
        yield _gauge("reactive_timers_overdue", "Armed durable timers past their due time "
                     "and not fired yet, by topic", [((t,), n.overdue) for t, n in topics],
                     ("topic",))
        yield _gauge("reactive_timers_dead", "One-shot timers that failed on every attempt, by "
                     "topic", [((t,), n.dead) for t, n in topics], ("topic",))
        if snapshot.rule_runs is not None:
            yield _gauge("reactive_rule_runs", "Automation runs kept (the newest runs of each "
                         "rule; older finished ones are trimmed), by rule and status",
                         [(key, n) for key, n in snapshot.rule_runs.items()], ("rule", "status"))
            yield _gauge("reactive_rule_holds", "Armed holds of automation rules (a `for:` "
                         "waiting for its deadline)", [((), snapshot.holds)])


def _age(now: datetime, oldest: Any) -> float:
    if oldest is None:
        return 0.0
    if isinstance(oldest, str):
        oldest = datetime.fromisoformat(oldest)
    return max((now - as_utc(oldest)).total_seconds(), 0.0)


def _gauge(name: str, documentation: str, samples: Iterable[tuple[tuple[str, ...], float]],
           labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for values, value in samples:
        family.add_metric(list(values), value)
    return family
