"""Work-queue drain rate on PostgreSQL, next to pgqueuer on the same server in the same run.

Run from the repository root (pgqueuer and asyncpg come with the `bench` extra):

    .venv/bin/pip install -e '.[test,bench]'
    .venv/bin/python benchmarks/work_queue.py            # N = 10,000, plus the backlog rows
    .venv/bin/python benchmarks/work_queue.py --quick    # N = 2,000, no 100,000 backlog

(Not `queue.py`: a script's folder comes first on sys.path, so that name would shadow
the standard library's `queue` for every script in benchmarks/.)

What is measured (one process, one worker each, same PostgreSQL server):

* reactive-core: N work-queue deliveries drained by a no-op handler, public API only:
  a plugin defines a store-backed kind `{n: int, label: str}` and subscribes
  `on_entity_changed(kind, handler, delivery=WorkQueue("bench"))`. Enqueue (not timed):
  a `Host` with `config={"workers": False}` makes N mutations (N/10 entities x 10
  changes, 32 concurrent tasks); it enqueues its own groups' deliveries but handles
  none. Drain (timed): a second `Host` (default config, same plugin), from entering it
  until the handler has seen N distinct change ids and `host.drain()` has returned
  (so the last deliveries are recorded as done). `startup s`: entering the `Host`.
* pgqueuer: `Queries.install()` in its own scratch database, N jobs enqueued in
  batches of 1,000 (not timed), then timed from connecting until
  `QueueManager.run(mode=QueueExecutionMode.drain)` returns, one no-op entrypoint.
  All of pgqueuer's defaults (batch_size=10, unlimited concurrency, durable tables,
  dequeue_timeout=30 s): drain mode needs no other setting. Over `AsyncpgDriver` (as
  in pgqueuer's README; the figure compared with) and, for reference, `PsycopgDriver`
  (an autocommit `AsyncConnection`; the driver reactive-core uses).
* backlog: the reactive-core drain with 1,000 and with 100,000 deliveries (100,000
  skipped with --quick). Target: the 100,000 rate within 20 % of the 1,000 rate. A
  drain gives up after --timeout seconds and reports the rate it reached.

Each run gets a fresh scratch database (`rc_bench_<random>_<run>`, dropped after it).
Nothing happens between enqueueing and draining, so with autovacuum off or behind, the
tables have no planner statistics; `--analyze` runs `VACUUM ANALYZE` there (both peers).
Runs alternate (pgqueuer, reactive-core, ...) to even out drift in machine load; the
best rate of each is reported, all are printed. The exit status is non-zero only when
a sanity check fails (an item handled twice or never, a job or delivery left over),
never because a target is missed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import version
from importlib.util import find_spec
from typing import Any

import anyio
import psycopg
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import URL, make_url

from reactive_core import EntityChange, Host, WorkQueue, hookimpl

KIND = GROUP = "bench"
CHANGES_PER_ENTITY = 10
ENQUEUE_TASKS = 32
PGQ_BATCH = 1_000
PGQ_ENTRYPOINT = "noop"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_RATIO = 1.0            # reactive-core / pgqueuer
TARGET_BACKLOG = 0.8          # 100,000-backlog rate / 1,000-backlog rate
SMALL, LARGE = 1_000, 100_000


# -- the reactive-core plugin -----------------------------------------------------------

class BenchState(BaseModel):
    model_config = ConfigDict(frozen=True)

    n: int
    label: str


def bump(tx: Any, prev: BenchState | None) -> BenchState:
    """Create at n=0, else n+1: every mutation is one change, hence one delivery."""
    return BenchState(n=0, label="bench") if prev is None else BenchState(n=prev.n + 1,
                                                                         label=prev.label)


class QueuePlugin:
    """A store-backed kind with one no-op work-queue subscriber that counts what it sees."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.calls = 0
        self.seen: set[str] = set()
        self.all_seen: anyio.Event | None = None

    @hookimpl
    def reactive_register(self, registry: Any) -> None:
        registry.define_entity(KIND, state=BenchState)
        registry.on_entity_changed(KIND, self.handle, delivery=WorkQueue(GROUP))

    async def handle(self, change: EntityChange) -> None:
        self.calls += 1
        self.seen.add(change.change_id)
        if len(self.seen) >= self.expected and self.all_seen is not None:
            self.all_seen.set()


# -- results ----------------------------------------------------------------------------

@dataclass
class Run:
    n: int
    seconds: float = 0.0
    handled: int = 0
    startup: float | None = None
    gave_up: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.handled / self.seconds if self.seconds else 0.0


def best(runs: list[Run]) -> Run:
    return max(runs, key=lambda r: r.rate)


# -- scratch databases ------------------------------------------------------------------

@dataclass(frozen=True)
class Server:
    admin: URL       # psycopg-style URL of the maintenance database
    prefix: str      # rc_bench_<random>
    timeout: float   # seconds a drain may take before it gives up
    analyze: bool    # VACUUM ANALYZE between enqueueing and draining

    def url(self, database: str, driver: str = "postgresql") -> str:
        return self.admin.set(drivername=driver, database=database).render_as_string(
            hide_password=False)

    def admin_url(self) -> str:
        return self.admin.render_as_string(hide_password=False)


@contextmanager
def scratch(server: Server, suffix: str) -> Iterator[str]:
    """A fresh database `<prefix>_<suffix>`, dropped on the way out; yields its name."""
    name = f"{server.prefix}_{suffix}"
    with psycopg.connect(server.admin_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(server.admin_url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def maybe_analyze(server: Server, database: str) -> None:
    if server.analyze:
        with psycopg.connect(server.url(database), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")


# -- reactive-core ----------------------------------------------------------------------

async def rc_enqueue(url: str, n: int) -> None:
    """N mutations through a workers=False host: N pending deliveries, nobody handling."""
    plugin = QueuePlugin(n)
    entities = max(1, n // CHANGES_PER_ENTITY)
    async with Host(database_url=url, plugins=[plugin], entry_points=False,
                    config={"workers": False}) as host:
        handle = host.entity(KIND)

        async def task(k: int) -> None:
            mine = [f"e{j}" for j in range(k, entities, ENQUEUE_TASKS)]
            for i in range(k, n, ENQUEUE_TASKS):   # task k makes mutations k, k+32, ...
                await handle.mutate(mine[(i // ENQUEUE_TASKS) % len(mine)], bump)

        async with anyio.create_task_group() as tg:
            for k in range(min(ENQUEUE_TASKS, entities)):
                tg.start_soon(task, k)
    if plugin.calls:
        raise RuntimeError(f"the workers=False host handled {plugin.calls} deliveries")


async def rc_drain(url: str, n: int, timeout: float, run: Run) -> None:
    plugin = QueuePlugin(n)
    plugin.all_seen = anyio.Event()
    start = time.perf_counter()
    async with Host(database_url=url, plugins=[plugin], entry_points=False) as host:
        run.startup = time.perf_counter() - start
        with anyio.move_on_after(timeout):
            await plugin.all_seen.wait()
        run.gave_up = not plugin.all_seen.is_set()
        if not run.gave_up:
            try:
                await host.drain(timeout=timeout)
            except TimeoutError:
                run.problems.append("every change was handled, but host.drain() timed out")
        run.seconds = time.perf_counter() - start
        run.handled = len(plugin.seen)
        if run.gave_up:
            return
        for label, rows in (("pending", await host.deliveries(status="pending", limit=10)),
                            ("dead-lettered", await host.deliveries(dead=True, limit=10))):
            if rows:
                run.problems.append(f"{len(rows)}+ deliveries {label} after the drain")
    if run.handled != n:
        run.problems.append(f"{run.handled:,} distinct changes handled, expected {n:,}")
    if plugin.calls != run.handled:
        run.problems.append(f"handler ran {plugin.calls - run.handled} extra time(s)")


def run_reactive_core(server: Server, suffix: str, n: int) -> Run:
    run = Run(n)
    with scratch(server, suffix) as name:
        url = server.url(name, "postgresql+psycopg")
        anyio.run(rc_enqueue, url, n)
        maybe_analyze(server, name)
        anyio.run(rc_drain, url, n, server.timeout, run)
    return run


# -- pgqueuer ---------------------------------------------------------------------------

@asynccontextmanager
async def pgq_queries(url: str, driver: str) -> AsyncIterator[Any]:
    """pgqueuer's `Queries` over one connection of `driver` ("asyncpg" or "psycopg")."""
    from pgqueuer import AsyncpgDriver, PsycopgDriver, Queries

    if driver == "asyncpg":
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            yield Queries(AsyncpgDriver(conn))
        finally:
            await conn.close()
    else:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as aconn:
            yield Queries(PsycopgDriver(aconn))


async def pgq_enqueue(url: str, driver: str, n: int) -> None:
    async with pgq_queries(url, driver) as queries:
        await queries.install()
        for first in range(0, n, PGQ_BATCH):
            size = min(PGQ_BATCH, n - first)
            await queries.enqueue(
                [PGQ_ENTRYPOINT] * size,
                [f'{{"i": {first + i}}}'.encode() for i in range(size)],
                [0] * size,
            )


async def pgq_drain(url: str, driver: str, n: int, timeout: float, run: Run) -> None:
    from pgqueuer import Job, QueueManager
    from pgqueuer.types import QueueExecutionMode

    seen: set[int] = set()
    calls = 0
    start = time.perf_counter()
    async with pgq_queries(url, driver) as queries:
        qm = QueueManager(queries)

        @qm.entrypoint(PGQ_ENTRYPOINT)
        async def noop(job: Job) -> None:
            nonlocal calls
            calls += 1
            seen.add(int(job.id))

        with anyio.move_on_after(timeout) as scope:
            await qm.run(mode=QueueExecutionMode.drain)
        run.seconds = time.perf_counter() - start
        run.handled = len(seen)
        run.gave_up = scope.cancelled_caught
    if run.gave_up:
        return
    with psycopg.connect(url) as conn:
        left = conn.execute("SELECT count(*) FROM pgqueuer").fetchone()
    if left and left[0]:
        run.problems.append(f"{left[0]:,} jobs left in the queue table after drain")
    if run.handled != n:
        run.problems.append(f"{run.handled:,} distinct jobs handled, expected {n:,}")
    if calls != run.handled:
        run.problems.append(f"entrypoint ran {calls - run.handled} extra time(s)")


def run_pgqueuer(server: Server, driver: str, suffix: str, n: int) -> Run:
    run = Run(n)
    with scratch(server, suffix) as name:
        url = server.url(name)
        anyio.run(pgq_enqueue, url, driver, n)
        maybe_analyze(server, name)
        anyio.run(pgq_drain, url, driver, n, server.timeout, run)
    return run


# -- orchestration ----------------------------------------------------------------------

def measure(label: str, bench: Callable[[], Run]) -> Run:
    print(f"  {label} ...", end="", flush=True)
    started = time.perf_counter()
    run = bench()
    extra = " (gave up)" if run.gave_up else ""
    print(f" {run.rate:,.0f} items/s{extra}  [{run.handled:,} in {run.seconds:.2f} s; "
          f"{time.perf_counter() - started:.0f} s with enqueueing]", flush=True)
    for problem in run.problems:
        print(f"    !! {problem}")
    return run


def pg_version(server: Server) -> str:
    with psycopg.connect(server.admin_url(), connect_timeout=5) as conn:
        return str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]


def print_results(runs: dict[str, list[Run]], backlog: list[Run]) -> None:
    ours, peer = best(runs["reactive-core"]), best(runs["pgqueuer/asyncpg"])
    ratio = ours.rate / peer.rate if peer.rate else 0.0
    met = "MET" if ratio >= TARGET_RATIO else "MISSED"
    print(f"N = {ours.n:,}; best of {len(runs['reactive-core'])} alternating runs each:")
    for peer_name, peer_runs in runs.items():
        listed = ", ".join(f"{r.rate:,.0f}" for r in peer_runs)
        print(f"  {peer_name:<17} {best(peer_runs).rate:>7,.0f} items/s  (runs: {listed})")
    print()
    print(f"reactive-core {ours.rate:,.0f} items/s  |  pgqueuer {peer.rate:,.0f} items/s  |  "
          f"ratio {ratio:.2f}  (target >= {TARGET_RATIO:.1f}: {met})")
    psy = best(runs["pgqueuer/psycopg"])
    if psy.rate:
        print(f"  (pgqueuer over its psycopg driver: {psy.rate:,.0f} items/s, "
              f"ratio {ours.rate / psy.rate:.2f})")
    if not backlog:
        return
    print()
    print(f"{'backlog':>9} {'items/s':>9} {'handled':>9} {'seconds':>9} {'startup s':>10}")
    for run in backlog:
        note = "  gave up: partial rate" if run.gave_up else ""
        print(f"{run.n:>9,} {run.rate:>9,.0f} {run.handled:>9,} {run.seconds:>9.1f} "
              f"{run.startup or 0.0:>10.2f}{note}")
    rates = {run.n: run.rate for run in backlog}
    if SMALL in rates and LARGE in rates and rates[SMALL]:
        ratio = rates[LARGE] / rates[SMALL]
        met = "MET" if ratio >= TARGET_BACKLOG else "MISSED"
        print(f"{LARGE:,} / {SMALL:,} backlog rate: {ratio:.2f}  "
              f"(target >= {TARGET_BACKLOG:.1f}, i.e. within 20 %: {met})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="N = 2,000 and no 100,000 backlog (about 30 s)")
    parser.add_argument(
        "--pg-url", default=os.environ.get("REACTIVE_TEST_PG_URL") or DEFAULT_PG,
        help="maintenance URL of a PostgreSQL server; scratch databases are created and "
             "dropped there (default: $REACTIVE_TEST_PG_URL or %(default)s)",
    )
    parser.add_argument("-n", type=int, default=None,
                        help="items in the main comparison (default 10,000; 2,000 with --quick)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating runs of each peer, best reported (default: %(default)s)")
    parser.add_argument("--analyze", action="store_true",
                        help="VACUUM ANALYZE each scratch database after enqueueing")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds a drain may take before it gives up (default: %(default)s)")
    args = parser.parse_args(argv)
    n = args.n or (2_000 if args.quick else 10_000)
    started = time.perf_counter()

    url = make_url(args.pg_url)
    server = Server(admin=url.set(drivername="postgresql"),
                    prefix=f"rc_bench_{uuid.uuid4().hex[:10]}", timeout=args.timeout,
                    analyze=args.analyze)
    try:
        server_version = pg_version(server)
    except Exception as exc:  # noqa: BLE001 - say why and stop
        print(f"PostgreSQL not reachable at {args.pg_url}: {exc}", file=sys.stderr)
        return 2
    missing = [name for name in ("pgqueuer", "asyncpg") if find_spec(name) is None]
    if missing:
        print(f"{' and '.join(missing)} not installed: .venv/bin/pip install -e '.[test,bench]'",
              file=sys.stderr)
        return 2
    print("reactive-core work-queue drain benchmark" + (" (quick)" if args.quick else ""))
    print(f"  python {sys.version.split()[0]} on {platform.platform()}, "
          f"{os.cpu_count()} CPUs; PostgreSQL {server_version}")
    print(f"  reactive-core {version('reactive-core')}, pgqueuer {version('pgqueuer')}, "
          f"asyncpg {version('asyncpg')}, psycopg {psycopg.__version__}, "
          f"sqlalchemy {version('sqlalchemy')}")
    print("  between enqueueing and draining: " + ("VACUUM ANALYZE" if args.analyze else
          "nothing (no planner statistics unless autovacuum got there; see --analyze)"))
    print()

    runs: dict[str, list[Run]] = {"pgqueuer/asyncpg": [], "pgqueuer/psycopg": [],
                                  "reactive-core": []}
    for i in range(1, args.rounds + 1):
        for driver in ("asyncpg", "psycopg"):
            runs[f"pgqueuer/{driver}"].append(measure(
                f"pgqueuer/{driver:<8} N={n:,} run {i}",
                partial(run_pgqueuer, server, driver, f"pgq_{driver}{i}", n)))
        runs["reactive-core"].append(measure(
            f"reactive-core    N={n:,} run {i}",
            partial(run_reactive_core, server, f"rc{i}", n)))
    backlog: list[Run] = []
    for size in (SMALL,) if args.quick else (SMALL, LARGE):
        backlog.append(measure(f"reactive-core backlog {size:,}",
                               partial(run_reactive_core, server, f"b{size}", size)))

    print()
    print_results(runs, backlog)
    print(f"\ntotal time {time.perf_counter() - started:.0f} s")
    # A drain that gave up is reported, not a failure, for the backlog rows only.
    compared = [run for peer_runs in runs.values() for run in peer_runs]
    failed = any(r.problems for r in compared + backlog) or any(r.gave_up for r in compared)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
