#!/usr/bin/env python
"""SLO plugin benchmark: error budgets computed and read, and the handlers' throughput.

Run from the repository root (SQLite in a temp dir; about 25 s, `--quick` about 10 s):

    .venv/bin/python benchmarks/slo.py [--quick] [--burst N]

A host with the catalog, health and SLO plugins (`run_jobs` off, no check scheduler)
on a SQLite file. Each measurement of ours runs next to a hand-written equivalent with
the raw `sqlite3` driver, in the same run, on the same file, in alternating rounds.
Each row reports its mean (all the time over all the calls: what a call costs on
average, the garbage collector's pauses included) and its best round (undisturbed by
other load or the collector); ratios are mean to mean, best to best. Targets are judged
on the means.

1. One objective with 10,000 downtime events in its 30-day window (self and upstream
   on three upstreams, every tenth upstream event overlapping the next self event, the
   first event straddling the window's start, the newest one open while the system is
   down). Per call:
   * hand-written: ONE query over the plugin's own events table (through its
     (objective, start) index) summing per attribution and upstream the durations
     clipped to `[now − 30 d, now]`: the stored `duration_seconds` of an event inside
     the window, `julianday` arithmetic for one that crosses an edge or is open (up to
     now). It does not merge overlapping events: ours counts an overlap once, so its
     strict total is lower; the per-source sums agree (checked);
   * ours `compute_status(objective, events, now=..., currently_down=True)` over the
     events as the store returns them (pure Python; loading them is not timed here).
     Target: ≤ 2× the hand-written query;
   * for reference: the same with the garbage collector off (and the collections that
     ran during ours' rounds: how often, how long); the store's load of the
     10,000 events alone (`window_events_in`); the whole `slo` read of the objective in
     a unit of work (`get_many_in`: objective, events, live health, streak, then
     `compute_status`).
2. `read` of 1,000 objectives at once (`host.entity("slo").get_many(ids)`): 500
   systems with one check each (three passing runs), two objectives per system (strict
   and self-only, targets 99–99.95 %, windows 7/30/90 days), 12 closed, disjoint events
   per objective (one before the window, one straddling its start). Objectives and
   events are written with the plugin's store functions, not through `upsert_objective`
   (only reads are measured). Hand-written: one grouped query joining objectives and
   events, clipped per objective's window as above, and the budget, availability,
   burn rate and breach computed in Python. Neither side reads live health here: every
   event is closed, and live health only matters to an objective with an open event
   (ours reads it for those alone, in one read). Both sides must agree for every
   objective (checked). Target: ≤ 2×. Then the steps of ours (`SloReader.read`), each
   timed on its own with the plugin's functions: where the time goes.
3. Handler throughput: N systems (default 1,000; 300 with `--quick`; in groups of ten,
   nine depending on the first), one objective each (self-only and strict
   alternating), one shared check with thresholds that make one failure unhealthy.
   One unit of work records a failing run for every system (`record_run_in`): N
   `health` changes queued at once. Timed: `host.drain()` until every delivery they
   caused is handled (the SLO work-queue groups open events, attributed to a down
   upstream for self-only objectives). Reported: changes/s, and per change the
   deliveries, the units of work through the host (`host.run` / `host.read`, counted
   by wrapping them), the SQL statements (every engine) and the `slo` changes. No
   peer. Sanity: N health changes, every objective with exactly one open event, every
   delivery done.

The exit status is 1 when a sanity check fails (the two sides disagree, an event is
missing, a delivery is left), not when a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import event, insert
from sqlalchemy.engine import Engine

from catalog_plugin import Catalog, CatalogPlugin
from health_plugin import CheckOutcome, HealthPlugin, HealthStatus, Thresholds, health_service
from reactive_core import Host
from slo_plugin import (
    SLO_KIND,
    DependencyExclusion,
    Objective,
    SloPlugin,
    compute_status,
    slo_service,
)
from slo_plugin import store as slo_store
from slo_plugin.engine import compute_budget
from slo_plugin.schema import slo_downtime_events

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
EAGER = Thresholds(degraded_min_failures=1, unhealthy_min_failures=1)
DOWN = CheckOutcome(status=HealthStatus.UNHEALTHY, latency_ms=1.0)
UP = CheckOutcome(status=HealthStatus.HEALTHY, latency_ms=1.0)
TARGET_RATIO = 2.0

BIG_EVENTS = 10_000
READ_SYSTEMS = 500
READ_OBJECTIVES = 1_000
READ_EVENTS = 12            # per objective: one before the window, one straddling its start
BURST = 1_000
QUICK_BURST = 300


class Clock:
    """The hosts' clock: frozen at a set instant, or running from it in real time."""

    def __init__(self) -> None:
        self.base = NOW
        self.started: float | None = None

    def freeze(self, at: datetime) -> None:
        self.base, self.started = at, None

    def run_from(self, at: datetime) -> None:
        self.base, self.started = at, time.perf_counter()

    def __call__(self) -> datetime:
        if self.started is None:
            return self.base
        return self.base + timedelta(seconds=time.perf_counter() - self.started)


def make_host(path: Path, clock: Clock) -> Host:
    return Host(database_url=f"sqlite:///{path}", clock=clock, entry_points=False,
                plugins=[CatalogPlugin(), HealthPlugin(), SloPlugin()],
                config={"run_jobs": False, "plugins": {"health": {"scheduler": False}}})


def stamp(value: datetime) -> str:
    """SQLAlchemy's SQLite DateTime text form (UTC, naive)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def timed(fn: Callable[[], Any], n: int) -> float:
    """Seconds per call of `fn` over `n` calls."""
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n


async def atimed(fn: Callable[[], Any], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - started) / n


def interleaved(pairs: list[tuple[str, Callable[[], float]]],
                rounds: int) -> dict[str, list[float]]:
    """Each measurement's value in each of `rounds` rounds, taken in turn, so that the
    load of the (shared) machine weighs on all of them alike."""
    values: dict[str, list[float]] = {name: [] for name, _ in pairs}
    for _ in range(rounds):
        for name, measure in pairs:
            values[name].append(measure())
    return values


async def ainterleaved(pairs: list[tuple[str, Callable[[], Any]]],
                       rounds: int) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {name: [] for name, _ in pairs}
    for _ in range(rounds):
        for name, measure in pairs:
            values[name].append(await measure())
    return values


async def build_systems(host: Host, systems: list[str], check: str,
                        edges: Sequence[tuple[str, str]] = ()) -> None:
    """Catalog systems, one shared check associated with each (one failure: unhealthy)."""
    catalog = Catalog(host)
    health = health_service(host)

    def unit(tx: Any) -> None:
        health.upsert_check_in(tx, check, strategy="tcp", config={"host": "127.0.0.1",
                                                                   "port": 9})
        for system in systems:
            catalog.upsert_system_in(tx, system, name=system.upper())
            health.associate_in(tx, system, check, thresholds=EAGER)
        for source, target in edges:
            catalog.add_dependency_in(tx, source, target)

    await host.run(unit)
    await host.drain(timeout=120)


async def create_objectives(host: Host, objectives: list[Objective]) -> None:
    service = slo_service(host)
    for start in range(0, len(objectives), 100):
        chunk = objectives[start: start + 100]

        def unit(tx: Any, chunk: list[Objective] = chunk) -> None:
            for objective in chunk:
                service.upsert_objective_in(tx, objective)

        await host.run(unit)
    await host.drain(timeout=120)


class GcWatch:
    """While entered: how many collections of each generation ran, and how long."""

    def __init__(self) -> None:
        self.by_generation: dict[int, tuple[int, float]] = {}
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        count, spent = self.by_generation.get(info["generation"], (0, 0.0))
        self.by_generation[info["generation"]] = (
            count + 1, spent + time.perf_counter() - self._started)

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._callback)


# -- 1. compute_status, one objective with 10,000 events ---------------------------------

BIG_SQL = """
SELECT attribution, upstream_system_id,
       SUM(CASE WHEN started_at >= :since AND ended_at <= :now THEN duration_seconds
           ELSE (julianday(MIN(COALESCE(ended_at, :now), :now))
                 - julianday(MAX(started_at, :since))) * 86400.0 END)
FROM slo_downtime_events
WHERE objective_id = :oid AND started_at < :now
  AND (ended_at IS NULL OR ended_at > :since)
GROUP BY attribution, upstream_system_id
"""


def big_events(n: int, since: datetime, until: datetime, seed: int = 11,
               ) -> Iterator[tuple[datetime, datetime, str, str | None]]:
    """`n` closed events over `[since, until]`: (start, end, attribution, upstream).

    Event i sits in slot i, so events of one source never overlap; every tenth upstream
    event runs into the next slot's self event (overlaps across sources only)."""
    rng = random.Random(seed)
    slot = (until - since).total_seconds() / n
    upstreams = ("db", "queue", "auth")
    for i in range(n):
        upstream = i % 5 in (1, 3)
        start = since + timedelta(seconds=i * slot + rng.uniform(0, slot * 0.3))
        length = rng.uniform(slot * 0.1, slot * 0.5)
        if i == 0:
            start = since - timedelta(seconds=slot)  # straddles the window's start
            length = slot * 1.5
        elif upstream and i % 10 == 3:
            length = slot * 1.2  # into the next (self) event's slot
        yield (start, start + timedelta(seconds=length),
               "upstream" if upstream else "self",
               upstreams[i % 3] if upstream else None)


async def bench_compute(folder: Path, clock: Clock, quick: bool,
                        ) -> tuple[list[Row], list[str]]:
    path = folder / "compute.db"
    n_calls, rounds = (3, 10) if quick else (5, 30)
    window = timedelta(days=30)
    opened = NOW - timedelta(minutes=30)
    clock.freeze(opened)
    async with make_host(path, clock) as host:
        await build_systems(host, ["big-sys", "db", "queue", "auth"], "big-check",
                            [("big-sys", "db"), ("big-sys", "queue"), ("big-sys", "auth")])
        # The system goes down 30 minutes before NOW and stays down; the objective,
        # created then, opens its event at once: the newest event, open.
        await health_service(host).record_run("big-check", DOWN, systems=["big-sys"],
                                              timestamp=opened)
        await host.drain()
        await create_objectives(host, [Objective(
            id="big", system_id="big-sys", target=99.9, window_days=30,
            dependency_exclusion=DependencyExclusion.SELF_ONLY)])
        rows = [{"objective_id": "big", "started_at": start, "ended_at": end,
                 "duration_seconds": (end - start).total_seconds(), "attribution": attr,
                 "upstream_system_id": upstream,
                 "upstream_system_name": None if upstream is None else upstream.upper()}
                for start, end, attr, upstream in big_events(BIG_EVENTS - 1, NOW - window,
                                                             opened)]
        await host.run(lambda tx: tx.execute(insert(slo_downtime_events), rows))
        clock.freeze(NOW)

        objective, events = await host.read(lambda tx: (
            slo_store.objective_in(tx, "big"),
            slo_store.window_events_in(tx, ["big"], NOW - window)["big"]))
        assert objective is not None
        hand = connect(path)
        params = {"oid": "big", "now": stamp(NOW), "since": stamp(NOW - window)}

        def ours() -> Any:
            return compute_status(objective, events, now=NOW, currently_down=True)

        def hand_sql() -> list[Any]:
            return hand.execute(BIG_SQL, params).fetchall()

        status = ours()
        sums = {(a, u): s for a, u, s in hand_sql()}
        in_window = sum(1 for e in events if e.end is None or e.end > NOW - window)
        problems = []
        if in_window != BIG_EVENTS:
            problems.append(f"{in_window} events in the window, expected {BIG_EVENTS}")
        ours_sources = {("self", None): status.attribution.self_minutes * 60}
        ours_sources.update({("upstream", u.system_id): u.minutes * 60
                             for u in status.attribution.upstreams})
        for key in sorted(sums.keys() | ours_sources.keys(), key=str):
            a, b = ours_sources.get(key, 0.0), sums.get(key, 0.0)
            if abs(a - b) > 0.01:
                problems.append(f"{key}: ours {a:.3f} s, hand-written {b:.3f} s")
        slo = host.entity(SLO_KIND)
        state = await slo.get("big")
        if state is None or abs(state.budget_remaining_percent
                                - status.error_budget_remaining_percent) > 1e-9:
            problems.append("the slo entity's budget differs from compute_status's")
        overlap = sum(sums.values()) / 60 - status.error_budget_consumed_strict_minutes
        print(f"  {len(events):,} events loaded ({in_window:,} in the window), "
              f"per-source minutes agree: {'no' if problems else 'yes'}; "
              f"self {status.attribution.self_minutes:,.1f} min, upstream "
              f"{sum(u.minutes for u in status.attribution.upstreams):,.1f} min "
              f"({len(status.attribution.upstreams)} upstreams); overlaps counted once by "
              f"ours: {overlap:,.1f} min less than the hand-written sum")

        def without_gc() -> float:
            gc.disable()
            try:
                return timed(ours, n_calls)
            finally:
                gc.enable()

        def load_events(tx: Any) -> Any:
            return slo_store.window_events_in(tx, ["big"], NOW - window)

        def read_in(tx: Any, flip: bool) -> tuple[float, float]:
            # In turn first and second: the first may meet the collector's bill for the
            # garbage of the rounds before.
            if flip:
                whole = timed(lambda: slo.get_many_in(tx, ["big"]), 1)
                return timed(lambda: load_events(tx), 1), whole
            return (timed(lambda: load_events(tx), 1),
                    timed(lambda: slo.get_many_in(tx, ["big"]), 1))

        collector = GcWatch()

        def watched() -> float:
            with collector:
                return timed(ours, n_calls)

        got = interleaved([("ours", watched),
                           ("hand", lambda: timed(hand_sql, n_calls)),
                           ("nogc", without_gc)], rounds)
        reads = [await host.read(read_in, k % 2 == 1) for k in range(4 if quick else 8)]
        hand.close()
    calls = n_calls * rounds
    print(f"  garbage collections during ours' {calls} calls (gc on): "
          + ", ".join(f"generation {g}: {n / calls:.2f} per call, {spent / n * 1e3:.2f} ms each"
                      for g, (n, spent) in sorted(collector.by_generation.items()))
          + f"; {len(gc.get_objects()):,} objects tracked in this process")
    label = f"1 objective, {BIG_EVENTS:,} events"
    base = got["hand"]
    return [
        Row(f"{label}: hand-written sqlite3 SUM of clipped durations", base),
        Row(f"{label}: ours compute_status (events in memory)", got["ours"], base,
            TARGET_RATIO),
        Row(f"{label}: ours compute_status, gc disabled (reference)", got["nogc"], base),
        Row(f"{label}: ours store.window_events_in (the load alone)",
            [r[0] for r in reads], base),
        Row(f"{label}: ours slo get_many_in (load + compute_status)",
            [r[1] for r in reads], base),
    ], problems


# -- 2. read 1,000 objectives --------------------------------------------------------------

READ_SQL = """
WITH o AS (
  SELECT id, target, window_days, dependency_exclusion,
         strftime('%Y-%m-%d %H:%M:%f', :now, printf('-%d days', window_days)) AS since
  FROM slo_objectives WHERE id IN ({ids}))
SELECT o.id, o.target, o.window_days, o.dependency_exclusion, e.attribution,
       SUM(CASE WHEN e.started_at >= o.since AND e.ended_at <= :now THEN e.duration_seconds
           ELSE (julianday(MIN(COALESCE(e.ended_at, :now), :now))
                 - julianday(MAX(e.started_at, o.since))) * 86400.0 END)
FROM o
LEFT JOIN slo_downtime_events AS e
  ON e.objective_id = o.id AND e.started_at < :now
 AND (e.ended_at IS NULL OR e.ended_at > o.since)
GROUP BY o.id, e.attribution
"""


def hand_read(conn: sqlite3.Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The hand-written read: one grouped query, the budgets computed in Python."""
    query = READ_SQL.format(ids=",".join(f":i{k}" for k in range(len(ids))))
    params = {"now": stamp(NOW), **{f"i{k}": oid for k, oid in enumerate(ids)}}
    per: dict[str, list[Any]] = {}
    for oid, target, days, exclusion, attribution, seconds in conn.execute(query, params):
        entry = per.get(oid)
        if entry is None:
            entry = per[oid] = [target, days, exclusion, 0.0, 0.0]
        if attribution == "self":
            entry[3] += seconds
        elif attribution == "upstream":
            entry[4] += seconds
    out: dict[str, dict[str, Any]] = {}
    for oid, (target, days, exclusion, own, upstream) in per.items():
        total = days * 86_400.0
        allowed = (100.0 - target) * total / 100.0
        consumed = own if exclusion == "self-only" else own + upstream
        remaining = max(0.0, allowed - consumed)
        out[oid] = {
            "budget": remaining / allowed * 100.0 if allowed > 0 else 100.0,
            "availability": (total - consumed) * 100.0 / total,
            "burn_rate": consumed / allowed if allowed > 0 else None,
            "breaching": consumed > allowed, "consumed": consumed, "allowed": allowed,
            "total": total,
        }
    return out


def disagreement(oid: str, state: Any, mine: dict[str, Any]) -> str | None:
    """Why ours and the hand-written figures of one objective differ, if they do.

    SQLite's date functions work in whole milliseconds: the straddling event's clipped
    length may differ by a millisecond, so amounts are compared to 10 ms."""
    tolerance = 0.01
    consumed = (100.0 - state.availability) * mine["total"] / 100.0
    ok = (abs(consumed - mine["consumed"]) <= tolerance
          and abs(state.budget_remaining_percent - mine["budget"])
          <= tolerance / mine["allowed"] * 100.0
          and (state.burn_rate is None) == (mine["burn_rate"] is None)
          and (state.burn_rate is None
               or abs(state.burn_rate - mine["burn_rate"]) <= tolerance / mine["allowed"])
          and (abs(mine["consumed"] - mine["allowed"]) <= tolerance
               or state.is_breaching == mine["breaching"]))
    if ok:
        return None
    return (f"{oid}: ours consumed {consumed:.3f} s, budget {state.budget_remaining_percent:.6f} "
            f"%, breaching {state.is_breaching}; hand-written {mine['consumed']:.3f} s, "
            f"{mine['budget']:.6f} %, {mine['breaching']}")


def read_events(objectives: list[Objective], seed: int = 5) -> list[dict[str, Any]]:
    """READ_EVENTS closed, disjoint events per objective (see the module docstring)."""
    rng = random.Random(seed)
    rows = []
    for objective in objectives:
        since = NOW - timedelta(days=objective.window_days)
        slot = objective.window_days * 86_400.0 / (READ_EVENTS - 1)
        for j in range(READ_EVENTS):
            if j == 0:      # before the window: counts nothing
                start, length = since - timedelta(days=3), 3600.0
            elif j == 1:    # straddles the window's start
                start, length = since - timedelta(minutes=20), 1800.0 + rng.uniform(0, 1800)
            else:
                start = since + timedelta(seconds=(j - 1) * slot + rng.uniform(0, slot / 2))
                length = rng.uniform(30, 90 * 60 if rng.random() < 0.1 else 15 * 60)
            upstream = rng.random() < 0.35 and j > 1
            up_id = f"sys-{rng.randrange(READ_SYSTEMS):03d}" if upstream else None
            rows.append({"objective_id": objective.id, "started_at": start,
                         "ended_at": start + timedelta(seconds=length),
                         "duration_seconds": length,
                         "attribution": "upstream" if upstream else "self",
                         "upstream_system_id": up_id,
                         "upstream_system_name": None if up_id is None else up_id.upper()})
    return rows


async def bench_read(folder: Path, clock: Clock, quick: bool) -> tuple[list[Row], list[str]]:
    path = folder / "read.db"
    rounds = 2 if quick else 7
    clock.freeze(NOW)
    systems = [f"sys-{s:03d}" for s in range(READ_SYSTEMS)]
    targets = (99.0, 99.5, 99.9, 99.95)
    windows = (7, 30, 90)
    objectives = [Objective(
        id=f"obj-{i:04d}", system_id=systems[i // 2], target=targets[i % 4],
        window_days=windows[i % 3],
        dependency_exclusion=(DependencyExclusion.STRICT if i % 2 == 0
                              else DependencyExclusion.SELF_ONLY))
        for i in range(READ_OBJECTIVES)]
    async with make_host(path, clock) as host:
        started = time.perf_counter()
        await build_systems(host, systems, "probe")
        # A few passing runs per system, so live health is evaluated from real runs.
        service = health_service(host)
        for k in range(3):
            await service.record_run("probe", UP, timestamp=NOW - timedelta(minutes=3 - k))
        await host.drain()
        events = read_events(objectives)

        def load(tx: Any) -> None:
            # Only reads are measured: objectives and events go straight to the plugin's
            # tables through its store (upsert_objective's reconcile would find every
            # system healthy and add nothing).
            for objective in objectives:
                slo_store.save_objective_in(tx, objective, NOW - timedelta(days=100))
            tx.execute(insert(slo_downtime_events), events)

        await host.run(load)
        hand = connect(path)
        hand.execute("ANALYZE")
        print(f"  {READ_SYSTEMS} systems (one check, 3 runs each), {READ_OBJECTIVES:,} "
              f"objectives, {len(events):,} events; set up in "
              f"{time.perf_counter() - started:.1f} s")

        ids = [o.id for o in objectives]
        slo = host.entity(SLO_KIND)
        ours_all = await slo.get_many(ids)
        hand_all = hand_read(hand, ids)
        problems = []
        if len(ours_all) != len(ids) or len(hand_all) != len(ids):
            problems.append(f"read {len(ours_all)} (ours) and {len(hand_all)} (hand-written) "
                            f"of {len(ids)} objectives")
        for oid, state in ours_all.items():
            why = disagreement(oid, state, hand_all[oid]) if oid in hand_all else None
            if why is not None:
                problems.append(why)
        breaching = sum(s.is_breaching for s in ours_all.values())
        print(f"  statuses agree for {len(ours_all) - len(problems):,} of {len(ids):,} "
              f"objectives ({breaching} breaching)")

        def in_unit(tx: Any) -> float:
            return timed(lambda: slo.get_many_in(tx, ids), 1)

        got = await ainterleaved([
            ("hand", lambda: anyio.to_thread.run_sync(
                lambda: timed(lambda: hand_read(hand, ids), 1))),
            ("ours", lambda: atimed(lambda: slo.get_many(ids), 1)),
            ("ours_in", lambda: host.read(in_unit)),
        ], rounds)
        parts = await host.read(lambda tx: read_parts(tx, host, ids, 1 if quick else 3))
        hand.close()
    label = f"{READ_OBJECTIVES:,} objectives"
    base = got["hand"]
    rows = [
        Row(f"{label}: hand-written grouped sqlite3 query + budgets", base),
        Row(f"{label}: ours slo get_many", got["ours"], base, TARGET_RATIO),
        Row(f"{label}: ours slo get_many_in (inside a unit of work)", got["ours_in"], base),
    ]
    steps = sum(seconds for name, seconds in parts.items() if not name.startswith("("))
    print("  where ours spends a read (the steps of SloReader.read, timed one by one): "
          + ", ".join(f"{name} {show(seconds)} ({seconds / steps:.0%})"
                      for name, seconds in parts.items() if not name.startswith("("))
          + "; for reference: " + ", ".join(f"{name[1:-1]} {show(seconds)}"
                                              for name, seconds in parts.items()
                                              if name.startswith("(")))
    return rows, problems[:5]


def read_parts(tx: Any, host: Host, ids: list[str], repeat: int) -> dict[str, float]:
    """The steps `SloReader.read` takes for `ids`, each timed on its own (best of
    `repeat`)."""
    around = slo_service(host).surroundings
    best: dict[str, float] = {}

    def step(name: str, fn: Callable[[], Any]) -> Any:
        result = None
        for _ in range(repeat):
            started = time.perf_counter()
            result = fn()
            spent = time.perf_counter() - started
            best[name] = min(best.get(name, spent), spent)
        return result

    objectives = step("objectives", lambda: slo_store.objectives_in(tx, ids))
    longest = max(o.window_days for o in objectives)
    events = step("events", lambda: slo_store.window_events_in(
        tx, [o.id for o in objectives], NOW - timedelta(days=longest), upstreams=False))
    step("budgets", lambda: [compute_budget(o, events[o.id], now=NOW, currently_down=False)
                             for o in objectives])
    step("streaks", lambda: slo_store.streaks_in(tx, ids))
    step("(live health of all 500 systems, not needed here)", lambda: around.systems_down_in(
        tx, sorted({o.system_id for o in objectives})))
    step("(full compute_status, not needed here)", lambda: [
        compute_status(o, events[o.id], now=NOW, currently_down=False) for o in objectives])
    return best


# -- 3. handler throughput ----------------------------------------------------------------

class Tally:
    """Counts SQL statements (every engine) and the host's units of work while on."""

    def __init__(self, host: Host) -> None:
        self.on = False
        self.statements = 0
        self.units: Counter[str] = Counter()
        run, read = host.run, host.read

        async def counted_run(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            if self.on:
                self.units["run"] += 1
            return await run(fn, *args, **kwargs)

        async def counted_read(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            if self.on:
                self.units["read"] += 1
            return await read(fn, *args, **kwargs)

        host.run = counted_run  # type: ignore[method-assign]
        host.read = counted_read  # type: ignore[method-assign]
        event.listen(Engine, "before_cursor_execute", self._statement)

    def _statement(self, *_: Any) -> None:
        if self.on:
            self.statements += 1

    def close(self) -> None:
        event.remove(Engine, "before_cursor_execute", self._statement)


async def bench_burst(folder: Path, clock: Clock, burst: int) -> tuple[dict[str, Any], list[str]]:
    path = folder / "burst.db"
    clock.run_from(NOW - timedelta(hours=1))
    systems = [f"svc-{s:04d}" for s in range(burst)]
    edges = [(s, systems[i - i % 10]) for i, s in enumerate(systems) if i % 10]
    objectives = [Objective(id=f"{s}-slo", system_id=s, target=99.9, window_days=30,
                            dependency_exclusion=(DependencyExclusion.STRICT if i % 2
                                                  else DependencyExclusion.SELF_ONLY))
                  for i, s in enumerate(systems)]
    async with make_host(path, clock) as host:
        started = time.perf_counter()
        await build_systems(host, systems, "shared", edges)
        service = health_service(host)
        await service.record_run("shared", UP)
        await host.drain()
        created = time.perf_counter()
        await create_objectives(host, objectives)
        created = time.perf_counter() - created
        print(f"  set up {burst:,} systems ({len(edges):,} dependencies), {burst:,} "
              f"objectives in {time.perf_counter() - started:.1f} s (the objectives through "
              f"SloService.upsert_objective_in, 100 per unit of work, and the drain after: "
              f"{created:.1f} s, {created / burst * 1e3:.1f} ms each)")

        def seq(tx: Any) -> int:
            return int(tx.exec_driver_sql(
                "SELECT COALESCE(MAX(seq), 0) FROM entity_changes").scalar_one())

        mark = await host.read(seq)
        tally = Tally(host)
        record_started = time.perf_counter()
        await host.run(lambda tx: service.record_run_in(tx, "shared", DOWN))
        recorded = time.perf_counter() - record_started
        tally.on = True
        drain_started = time.perf_counter()
        await host.drain(timeout=600)
        drained = time.perf_counter() - drain_started
        tally.on = False
        tally.close()

        def counts(tx: Any) -> dict[str, Any]:
            def rows(sql: str) -> list[Any]:
                return [tuple(r) for r in tx.exec_driver_sql(sql, (mark,))]

            return {
                "changes": dict(rows("SELECT kind, count(*) FROM entity_changes "
                                     "WHERE seq > ? GROUP BY kind")),
                "deliveries": dict(rows(
                    "SELECT d.group_name, count(*) FROM entity_deliveries AS d "
                    "JOIN entity_changes AS c ON c.seq = d.change_seq "
                    "WHERE c.seq > ? AND c.kind = 'health' GROUP BY d.group_name")),
                "statuses": dict(rows(
                    "SELECT d.status, count(*) FROM entity_deliveries AS d "
                    "WHERE d.change_seq > ? GROUP BY d.status")),
                "open": dict(tuple(r) for r in tx.exec_driver_sql(
                    "SELECT attribution, count(*) FROM slo_downtime_events "
                    "WHERE ended_at IS NULL GROUP BY attribution")),
                "objectives_open": int(tx.exec_driver_sql(
                    "SELECT count(DISTINCT objective_id) FROM slo_downtime_events "
                    "WHERE ended_at IS NULL").scalar_one()),
                "reasons": Counter(re.sub(r"svc-\d+", "<system>", reason or "-")
                                   for (reason,) in tx.exec_driver_sql(
                                       "SELECT reason FROM entity_changes "
                                       "WHERE seq > ? AND kind = 'slo'", (mark,))),
                "closed": int(tx.exec_driver_sql(
                    "SELECT count(*) FROM slo_downtime_events "
                    "WHERE ended_at IS NOT NULL").scalar_one()),
            }

        found = await host.read(counts)
    health_changes = found["changes"].get("health", 0)
    problems = []
    if health_changes != burst:
        problems.append(f"{health_changes} health changes recorded, expected {burst}")
    if found["objectives_open"] != burst or sum(found["open"].values()) != burst:
        problems.append(f"{sum(found['open'].values())} open events on "
                        f"{found['objectives_open']} objectives, expected one on each of "
                        f"{burst}")
    unfinished = {k: v for k, v in found["statuses"].items() if k != "done"}
    if unfinished:
        problems.append(f"deliveries not done after the drain: {unfinished}")
    return {"burst": burst, "recorded": recorded, "drained": drained, "downstream": len(edges),
            "statements": tally.statements, "units": dict(tally.units), **found}, problems


# -- report -------------------------------------------------------------------------------

class Row:
    """A measurement: seconds per call in each round (every round makes the same number
    of calls); ratios are to `baseline`'s rounds."""

    def __init__(self, label: str, values: list[float], baseline: list[float] | None = None,
                 target: float | None = None) -> None:
        self.label, self.values, self.baseline, self.target = label, values, baseline, target

    @property
    def best(self) -> float:
        """The best round: the cost of a call undisturbed by other load or the collector."""
        return min(self.values)

    @property
    def mean(self) -> float:
        """All the time over all the calls: what a call costs on average, the garbage
        collector's pauses included."""
        return statistics.fmean(self.values)

    @property
    def ratio(self) -> float | None:
        return None if self.baseline is None else self.best / min(self.baseline)

    @property
    def mean_ratio(self) -> float | None:
        return None if self.baseline is None else self.mean / statistics.fmean(self.baseline)

    def verdict(self) -> str:
        """Judged on the means; the best rounds' verdict beside it when it differs."""
        if self.target is None or self.ratio is None or self.mean_ratio is None:
            return ""
        met = self.mean_ratio <= self.target
        text = f"≤ {self.target:g}x: {'MET' if met else 'MISSED'}"
        if (self.ratio <= self.target) != met:
            text += f" (best rounds: {'met' if self.ratio <= self.target else 'missed'})"
        return text


def show(value: float) -> str:
    return f"{value * 1e6:,.0f} µs" if value < 0.01 else f"{value * 1e3:,.1f} ms"


def print_rows(rows: list[Row]) -> None:
    width = max(len(r.label) for r in rows)
    print(f"\n  {'':<{width}}  {'mean':>10}  {'best':>10}  {'vs hand':>7}  "
          f"{'(best)':>8}  target")
    for row in rows:
        ratio = f"{row.mean_ratio:.2f}x" if row.mean_ratio is not None else ""
        best = f"({row.ratio:.2f}x)" if row.ratio is not None else ""
        print(f"  {row.label:<{width}}  {show(row.mean):>10}  {show(row.best):>10}  "
              f"{ratio:>7}  {best:>8}  {row.verdict()}")


async def run(quick: bool, burst: int) -> int:
    total = time.perf_counter()
    print("slo plugin benchmark" + (" (quick)" if quick else ""))
    print(f"  python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
          f"{platform.machine()}, {platform.system()}")
    clock = Clock()
    problems: list[str] = []
    summary: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="slo-bench-") as tmp:
        folder = Path(tmp)
        print(f"\n1. compute_status: one objective, {BIG_EVENTS:,} events in its 30-day "
              "window (SQLite)")
        rows, found = await bench_compute(folder, clock, quick)
        print_rows(rows)
        summary += [r for r in rows if r.target is not None]
        problems += [f"1: {p}" for p in found]

        print(f"\n2. read: {READ_OBJECTIVES:,} objectives x {READ_EVENTS} events at once "
              "(SQLite)")
        rows, found = await bench_read(folder, clock, quick)
        print_rows(rows)
        summary += [r for r in rows if r.target is not None]
        problems += [f"2: {p}" for p in found]

        print(f"\n3. handlers: a burst of {burst:,} health changes (systems going down), "
              "host.drain() timed")
        res, found = await bench_burst(folder, clock, burst)
        problems += [f"3: {p}" for p in found]
    rate = res["burst"] / res["drained"]
    per = res["burst"]
    deliveries = sum(res["deliveries"].values())
    slo_changes = res["changes"].get(SLO_KIND, 0)
    units = res["units"]
    print(f"  recording the {per:,} failing runs (one unit of work): {res['recorded']:.2f} s")
    print(f"  drain: {res['drained']:.2f} s -> {rate:,.0f} health changes/s "
          f"({res['drained'] / per * 1e3:.2f} ms per change)")
    print(f"  per change: {deliveries / per:.1f} deliveries "
          f"({', '.join(f'{g} {n / per:.2g}' for g, n in sorted(res['deliveries'].items()))}), "
          f"{units.get('run', 0) / per:.1f} write units + {units.get('read', 0) / per:.1f} "
          f"read units through the host, {res['statements'] / per:.0f} SQL statements, "
          f"{slo_changes / per:.2f} slo changes logged")
    print(f"  slo changes by reason: {dict(res['reasons'])}")
    print(f"  write units: one per objective of each system that went down ({per:,}) and "
          f"one per objective downstream of it ({res['downstream']:,}); events split by "
          f"those downstream units: {res['closed']:,}")
    print(f"  afterwards: open events {res['open']} on {res['objectives_open']:,} objectives")

    print("\nsummary (ours against the hand-written equivalent: means, and best rounds)")
    for row in summary:
        print(f"  {row.label:<58} {show(row.mean):>10}  {row.mean_ratio:5.2f}x  "
              f"({row.ratio:.2f}x)  {row.verdict()}")
    print(f"  {'handlers: ' + format(per, ',') + ' health changes drained':<58} "
          f"{rate:>9,.0f}/s  (no peer)")
    for problem in problems:
        print(f"  !! {problem}")
    print(f"\ntotal time {time.perf_counter() - total:.1f} s")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--burst", type=int, default=None,
                        help=f"health changes in the handler burst (default {BURST:,}, "
                             f"{QUICK_BURST} with --quick)")
    args = parser.parse_args(argv)
    burst = args.burst or (QUICK_BURST if args.quick else BURST)
    if burst < 10:
        parser.error("--burst: at least 10 (systems come in groups of ten)")
    return anyio.run(run, args.quick, burst)


if __name__ == "__main__":
    sys.exit(main())
