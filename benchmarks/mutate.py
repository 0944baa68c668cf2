"""Store-backed `mutate` throughput through the real `Host`, next to a bare-driver loop.

Run from the repository root:

    .venv/bin/python benchmarks/mutate.py            # full run (about a minute)
    .venv/bin/python benchmarks/mutate.py --quick    # a few seconds per backend

What is measured, per backend (SQLite in a temp dir; PostgreSQL in a scratch database
that is created here and dropped afterwards):

* ours: mutations committed per second through `Host.entity("bench").mutate(...)`,
  for a store-backed kind `{n: int, label: str}` with ONE work-queue subscriber
  (`WorkQueue("bench")`, handler does nothing). The dispatcher runs while the
  mutations are measured (it claims and finishes deliveries on the same database),
  exactly as in production. Afterwards `host.drain()` is timed: how long the
  deliveries still pending take to be handled.
  (a) one caller doing sequential mutations; (b) 32 anyio tasks, each mutating its
  own entities; (c) the same 32 tasks with the group's consumer on another instance
  (its route recorded, no handler here): each write queues its delivery and this
  process does nothing else, which is the work the bare loop does.
* bare: the statements the write path does per mutation, with the raw driver
  (`sqlite3` with WAL, synchronous=NORMAL and the writer's WAL checkpoints: on a
  thread of their own, the loop's own at the writer's interval as the backstop;
  `psycopg` on PostgreSQL), one transaction per mutation: select the previous state;
  insert or update the state row; insert the change row (JSON prev/next/delta/
  changed_fields, a uuid, timestamps); one transition row per changed field; one
  delivery row; commit. On PostgreSQL the loop also does what the write path does
  there: the per-entity `pg_advisory_xact_lock`, `txid = pg_current_xact_id()` on the
  change row and `pg_notify`. The bare loop is inherently sequential (1 tx per
  mutation); it is the baseline of both the 1-caller and the 32-caller rows.

Both run on the same database (tables emptied between phases), so they see the same
schema, indexes and table sizes. Each measured phase is preceded by a warm-up that
also creates the entities, so measured mutations are updates changing one field.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import uuid_utils
from pydantic import BaseModel, ConfigDict
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from reactive_core import EntityChange, Host, WorkQueue, hookimpl
from reactive_core._store.checkpoint import WalCheckpointer
from reactive_core._store.database import _WAL_CHECKPOINT_PAGES as WAL_CHECKPOINT_PAGES
from reactive_core._store.schema import entity_changes, work_queue_routes

KIND = "bench"
GROUP = "bench"
CALLERS = 32
SEQ_ENTITIES = 64          # the single caller cycles over these
ENTITIES_PER_CALLER = 4    # each of the 32 callers cycles over its own
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"

TARGET_SQLITE_SEQ = 2000.0     # mutations/s, one caller
TARGET_CONC = {"sqlite": 1.0, "postgresql": 1.5}  # ours / bare loop, 32 callers


# -- the plugin under test ---------------------------------------------------------------

class BenchState(BaseModel):
    model_config = ConfigDict(frozen=True)

    n: int
    label: str


def bump(tx: Any, prev: BenchState | None) -> BenchState:
    """The apply: create at n=0, else n+1 (one changed field per update)."""
    if prev is None:
        return BenchState(n=0, label="bench")
    return BenchState(n=prev.n + 1, label=prev.label)


class BenchPlugin:
    """A store-backed kind and one do-nothing work-queue subscriber (unless `consume` is
    False: then the group's consumer is another instance, and deliveries only queue)."""

    def __init__(self, *, consume: bool = True) -> None:
        self.handled = 0
        self.consume = consume

    @hookimpl
    def reactive_register(self, registry: Any) -> None:
        registry.define_entity(KIND, state=BenchState)
        if self.consume:
            registry.on_entity_changed(KIND, self.handle, delivery=WorkQueue(GROUP))

    async def handle(self, change: EntityChange) -> None:
        self.handled += 1


# -- settings and results ---------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    ours_seconds: float
    bare_seconds: float
    warmup_per_entity: int
    bare_warmup: int
    drain_timeout: float


FULL = Settings(ours_seconds=3.0, bare_seconds=2.0, warmup_per_entity=3, bare_warmup=300,
                drain_timeout=20.0)
QUICK = Settings(ours_seconds=1.0, bare_seconds=0.6, warmup_per_entity=2, bare_warmup=100,
                 drain_timeout=10.0)


@dataclass
class Row:
    backend: str
    scenario: str
    ours_n: int = 0
    ours_rate: float = 0.0
    bare_n: int = 0
    bare_rate: float = 0.0
    handled_during: int = 0
    pending_at_drain: int = 0
    drain_s: float | None = None
    drain_gave_up_after: float | None = None
    ok: bool = True
    notes: list[str] = field(default_factory=list)
    latency: tuple[float, float, float] | None = None
    """One `mutate` call through the Host, seconds: median, 99th percentile, longest."""
    bare_longest: float = 0.0
    """The longest mutation of the bare loop, seconds."""

    @property
    def ratio(self) -> float:
        return self.ours_rate / self.bare_rate if self.bare_rate else 0.0


# -- bare-driver loops ------------------------------------------------------------------

def _lock_key(kind: str, entity_id: str) -> int:
    digest = hashlib.blake2b(f"{kind}\x00{entity_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _diff(prev: dict[str, Any] | None, nxt: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    before = prev or {}
    changed = sorted(k for k in before.keys() | nxt.keys() if before.get(k) != nxt.get(k))
    return {k: nxt.get(k) for k in changed}, changed


def _next_state(prev: dict[str, Any] | None) -> dict[str, Any]:
    if prev is None:
        return {"n": 0, "label": "bench"}
    return {"n": prev["n"] + 1, "label": prev["label"]}


def _value_text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else _dumps(value)


_SQ_SELECT = "SELECT state FROM entity_state WHERE kind = ? AND entity_id = ?"
_SQ_INSERT_STATE = ("INSERT INTO entity_state (kind, entity_id, state, updated_at) "
                    "VALUES (?, ?, ?, ?)")
_SQ_UPDATE_STATE = ("UPDATE entity_state SET state = ?, updated_at = ? "
                    "WHERE kind = ? AND entity_id = ?")
_SQ_INSERT_CHANGE = (
    "INSERT INTO entity_changes (change_id, kind, entity_id, prev, next, delta, "
    "changed_fields, actor_type, actor_id, reason, occurred_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQ_INSERT_TRANSITION = (
    "INSERT INTO entity_transitions (change_seq, kind, entity_id, field, from_value, "
    "to_value, transitioned_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_SQ_INSERT_DELIVERY = (
    "INSERT INTO entity_deliveries (change_seq, group_name, kind, entity_id, status, ready, "
    "attempts, available_at, created_at) VALUES (?, ?, ?, ?, 'pending', 1, 0, ?, ?)"
)


def bare_sqlite(path: str, ids: list[str], warmup: int, seconds: float) -> Timed:
    """The write path's statements with raw sqlite3, timed (see `_time_loop`)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    cur = conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    # The product's writer checkpoints the WAL less often than SQLite's default, and
    # leaves the checkpoints to a thread of its own: so does this loop, or it would pay
    # for checkpoints the product does not.
    cur.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
    checkpointer = WalCheckpointer(
        lambda: sqlite3.connect(path, isolation_level=None, check_same_thread=False))

    def one(entity_id: str) -> None:
        cur.execute("BEGIN IMMEDIATE")
        row = cur.execute(_SQ_SELECT, (KIND, entity_id)).fetchone()
        prev = json.loads(row[0]) if row else None
        nxt = _next_state(prev)
        delta, changed = _diff(prev, nxt)
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        next_text = _dumps(nxt)
        if prev is None:
            cur.execute(_SQ_INSERT_STATE, (KIND, entity_id, next_text, now))
        else:
            cur.execute(_SQ_UPDATE_STATE, (next_text, now, KIND, entity_id))
        cur.execute(_SQ_INSERT_CHANGE, (
            str(uuid_utils.uuid7()), KIND, entity_id, _dumps(prev) if prev is not None else None,
            next_text, _dumps(delta), _dumps(changed), "system", "reactive-core", None, now,
        ))
        seq = cur.lastrowid
        before = prev or {}
        cur.executemany(_SQ_INSERT_TRANSITION, [
            (seq, KIND, entity_id, name, _value_text(before.get(name)),
             _value_text(nxt.get(name)), now)
            for name in changed
        ])
        cur.execute(_SQ_INSERT_DELIVERY, (seq, GROUP, KIND, entity_id, now, now))
        cur.execute("COMMIT")
        checkpointer.poke()

    try:
        return _time_loop(one, ids, warmup, seconds)
    finally:
        checkpointer.close()
        conn.close()


_PG_LOCK = "SELECT pg_advisory_xact_lock(%s)"
_PG_SELECT = "SELECT state FROM entity_state WHERE kind = %s AND entity_id = %s"
_PG_INSERT_STATE = ("INSERT INTO entity_state (kind, entity_id, state, updated_at) "
                    "VALUES (%s, %s, %s::json, %s)")
_PG_UPDATE_STATE = ("UPDATE entity_state SET state = %s::json, updated_at = %s "
                    "WHERE kind = %s AND entity_id = %s")
_PG_INSERT_CHANGE = (
    "INSERT INTO entity_changes (change_id, kind, entity_id, prev, next, delta, "
    "changed_fields, actor_type, actor_id, reason, occurred_at, txid) "
    "VALUES (%s, %s, %s, %s::json, %s::json, %s::json, %s::json, %s, %s, %s, %s, "
    "pg_current_xact_id()::text::bigint) RETURNING seq"
)
_PG_INSERT_TRANSITION = (
    "INSERT INTO entity_transitions (change_seq, kind, entity_id, field, from_value, "
    "to_value, transitioned_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
_PG_INSERT_DELIVERY = (
    "INSERT INTO entity_deliveries (change_seq, group_name, kind, entity_id, status, ready, "
    "attempts, available_at, created_at) VALUES (%s, %s, %s, %s, 'pending', TRUE, 0, %s, %s)"
)
_PG_NOTIFY = "SELECT pg_notify('reactive_changes', '')"


def bare_pg(url: str, ids: list[str], warmup: int, seconds: float) -> Timed:
    """The PostgreSQL write path's statements with raw psycopg, timed (see `_time_loop`)."""
    import psycopg

    conn = psycopg.connect(url)
    cur = conn.cursor()

    def one(entity_id: str) -> None:
        cur.execute(_PG_LOCK, (_lock_key(KIND, entity_id),))
        row = cur.execute(_PG_SELECT, (KIND, entity_id)).fetchone()
        prev = row[0] if row else None  # psycopg loads json columns
        nxt = _next_state(prev)
        delta, changed = _diff(prev, nxt)
        now = datetime.now(UTC)
        next_text = _dumps(nxt)
        if prev is None:
            cur.execute(_PG_INSERT_STATE, (KIND, entity_id, next_text, now))
        else:
            cur.execute(_PG_UPDATE_STATE, (next_text, now, KIND, entity_id))
        cur.execute(_PG_INSERT_CHANGE, (
            str(uuid_utils.uuid7()), KIND, entity_id, _dumps(prev) if prev is not None else None,
            next_text, _dumps(delta), _dumps(changed), "system", "reactive-core", None, now,
        ))
        seq = cur.fetchone()[0]  # type: ignore[index]
        before = prev or {}
        for name in changed:
            cur.execute(_PG_INSERT_TRANSITION, (
                seq, KIND, entity_id, name, _value_text(before.get(name)),
                _value_text(nxt.get(name)), now,
            ))
        cur.execute(_PG_INSERT_DELIVERY, (seq, GROUP, KIND, entity_id, now, now))
        cur.execute(_PG_NOTIFY)
        conn.commit()

    try:
        return _time_loop(one, ids, warmup, seconds)
    finally:
        conn.close()


Timed = tuple[int, float, float]
"""A bare run: mutations measured, seconds taken, the longest mutation in seconds."""


def _time_loop(
    one: Callable[[str], None], ids: list[str], warmup: int, seconds: float,
) -> Timed:
    for i in range(max(warmup, len(ids))):
        one(ids[i % len(ids)])
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    now = start
    longest = 0.0
    while now < deadline:
        for _ in range(50):
            one(ids[count % len(ids)])
            count += 1
            then, now = now, time.perf_counter()
            longest = max(longest, now - then)
    return count, now - start, longest


# -- through the Host -------------------------------------------------------------------

async def _count_pending(host: Host) -> int:
    return int(await host.read(lambda tx: tx.execute(
        text("SELECT count(*) FROM entity_deliveries WHERE status = 'pending'")).scalar_one()))


async def _count_changes(host: Host) -> int:
    return int(await host.read(
        lambda tx: tx.execute(select(func.count()).select_from(entity_changes)).scalar_one()
    ))


async def run_ours(
    url: str, scenario: str, settings: Settings, row: Row,
) -> None:
    plugin = BenchPlugin(consume=scenario != "queued")
    config = {"run_jobs": False}  # the hourly retention job is not what is measured
    async with Host(database_url=url, plugins=[plugin], entry_points=False,
                    config=config) as host:
        handle = host.entity(KIND)
        if not plugin.consume:
            # The group runs on another instance: its route is recorded, so every write
            # queues a delivery for it (as the bare loop does), handled elsewhere.
            def record_route(tx: Any) -> None:
                tx.execute(work_queue_routes.delete())
                tx.execute(work_queue_routes.insert().values(
                    group_name=GROUP, kind=KIND, last_seen_at=datetime.now(UTC)))

            await host.run(record_route)
        if scenario == "seq":
            groups = [[f"s{j}" for j in range(SEQ_ENTITIES)]]
        else:
            groups = [[f"c{k}-{j}" for j in range(ENTITIES_PER_CALLER)]
                      for k in range(CALLERS)]

        # Warm-up: create every entity and update each a few times, then drain.
        async def warm(ids: list[str]) -> None:
            for _ in range(settings.warmup_per_entity):
                for entity_id in ids:
                    await handle.mutate(entity_id, bump)

        async with anyio.create_task_group() as tg:
            for ids in groups:
                tg.start_soon(warm, ids)
        await host.drain(timeout=max(settings.drain_timeout, 60.0))
        warm_total = sum(len(ids) for ids in groups) * settings.warmup_per_entity

        counts = [0] * len(groups)
        handled_before = plugin.handled
        start = time.perf_counter()
        deadline = start + settings.ours_seconds

        took: list[float] = []

        async def caller(k: int, ids: list[str]) -> None:
            i = 0
            now = time.perf_counter()
            while now < deadline:
                await handle.mutate(ids[i % len(ids)], bump)
                i += 1
                then, now = now, time.perf_counter()
                took.append(now - then)
            counts[k] = i

        async with anyio.create_task_group() as tg:
            for k, ids in enumerate(groups):
                tg.start_soon(caller, k, ids)
        elapsed = time.perf_counter() - start
        row.handled_during = plugin.handled - handled_before
        row.ours_n = sum(counts)
        row.ours_rate = row.ours_n / elapsed
        took.sort()
        row.latency = (took[len(took) // 2], took[int(len(took) * 0.99)], took[-1])

        row.pending_at_drain = await _count_pending(host)
        if not plugin.consume:
            logged = await _count_changes(host)
            if row.pending_at_drain != logged:
                row.ok = False
                row.notes.append(f"{row.pending_at_drain} deliveries queued for "
                                 f"{logged} changes, expected one each")
            return
        drain_start = time.perf_counter()
        try:
            await host.drain(timeout=settings.drain_timeout)
            row.drain_s = time.perf_counter() - drain_start
        except TimeoutError:
            row.drain_gave_up_after = settings.drain_timeout
            left = await _count_pending(host)
            done = row.pending_at_drain - left
            row.notes.append(
                f"drain gave up after {settings.drain_timeout:.0f} s: {done:,} of "
                f"{row.pending_at_drain:,} deliveries handled ({done / settings.drain_timeout:,.0f}"
                f"/s), {left:,} left (the scratch database is dropped anyway)"
            )

        # Sanity: every mutation was logged once and (after a full drain) handled.
        expected = warm_total + row.ours_n
        logged = await _count_changes(host)
        if logged != expected:
            row.ok = False
            row.notes.append(f"{logged} changes logged, expected {expected}")
        if row.drain_s is not None and plugin.handled < expected:
            row.ok = False
            row.notes.append(f"handler ran {plugin.handled} times, expected {expected}")
        elif row.drain_s is not None and plugin.handled > expected:
            row.notes.append(f"handler ran {plugin.handled - expected} extra time(s) "
                             "(at-least-once redelivery; see the log above)")


# -- databases --------------------------------------------------------------------------

_TABLES = ("entity_state", "entity_changes", "entity_transitions", "entity_deliveries",
           "reactive_timers")


def empty_tables(sa_url: str) -> None:
    """Remove every row (and reset ids) so each phase starts from the same empty schema."""
    engine = create_engine(sa_url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text(f"TRUNCATE {', '.join(_TABLES)} RESTART IDENTITY"))
            else:
                for table in _TABLES:
                    conn.execute(text(f"DELETE FROM {table}"))
                if _has_sqlite_sequence(conn):
                    conn.execute(text("DELETE FROM sqlite_sequence"))
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.exec_driver_sql("VACUUM")
        else:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(f"VACUUM ANALYZE {', '.join(_TABLES)}"))
    finally:
        engine.dispose()


def _has_sqlite_sequence(conn: Any) -> bool:
    return conn.execute(text(
        "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")).first() is not None


def create_schema(sa_url: str) -> None:
    """The schema as a host sets it up (its migrations), on an empty database."""

    async def start() -> None:
        async with Host(database_url=sa_url, plugins=[BenchPlugin()], entry_points=False,
                        config={"workers": False}):
            pass

    anyio.run(start)


def pg_reachable(admin_url: str) -> tuple[bool, str]:
    try:
        import psycopg

        with psycopg.connect(admin_url, connect_timeout=3) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        return True, str(version)
    except Exception as exc:  # noqa: BLE001 - any failure means: not reachable
        return False, " ".join(f"{type(exc).__name__}: {exc}".split())


# -- orchestration ----------------------------------------------------------------------

def bench_backend(
    backend: str, sa_url: str, bare: Callable[[list[str], int, float], Timed],
    settings: Settings, rows: list[Row],
) -> None:
    create_schema(sa_url)
    bare_ids = [f"s{j}" for j in range(SEQ_ENTITIES)]
    for scenario, label in (("seq", "1 caller"), ("conc", f"{CALLERS} callers"),
                            ("queued", f"{CALLERS} callers, q")):
        row = Row(backend=backend, scenario=label)
        rows.append(row)
        # The bare loop runs in two halves, right before and right after ours, so that
        # drift in the machine's load affects both figures alike.
        print(f"  {backend} {label}: bare ...", end="", flush=True)
        empty_tables(sa_url)
        n1, t1, longest1 = bare(bare_ids, settings.bare_warmup, settings.bare_seconds / 2)
        print(f" {n1 / t1:,.0f}/s; Host ...", end="", flush=True)
        empty_tables(sa_url)
        anyio.run(run_ours, sa_url, scenario, settings, row)
        drain = (f"{row.drain_s:.2f} s" if row.drain_s is not None
                 else f"> {row.drain_gave_up_after:.0f} s" if row.drain_gave_up_after
                 else "elsewhere")
        print(f" {row.ours_rate:,.0f}/s, drain {drain}; bare ...", end="", flush=True)
        empty_tables(sa_url)
        n2, t2, longest2 = bare(bare_ids, settings.bare_warmup, settings.bare_seconds / 2)
        print(f" {n2 / t2:,.0f}/s", flush=True)
        row.bare_n, row.bare_rate = n1 + n2, (n1 + n2) / (t1 + t2)
        row.bare_longest = max(longest1, longest2)


def machine_info(pg_version: str | None) -> list[str]:
    import psycopg
    import pydantic
    import sqlalchemy

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return [
        (f"python      {platform.python_implementation()} {sys.version.split()[0]} "
         f"on {platform.platform()}"),
        (f"cpu         {os.cpu_count()} logical CPUs ({usable} usable), "
         f"{platform.processor() or platform.machine()}"),
        (f"sqlite      {sqlite3.sqlite_version} (library), "
         f"sqlalchemy {sqlalchemy.__version__}, pydantic {pydantic.VERSION}, "
         f"psycopg {psycopg.__version__}, anyio {_dist_version('anyio')}"),
        f"postgresql  {pg_version or 'not reachable'}",
    ]


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    try:
        return version(name)
    except Exception:  # noqa: BLE001 - a version we cannot read is just unknown
        return "?"


def print_table(rows: list[Row]) -> None:
    header = (f"{'scenario':<22} {'mutations/s':>12} {'n':>7} {'bare/s':>9} {'ratio':>6} "
              f"{'handled':>8} {'pending':>8} {'drain s':>8}  target")
    print(header)
    print("-" * (len(header) + 28))
    for row in rows:
        target = "-"
        if row.backend == "sqlite" and row.scenario == "1 caller":
            met = row.ours_rate >= TARGET_SQLITE_SEQ
            target = f">= {TARGET_SQLITE_SEQ:,.0f}/s: {'MET' if met else 'MISSED'}"
        elif row.scenario != "1 caller":
            goal = TARGET_CONC[row.backend]
            met = row.ratio >= goal
            target = f">= {goal:.1f}x bare: {'MET' if met else 'MISSED'}"
        drain = (f"{row.drain_s:.2f}" if row.drain_s is not None
                 else f">{row.drain_gave_up_after:.0f}" if row.drain_gave_up_after else "-")
        print(f"{row.backend + ' ' + row.scenario:<22} {row.ours_rate:>12,.0f} "
              f"{row.ours_n:>7,} {row.bare_rate:>9,.0f} {row.ratio:>6.2f} "
              f"{row.handled_during:>8,} {row.pending_at_drain:>8,} {drain:>8}  {target}")
        for note in row.notes:
            print(f"{'':<22} !! {note}")
    print()
    print(f"{'one mutate call, ms':<28} {'median':>7} {'p99':>7} {'longest':>8} "
          f"{'bare longest':>13}")
    for row in rows:
        if row.latency is not None:
            median, p99, longest = (1000 * x for x in row.latency)
            print(f"{row.backend + ' ' + row.scenario:<28} {median:>7.2f} {p99:>7.2f} "
                  f"{longest:>8.1f} {1000 * row.bare_longest:>13.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (about 15 s)")
    parser.add_argument(
        "--pg-url", default=os.environ.get("REACTIVE_TEST_PG_URL") or DEFAULT_PG,
        help="maintenance URL of a PostgreSQL server; a scratch database is created and "
             "dropped there (default: $REACTIVE_TEST_PG_URL or %(default)s)",
    )
    parser.add_argument(
        "--backends", default="sqlite,postgresql",
        help="comma-separated backends to run (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    backends = {b.strip() for b in args.backends.split(",") if b.strip()}
    unknown = backends - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"--backends: unknown {sorted(unknown)}; expected sqlite and/or postgresql")
    started = time.perf_counter()

    pg_ok, pg_info = (pg_reachable(args.pg_url) if "postgresql" in backends
                      else (False, "skipped (--backends)"))
    print("reactive-core mutate benchmark" + (" (quick)" if args.quick else ""))
    for line in machine_info(pg_info if pg_ok else None):
        print("  " + line)
    print(f"  work-queue subscriber: 1 group, no-op handler; warm-up {settings.warmup_per_entity} "
          f"mutations/entity; measured {settings.ours_seconds:g} s (ours), "
          f"{settings.bare_seconds:g} s (bare)")
    print()

    rows: list[Row] = []
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory(prefix="rc-bench-") as tmp:
            path = os.path.join(tmp, "bench.db")
            bench_backend(
                "sqlite", f"sqlite:///{path}",
                lambda ids, warmup, seconds: bare_sqlite(path, ids, warmup, seconds),
                settings, rows,
            )

    if "postgresql" not in backends:
        pass
    elif not pg_ok:
        print(f"  postgresql: not benchmarked ({pg_info}) at {args.pg_url}")
    else:
        import psycopg

        name = f"rc_bench_{uuid.uuid4().hex[:10]}"
        admin = make_url(args.pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
                         if args.pg_url.startswith("postgresql://") else args.pg_url)
        sa_url = admin.set(database=name).render_as_string(hide_password=False)
        raw_url = admin.set(drivername="postgresql", database=name).render_as_string(
            hide_password=False)
        admin_raw = admin.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin_raw, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            bench_backend(
                "postgresql", sa_url,
                lambda ids, warmup, seconds: bare_pg(raw_url, ids, warmup, seconds),
                settings, rows,
            )
        finally:
            with psycopg.connect(admin_raw, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    print()
    print_table(rows)
    print()
    print("mutations/s: mutations committed per second through Host.entity().mutate() while")
    print("  the work-queue dispatcher runs; n = mutations in the measured window.")
    print(f"'{CALLERS} callers, q': the group's consumer is another instance (its route is")
    print("  recorded): every write queues its delivery, as the bare loop does, and this")
    print("  process only writes.")
    print("bare/s: the same statements per mutation with the raw driver, one transaction per")
    print("  mutation, sequential (also the baseline of the 32-caller rows).")
    print("handled: deliveries handled during the measured window; pending: deliveries left")
    print("  when it ended; drain s: time host.drain() took to finish them.")
    print("one mutate call: how long each call took in the measured window (a caller's")
    print("  wait for its group commit included); bare longest: the bare loop's longest")
    print("  mutation (both include any WAL checkpoint that ran inside a commit).")
    print(f"total time {time.perf_counter() - started:.1f} s")
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
