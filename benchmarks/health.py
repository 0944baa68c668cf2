#!/usr/bin/env python
"""Health plugin benchmark: reading computed health, and check runs per second.

Run from the repository root (SQLite in a temp dir; about a minute, `--quick` ~20 s):

    .venv/bin/python benchmarks/health.py [--quick]

1. Reads. 1,000 systems, each with 10 enabled checks of 100 runs (1,000,000 runs; the
   rows are bulk-loaded with sqlite3, not through `mutate`, since only reads are
   measured). Per read of ONE system's health (µs), in the same run:
   * ours `get`: `await host.entity("health").get(id)` — one thread hop, SQLAlchemy,
     the evaluation, pydantic validation;
   * ours `get_many_in`: the same read inside an open unit of work (no thread hop);
   * ours cached: `HealthService.status(id)` on a warm cache;
   * hand-written: the same query written by hand with the raw `sqlite3` driver on one
     open connection, plus the same evaluation (`evaluate_status` / `aggregate_checks`);
   * hand-written SQL only: that query's fetch without the evaluation.
   And `read` of all 1,000 systems at once (`get_many`) against the hand-written query
   over the same ids. Both sides must compute identical states (checked).
2. Check runs per second, sustained, through the scheduler inside a host, against a
   local HTTP target (`health_plugin.flaky.FlakyTarget`, always 200): 100 checks on 100
   systems, interval 0.1 s (demand 1,000 runs/s, more than one SQLite writer can
   record), 16 runs in flight. Each run: an HTTP GET, then one unit of work inserting
   the run, evaluating the check, mutating `health` (prev/next reads, change log on a
   status change). Baseline in the same run: a hand-written loop with the same
   concurrency doing the GET with httpx and, per run, one raw `sqlite3` transaction
   that inserts the run, reads the check's newest 100 statuses, evaluates them and
   upserts a state row.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
from sqlalchemy import func, select

from health_plugin import HealthPlugin, HealthState, health_service
from health_plugin.evaluator import MAX_RUNS, aggregate_checks, evaluate_status
from health_plugin.flaky import FlakyTarget
from health_plugin.schema import health_check_runs
from reactive_core import Host

SYSTEMS = 1000
CHECKS = 10
RUNS = 100
BASE = datetime(2025, 1, 1, tzinfo=UTC)

HAND_SQL = """
SELECT r.system_id, r.configuration_id, r.status
FROM health_system_associations AS a
JOIN health_check_runs AS r
  ON r.system_id = a.system_id AND r.configuration_id = a.configuration_id
 AND r.timestamp >= COALESCE((
       SELECT n.timestamp FROM health_check_runs AS n
       WHERE n.system_id = a.system_id AND n.configuration_id = a.configuration_id
       ORDER BY n.timestamp DESC, n.id DESC LIMIT 1 OFFSET 99), '1970-01-01 00:00:00.000000')
WHERE a.system_id IN ({ids}) AND a.enabled AND NOT a.check_paused
ORDER BY r.system_id, r.configuration_id, r.timestamp DESC, r.id DESC
"""
HAND_COUNTED = """
SELECT system_id, configuration_id, thresholds, check_paused
FROM health_system_associations WHERE system_id IN ({ids}) AND enabled
ORDER BY system_id, configuration_id
"""


def stamp(value: datetime) -> str:
    """SQLAlchemy's SQLite DateTime text form (UTC, naive)."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


# -- 1. reads -----------------------------------------------------------------------------

def bulk_load(path: str, seed: int = 7) -> None:
    """Associations and runs for SYSTEMS × CHECKS × RUNS, straight into the tables."""
    rng = random.Random(seed)
    conn = connect(path)
    now = stamp(BASE)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO health_system_associations (system_id, configuration_id, enabled, "
        "thresholds, check_paused, created_at) VALUES (?, ?, 1, NULL, 0, ?)",
        ((f"sys-{s:04d}", f"check-{c}", now) for s in range(SYSTEMS) for c in range(CHECKS)))

    def runs() -> Any:
        for s in range(SYSTEMS):
            flaky = rng.random() < 0.2  # a fifth of the systems have a failing streak
            for c in range(CHECKS):
                streak = rng.randint(1, 7) if flaky and c == 0 else 0
                for i in range(RUNS):
                    failing = i >= RUNS - streak or rng.random() < 0.03
                    yield (f"sys-{s:04d}", f"check-{c}",
                           "unhealthy" if failing else "healthy", 12.5, "{}",
                           stamp(BASE + timedelta(seconds=i)))

    conn.executemany(
        "INSERT INTO health_check_runs (system_id, configuration_id, status, latency_ms, "
        "result, timestamp) VALUES (?, ?, ?, ?, ?, ?)", runs())
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def hand_read(conn: sqlite3.Connection, ids: list[str]) -> dict[str, HealthState]:
    """The hand-written read: same query, same evaluation, raw driver."""
    states: dict[str, HealthState] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start: start + 500]
        marks = ",".join("?" * len(chunk))
        counted = conn.execute(HAND_COUNTED.format(ids=marks), chunk).fetchall()
        newest: dict[tuple[str, str], list[str]] = {}
        for system_id, check_id, status in conn.execute(HAND_SQL.format(ids=marks), chunk):
            runs = newest.setdefault((system_id, check_id), [])
            if len(runs) < MAX_RUNS:
                runs.append(status)
        checks: dict[str, list[Any]] = {}
        for system_id, check_id, thresholds, paused in counted:
            per_system = checks.setdefault(system_id, [])
            if not paused:
                assert thresholds is None  # the bench declares none
                per_system.append(evaluate_status(newest.get((system_id, check_id), ())))
        for system_id, statuses in checks.items():
            status, healthy, total = aggregate_checks(statuses)
            states[system_id] = HealthState(status=status, healthy_checks=healthy,
                                            total_checks=total)
    return states


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


async def bench_reads(folder: Path, quick: bool) -> list[tuple[str, float, float | None]]:
    path = str(folder / "reads.db")
    n_one = 300 if quick else 2000
    n_all = 2 if quick else 5
    rows: list[tuple[str, float, float | None]] = []

    def make_host() -> Host:
        return Host(database_url=f"sqlite:///{path}", plugins=[HealthPlugin()],
                    entry_points=False,
                    config={"run_jobs": False, "plugins": {"health": {"scheduler": False}}})

    async with make_host() as host:  # creates the tables and the checks
        service = health_service(host)
        for c in range(CHECKS):
            await service.upsert_check(f"check-{c}", strategy="tcp",
                                       config={"host": "127.0.0.1", "port": 9})
    print(f"  loading {SYSTEMS * CHECKS * RUNS:,} runs ...", end="", flush=True)
    started = time.perf_counter()
    await anyio.to_thread.run_sync(bulk_load, path)
    print(f" {time.perf_counter() - started:.1f} s", flush=True)
    async with make_host() as host:
        service = health_service(host)
        ids = [f"sys-{s:04d}" for s in range(SYSTEMS)]
        handle = host.entity("health")
        hand = connect(path)

        ours_all = await handle.get_many(ids)
        hand_all = hand_read(hand, ids)
        assert ours_all == hand_all, "ours and the hand-written read disagree"
        mix = {s.value: sum(1 for v in ours_all.values() if v.status is s)
               for s in (v.status for v in ours_all.values())}
        print(f"  states agree for all {len(ours_all)} systems: {mix}")

        rng = random.Random(3)
        picks = [rng.choice(ids) for _ in range(n_one)]
        it = iter(picks * 3)

        hand_one = timed(lambda: hand_read(hand, [next(it)]), n_one)
        it_sql = iter(picks)

        def sql_only() -> None:
            system_id = next(it_sql)
            hand.execute(HAND_COUNTED.format(ids="?"), [system_id]).fetchall()
            hand.execute(HAND_SQL.format(ids="?"), [system_id]).fetchall()

        sql_one = timed(sql_only, n_one)
        it = iter(picks * 3)
        ours_get = await atimed(lambda: handle.get(next(it)), n_one)

        def in_unit(tx: Any) -> float:
            it_tx = iter(picks)
            return timed(lambda: handle.get_many_in(tx, [next(it_tx)]), n_one)

        ours_in = await host.read(in_unit)
        await service.status(picks[0])
        ours_cached = await atimed(lambda: service.status(picks[0]), n_one)

        rows.append(("one system: hand-written sqlite3 query + evaluation", hand_one, None))
        rows.append(("one system: hand-written sqlite3 query only (no evaluation)", sql_one,
                     sql_one / hand_one))
        rows.append(("one system: ours handle.get (thread hop)", ours_get, ours_get / hand_one))
        rows.append(("one system: ours handle.get_many_in (inside a unit of work)", ours_in,
                     ours_in / hand_one))
        rows.append(("one system: ours HealthService.status (warm cache)", ours_cached,
                     ours_cached / hand_one))

        hand_many = timed(lambda: hand_read(hand, ids), n_all)
        ours_many = await atimed(lambda: handle.get_many(ids), n_all)
        rows.append((f"{SYSTEMS:,} systems: hand-written sqlite3 query + evaluation",
                     hand_many, None))
        rows.append((f"{SYSTEMS:,} systems: ours handle.get_many", ours_many,
                     ours_many / hand_many))
        hand.close()
    return rows


# -- 2. check runs per second --------------------------------------------------------------

RUN_CHECKS = 100
INTERVAL = 0.1
CONCURRENCY = 16


async def bench_scheduler(folder: Path, url: str, warmup: float,
                          seconds: float) -> dict[str, float]:
    path = str(folder / "runs.db")
    settings = {"scheduler": True, "max_concurrency": CONCURRENCY,
                "jitter_ratio": 0.05}
    async with Host(database_url=f"sqlite:///{path}", plugins=[HealthPlugin()],
                    entry_points=False,
                    config={"run_jobs": False, "plugins": {"health": settings}}) as host:
        service = health_service(host)

        def setup(tx: Any) -> None:
            for n in range(RUN_CHECKS):
                service.upsert_check_in(tx, f"web-{n}", strategy="http", config={"url": url},
                                        interval_seconds=INTERVAL)
                service.associate_in(tx, f"sys-{n}", f"web-{n}")

        await host.run(setup)

        async def count() -> int:
            return int(await host.read(lambda tx: tx.execute(
                select(func.count()).select_from(health_check_runs)).scalar_one()))

        await anyio.sleep(warmup)
        before, started = await count(), time.perf_counter()
        await anyio.sleep(seconds)
        after, spent = await count(), time.perf_counter() - started
        changes = len(await host.changes(kind="health"))
    return {"runs": after - before, "seconds": spent, "rate": (after - before) / spent,
            "changes": changes}


_B_INSERT = ("INSERT INTO runs (system_id, configuration_id, status, latency_ms, result, "
             "timestamp) VALUES (?, ?, ?, ?, ?, ?)")
_B_NEWEST = ("SELECT status FROM runs WHERE system_id = ? AND configuration_id = ? "
             "ORDER BY timestamp DESC, id DESC LIMIT 100")
_B_UPSERT = ("INSERT INTO state (system_id, status) VALUES (?, ?) ON CONFLICT (system_id) "
             "DO UPDATE SET status = excluded.status")


async def bench_hand_loop(folder: Path, url: str, warmup: float,
                          seconds: float) -> dict[str, float]:
    """The hand-written checker: CONCURRENCY workers, GET then one sqlite3 transaction."""
    conn = connect(str(folder / "hand.db"))
    conn.executescript("""
        CREATE TABLE runs (id INTEGER PRIMARY KEY, system_id TEXT, configuration_id TEXT,
                           status TEXT, latency_ms REAL, result TEXT, timestamp TEXT);
        CREATE INDEX ix_runs ON runs (system_id, configuration_id, timestamp, id, status);
        CREATE TABLE state (system_id TEXT PRIMARY KEY, status TEXT);
    """)
    lock = threading.Lock()
    recorded = 0

    def record(system_id: str, check_id: str, status: str, latency: float) -> None:
        nonlocal recorded
        with lock:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(_B_INSERT, (system_id, check_id, status, latency,
                                     json.dumps({"status_code": 200}),
                                     stamp(datetime.now(UTC))))
            statuses = [r[0] for r in conn.execute(_B_NEWEST, (system_id, check_id))]
            conn.execute(_B_UPSERT, (system_id, evaluate_status(statuses).value))
            conn.execute("COMMIT")
            recorded += 1

    stop = time.perf_counter() + warmup + seconds

    async def worker(client: httpx.AsyncClient, n: int) -> None:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            response = await client.get(url)
            status = "healthy" if response.status_code == 200 else "unhealthy"
            await anyio.to_thread.run_sync(record, f"sys-{n}", f"web-{n}", status,
                                           (time.perf_counter() - started) * 1000)

    result: dict[str, float] = {}

    async def measure() -> None:
        await anyio.sleep(warmup)
        before, started = recorded, time.perf_counter()
        await anyio.sleep(seconds)
        result.update(runs=recorded - before, seconds=time.perf_counter() - started)

    async with httpx.AsyncClient() as client, anyio.create_task_group() as tg:
        for n in range(CONCURRENCY):
            tg.start_soon(worker, client, n)
        tg.start_soon(measure)
    conn.close()
    result["rate"] = result["runs"] / result["seconds"]
    return result


# -- report -----------------------------------------------------------------------------

async def run(quick: bool) -> int:
    total = time.perf_counter()
    print("health plugin benchmark" + (" (quick)" if quick else ""))
    print(f"  python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
          f"{platform.machine()}, {platform.system()}")
    with tempfile.TemporaryDirectory(prefix="health-bench-") as tmp:
        folder = Path(tmp)
        print(f"\n1. reads: {SYSTEMS:,} systems x {CHECKS} checks x {RUNS} runs (SQLite)")
        rows = await bench_reads(folder, quick)
        width = max(len(r[0]) for r in rows)
        print(f"\n  {'':<{width}}  {'per read':>12}  {'vs hand':>8}")
        for label, seconds, ratio in rows:
            value = f"{seconds * 1e6:,.0f} µs" if seconds < 0.1 else f"{seconds * 1e3:,.0f} ms"
            print(f"  {label:<{width}}  {value:>12}  {f'{ratio:.3g}x' if ratio else '':>8}")

        warmup, seconds = (1.0, 3.0) if quick else (2.0, 8.0)
        print(f"\n2. check runs/s: {RUN_CHECKS} http checks every {INTERVAL:g}s "
              f"(demand {RUN_CHECKS / INTERVAL:,.0f}/s), {CONCURRENCY} in flight, "
              f"{seconds:g}s measured after {warmup:g}s")
        async with FlakyTarget([("ok", 1)]) as target:
            ours = await bench_scheduler(folder, target.url, warmup, seconds)
            hand = await bench_hand_loop(folder, target.url, warmup, seconds)
        print(f"  ours (scheduler, runs recorded with their health mutation): "
              f"{ours['rate']:,.0f} runs/s ({ours['runs']:,.0f} in {ours['seconds']:.1f}s)")
        print(f"  hand-written loop (httpx + one sqlite3 transaction per run): "
              f"{hand['rate']:,.0f} runs/s ({hand['runs']:,.0f} in {hand['seconds']:.1f}s)")
        print(f"  ratio ours / hand-written: {ours['rate'] / hand['rate']:.2f}")
    print(f"\ntotal time {time.perf_counter() - total:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    # The bench hosts run the health plugin without the catalog: its catalog-system
    # subscription "will never run", which the registry rightly warns about.
    logging.getLogger("reactive_core.registry").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (~20 s)")
    args = parser.parse_args(argv)
    return anyio.run(run, args.quick)


if __name__ == "__main__":
    sys.exit(main())
