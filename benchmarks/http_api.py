#!/usr/bin/env python
"""HTTP API benchmark: requests/s and latency of the largest reads, next to the same
reads made in-process, and the fan-out of the change stream to 50 clients.

Run from the repository root (SQLite in a temp dir, about 2 minutes; PostgreSQL too with
`--pg`, in a scratch database created on that server and dropped at the end; about
5.5 minutes in all):

    .venv/bin/python benchmarks/http_api.py
    .venv/bin/python benchmarks/http_api.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres

Data, built once per database in this process with the plugins' store functions in
bulk: 1,000 catalog systems, one shared check associated with each, three passing runs
recorded for all of them (`record_run`: 1,000 `health` entities, every system healthy),
and 1,000 objectives (one per system, targets 99–99.95 %, windows 7/30/90 days, strict
and self-only alternating) with four closed downtime events each in the window, written
with `slo_store.save_objective_in` and one bulk insert (not `upsert_objective`: only
reads are measured).

The servers: this script started again as two child processes (`--serve`), each a host
with the catalog, health and SLO plugins, the `http` plugin enabled on 127.0.0.1:0 and a
store-backed `bench-meter` kind, `run_jobs` off, no check scheduler, on that database:
one with the services' read-through caches at their default TTL (30 s, "cached"), one
with `cache_ttl_seconds: 0` for health and SLO ("uncached": every read loads, but
concurrent requests that miss together still share one load). The clients (httpx
`AsyncClient`, keep-alive connections) run in this process, so the server has a core
of its own (2 cores: client and server each get one). The same child also serves two
routes of the benchmark's own plugin (through `reactive_http_routes`): the in-process
baseline and the writers of section 2, so both run inside the server being measured.

1. Reads: `GET /api/health?limit=1000` and `GET /api/objectives?limit=1000` (every item
   on one page), cached and uncached, from N concurrent clients (default 4) for a fixed
   time per round; requests/s and the round's p50/p99 latency. Baseline in the same run,
   rounds alternating: the same N concurrent callers inside the server process calling
   `health_service(host).system_statuses()` / `slo_service(host).objectives()`, what the
   routes call before building their pages. Also the server's CPU time per request
   (from /proc), which shows where a request's cost lies when the rate is CPU bound.
   Sanity: every response 200, and each endpoint returns the 1,000 expected ids.
2. Change stream: 50 clients on `GET /api/events`; once every one has its stream open,
   writers in the server (4 tasks, each paced to its share of 1,000 changes/s) write
   `bench-meter` entities for a few seconds. Reported: the committed rate (the
   baseline: what the stream has to carry), delivered events/s over all clients (from
   the first commit to the last client's receipt of the last change), per-client
   completeness (every client must receive exactly the committed seqs, in order:
   checked) and the latency from a change's `occurred_at` to its receipt (p50, p99,
   max). The clients keep the raw chunks with their arrival time and parse them after
   the run, so their own work stays small. Also the writers alone (no stream open) for
   comparison, and the CPU time of both processes during the run.

Each figure is the median of its rounds, every round printed. The exit status is 1
when a sanity check fails (a request not 200, an endpoint's ids wrong, a client missing
or repeating a change), never because something is slow.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from catalog_plugin import Catalog, CatalogPlugin
from health_plugin import CheckOutcome, HealthPlugin, HealthStatus, health_service
from reactive_core import Host, hookimpl
from reactive_core.http.plugin import HttpPlugin
from slo_plugin import DependencyExclusion, Objective, SloPlugin, slo_service
from slo_plugin import store as slo_store
from slo_plugin.schema import slo_downtime_events

SYSTEMS = 1_000               # one objective each
CHECK = "probe"
RUNS = 3                      # passing runs recorded per system
EVENTS = 4                    # closed downtime events per objective, in its window
METER_KIND = "bench-meter"
ENDPOINTS = {"health": "/api/health?limit=1000", "objectives": "/api/objectives?limit=1000"}
SSE_CLIENTS = 50
SSE_RATE = 1_000.0            # changes/s the writers aim at, all together
SSE_WRITERS = 4
PG_EXAMPLE = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
UP = CheckOutcome(status=HealthStatus.HEALTHY, latency_ms=1.0)
TICKS = os.sysconf("SC_CLK_TCK")


# -- the hosts ----------------------------------------------------------------------------

class Meter(BaseModel):
    model_config = ConfigDict(frozen=True)

    value: int = 0


def set_to(value: int) -> Callable[[Any, Meter | None], Meter]:
    def apply(_tx: Any, _prev: Meter | None) -> Meter:
        return Meter(value=value)
    return apply


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0–1) of `values`, nearest rank; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


@dataclass
class Round:
    """One timed round of N concurrent callers."""

    count: int
    elapsed: float
    p50: float
    p99: float
    cpu: float = 0.0          # the server's CPU seconds during the round
    bad: int = 0              # responses that were not 200

    @property
    def rate(self) -> float:
        return self.count / self.elapsed

    def as_json(self) -> dict[str, Any]:
        return {"count": self.count, "elapsed": self.elapsed, "p50": self.p50,
                "p99": self.p99, "bad": self.bad}


async def hammer(call: Callable[[], Awaitable[bool]], seconds: float,
                 concurrency: int) -> Round:
    """`concurrency` tasks calling `call` back to back for `seconds`, each at least once
    (a call started before the deadline runs to its end); `call` says whether the
    answer was good."""
    latencies: list[float] = []
    bad = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal bad
        first = True
        while first or time.perf_counter() < deadline:
            first = False
            started = time.perf_counter()
            good = await call()
            latencies.append(time.perf_counter() - started)
            bad += not good
            await anyio.lowlevel.checkpoint()  # a cached call never suspends: take turns

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return Round(count=len(latencies), elapsed=time.perf_counter() - started,
                 p50=percentile(latencies, 0.5), p99=percentile(latencies, 0.99), bad=bad)


def service_call(host: Host, what: str) -> Callable[[], Awaitable[list[Any]]]:
    if what == "health":
        return health_service(host).system_statuses
    return slo_service(host).objectives


def bench_router(host: Host) -> APIRouter:
    """The benchmark's own routes, served by the host under test."""
    router = APIRouter(prefix="/bench")

    @router.get("/service")
    async def service(what: str, seconds: float, concurrency: int) -> dict[str, Any]:
        """N concurrent in-process callers of the service read behind `what`."""
        read = service_call(host, what)

        async def call() -> bool:
            return len(await read()) == SYSTEMS

        return (await hammer(call, seconds, concurrency)).as_json()

    @router.get("/service-ids")
    async def service_ids(what: str) -> list[str]:
        rows = await service_call(host, what)()
        return [r.system_id if what == "health" else r.objective.id for r in rows]

    @router.post("/write")
    async def write(writers: int, rate: float, seconds: float) -> dict[str, Any]:
        """`writers` tasks writing `bench-meter` entities, each paced to `rate / writers`
        changes/s, for `seconds` (no write starts later: a writer behind its pace writes
        fewer); the seqs committed."""
        handle = host.entity(METER_KIND)
        interval = writers / rate
        per_writer = round(rate * seconds / writers)
        seqs: list[int] = []
        started = time.perf_counter()
        wall = time.time()

        async def writer(k: int) -> None:
            first = started + k * interval / writers
            for i in range(per_writer):
                due = first + i * interval
                if time.perf_counter() >= started + seconds:
                    return  # behind its pace: what was committed in time is the rate
                if due > time.perf_counter():
                    await anyio.sleep(due - time.perf_counter())
                written = await handle.write(f"w{k}-{i % 8}", set_to(i * writers + k))
                if written.change is not None:
                    seqs.append(written.change.seq)

        async with anyio.create_task_group() as tg:
            for k in range(writers):
                tg.start_soon(writer, k)
        return {"seqs": sorted(seqs), "elapsed": time.perf_counter() - started,
                "started_wall": wall}

    return router


class BenchPlugin:
    """A store-backed `bench-meter` kind, and the routes above."""

    name = "bench"

    @hookimpl
    def reactive_register(self, registry: Any) -> None:
        registry.define_entity(METER_KIND, state=Meter)

    @hookimpl
    def reactive_http_routes(self, host: Host) -> list[APIRouter]:
        return [bench_router(host)]


def make_host(url: str, *, http: bool, ttl: float | None = None) -> Host:
    plugins: dict[str, Any] = {"health": {"scheduler": False}, "slo": {}}
    if ttl is not None:
        plugins["health"]["cache_ttl_seconds"] = ttl
        plugins["slo"]["cache_ttl_seconds"] = ttl
    if http:
        plugins["http"] = {"enabled": True, "listen": "127.0.0.1:0"}
    return Host(database_url=url, entry_points=False,
                plugins=[CatalogPlugin(), HealthPlugin(), SloPlugin(), HttpPlugin(),
                         BenchPlugin()],
                config={"run_jobs": False, "plugins": plugins})


async def serve_child(url: str, ttl: float | None) -> None:
    """The child process: serve until this process's stdin closes."""
    async with make_host(url, http=True, ttl=ttl) as host:
        plugin = host.plugin("http")
        assert isinstance(plugin, HttpPlugin) and plugin.url is not None
        print(f"URL {plugin.url}", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)


# -- data ---------------------------------------------------------------------------------

def objectives_for(systems: list[str]) -> list[Objective]:
    targets, windows = (99.0, 99.5, 99.9, 99.95), (7, 30, 90)
    return [Objective(id=f"obj-{i:04d}", system_id=system, target=targets[i % 4],
                      window_days=windows[i % 3],
                      dependency_exclusion=(DependencyExclusion.STRICT if i % 2 == 0
                                            else DependencyExclusion.SELF_ONLY))
            for i, system in enumerate(systems)]


def events_for(objectives: list[Objective], now: datetime) -> list[dict[str, Any]]:
    rows = []
    for n, objective in enumerate(objectives):
        slot = objective.window_days * 86_400.0 / (EVENTS + 1)
        for j in range(EVENTS):
            start = now - timedelta(days=objective.window_days) + timedelta(
                seconds=(j + 1) * slot)
            length = 60.0 + (n * 7 + j * 13) % 600
            rows.append({"objective_id": objective.id, "started_at": start,
                         "ended_at": start + timedelta(seconds=length),
                         "duration_seconds": length, "attribution": "self",
                         "upstream_system_id": None, "upstream_system_name": None})
    return rows


async def build(url: str) -> float:
    """The systems, check, runs, objectives and events; seconds it took."""
    started = time.perf_counter()
    systems = [f"sys-{s:04d}" for s in range(SYSTEMS)]
    now = datetime.now(UTC)
    async with make_host(url, http=False) as host:
        catalog, health = Catalog(host), health_service(host)

        def unit(tx: Any) -> None:
            health.upsert_check_in(tx, CHECK, strategy="tcp",
                                   config={"host": "127.0.0.1", "port": 9})
            for system in systems:
                catalog.upsert_system_in(tx, system, name=system.upper())
                health.associate_in(tx, system, CHECK)

        await host.run(unit)
        await host.drain(timeout=300)
        for k in range(RUNS):
            await health.record_run(CHECK, UP, timestamp=now - timedelta(minutes=RUNS - k))
        await host.drain(timeout=300)
        objectives = objectives_for(systems)
        events = events_for(objectives, now)

        def load(tx: Any) -> None:
            for objective in objectives:
                slo_store.save_objective_in(tx, objective, now - timedelta(days=100))
            tx.execute(insert(slo_downtime_events), events)

        await host.run(load)
        await host.drain(timeout=300)
    return time.perf_counter() - started


# -- the server processes -----------------------------------------------------------------

@dataclass
class Child:
    process: subprocess.Popen[str]
    url: str

    def cpu(self) -> float:
        """CPU seconds the process has used (user + system)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS


@contextmanager
def children(url: str, ttls: dict[str, float | None],
             log: Path) -> Iterator[dict[str, Child]]:
    """One server process per name, each with its caches' TTL; stopped at the end."""
    started: dict[str, Child] = {}
    try:
        for name, ttl in ttls.items():
            args = [sys.executable, str(Path(__file__).resolve()), "--serve", url]
            if ttl is not None:
                args += ["--ttl", str(ttl)]
            with (log.parent / f"{log.name}-{name}.log").open("w") as err:
                process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=err, text=True)
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line.startswith("URL "):
                process.kill()
                process.wait()
                raise RuntimeError(f"the {name} server did not start: "
                                   f"{(log.parent / f'{log.name}-{name}.log').read_text()}")
            started[name] = Child(process, line.split()[1])
        yield started
    finally:
        for child in started.values():
            assert child.process.stdin is not None
            child.process.stdin.close()
        for child in started.values():
            try:
                child.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()


# -- 1. reads -----------------------------------------------------------------------------

@dataclass
class Figures:
    """One backend's results."""

    backend: str
    build_s: float = 0.0
    reads: dict[tuple[str, str, str], list[Round]] = field(default_factory=dict)
    sse: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def client_for(url: str, connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, trust_env=False, timeout=120,
                             limits=httpx.Limits(max_connections=connections,
                                                 max_keepalive_connections=connections))


async def check_ids(client: httpx.AsyncClient, what: str, figures: Figures,
                    label: str) -> None:
    """The endpoint and the service both return the 1,000 expected ids."""
    expected = ([f"sys-{s:04d}" for s in range(SYSTEMS)] if what == "health"
                else [f"obj-{s:04d}" for s in range(SYSTEMS)])
    response = await client.get(ENDPOINTS[what])
    got = [item["system_id" if what == "health" else "id"]
           for item in response.json()["items"]] if response.status_code == 200 else []
    if got != expected:
        figures.problems.append(f"{label} GET {ENDPOINTS[what]}: {response.status_code}, "
                                f"{len(got)} items, expected the {SYSTEMS} ids")
    service = (await client.get("/bench/service-ids", params={"what": what})).json()
    if service != expected:
        figures.problems.append(f"{label} service {what}: {len(service)} ids, expected "
                                f"the {SYSTEMS} ids")


async def bench_reads(servers: dict[str, Child], figures: Figures, args: Any) -> None:
    n = args.concurrency
    clients = {name: client_for(child.url, n + 2) for name, child in servers.items()}
    try:
        async def over_http(mode: str, what: str, seconds: float, callers: int) -> Round:
            client = clients[mode]

            async def call() -> bool:
                return (await client.get(ENDPOINTS[what])).status_code == 200

            return await hammer(call, seconds, callers)

        async def in_process(mode: str, what: str, seconds: float, callers: int) -> Round:
            response = await clients[mode].get("/bench/service", params={
                "what": what, "seconds": seconds, "concurrency": callers})
            body = response.json()
            return Round(count=body["count"], elapsed=body["elapsed"], p50=body["p50"],
                         p99=body["p99"], bad=body["bad"])

        setups = [(what, mode, side) for what in ENDPOINTS for mode in servers
                  for side in ("http", "service")]

        async def measure(setup: tuple[str, str, str], seconds: float,
                          callers: int = n) -> Round:
            what, mode, side = setup
            child = servers[mode]
            before = child.cpu()
            measured = await (over_http if side == "http" else in_process)(
                mode, what, seconds, callers)
            measured.cpu = child.cpu() - before
            return measured

        for mode, client in clients.items():
            for what in ENDPOINTS:
                await check_ids(client, what, figures, mode)
        for setup in setups:   # warm-up: one call each
            await measure(setup, 0.0, 1)
        figures.reads = {setup: [] for setup in setups}
        for k in range(args.rounds):
            for setup in setups:
                figures.reads[setup].append(await measure(setup, args.seconds))
            print(f"    round {k + 1}/{args.rounds}: " + ", ".join(
                f"{w} {m} {s} {per_s(figures.reads[(w, m, s)][-1].rate)}/s"
                for w, m, s in setups), flush=True)
        for setup, rounds in figures.reads.items():
            bad = sum(r.bad for r in rounds)
            if bad:
                figures.problems.append(f"{' '.join(setup)}: {bad} answers not good")
    finally:
        for client in clients.values():
            await client.aclose()


# -- 2. the change stream -----------------------------------------------------------------

@dataclass
class Stream:
    """What one client received: raw chunks with their arrival (wall clock)."""

    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    opened: anyio.Event = field(default_factory=anyio.Event)
    scanned: int = 0          # chunks searched for the last change's id so far
    carry: bytes = b""        # the end of the searched chunks (an id split between two)
    done: bool = False

    def has(self, marker: bytes) -> bool:
        """Whether `marker` has arrived (searching only the chunks not searched yet)."""
        while not self.done and self.scanned < len(self.chunks):
            window = self.carry + self.chunks[self.scanned][1]
            self.done = marker in window
            self.carry = window[-64:]
            self.scanned += 1
        return self.done


async def listen(client: httpx.AsyncClient, stream: Stream) -> None:
    """Keep every chunk of the stream with its arrival time, until cancelled."""
    async with client.stream("GET", "/api/events") as response:
        if response.status_code != 200:
            stream.opened.set()
            return
        async for chunk in response.aiter_raw():
            stream.chunks.append((time.time(), chunk))
            stream.opened.set()


def parse(stream: Stream) -> list[tuple[int, str, float, float]]:
    """(seq, kind, occurred_at, received) of every change event, in arrival order."""
    out = []
    buffer = b""
    for received, chunk in stream.chunks:
        buffer += chunk
        *blocks, buffer = buffer.split(b"\n\n")
        for block in blocks:
            fields = dict(line.split(": ", 1) for line in block.decode().split("\n")
                          if line and not line.startswith(":"))
            if fields.get("event") != "change":
                continue
            data = json.loads(fields["data"])
            out.append((int(fields["id"]), data["kind"],
                        datetime.fromisoformat(data["occurred_at"]).timestamp(), received))
    return out


async def write(client: httpx.AsyncClient, seconds: float) -> dict[str, Any]:
    response = await client.post("/bench/write", params={
        "writers": SSE_WRITERS, "rate": SSE_RATE, "seconds": seconds})
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def bench_sse(server: Child, figures: Figures, args: Any) -> None:
    sse = figures.sse
    async with client_for(server.url, 4) as control:
        alone = await write(control, args.sse_seconds / 2)   # also warms the writers up
        sse["alone_rate"] = len(alone["seqs"]) / alone["elapsed"]
        async with client_for(server.url, SSE_CLIENTS + 2) as client:
            streams = [Stream() for _ in range(SSE_CLIENTS)]
            async with anyio.create_task_group() as tg:
                for stream in streams:
                    tg.start_soon(listen, client, stream)
                with anyio.fail_after(60):
                    for stream in streams:
                        await stream.opened.wait()
                cpu_server, cpu_client = server.cpu(), time.process_time()
                written = await write(control, args.sse_seconds)
                seqs: list[int] = written["seqs"]
                marker = f"\nid: {seqs[-1]}\n".encode()
                with anyio.move_on_after(120):
                    while not all(stream.has(marker) for stream in streams):
                        await anyio.sleep(0.05)
                sse["cpu_server"] = server.cpu() - cpu_server
                sse["cpu_client"] = time.process_time() - cpu_client
                tg.cancel_scope.cancel()
    committed = len(seqs)
    sse["committed"] = committed
    sse["commit_s"] = written["elapsed"]
    sse["rate"] = committed / written["elapsed"]
    latencies: list[float] = []
    complete = 0
    delivered = 0
    last_receipt = written["started_wall"]
    for n, stream in enumerate(streams):
        events = parse(stream)
        got = [seq for seq, kind, _, _ in events if kind == METER_KIND]
        others = len(events) - len(got)
        delivered += len(got)
        if got == seqs and not others:
            complete += 1
        else:
            missing = len(set(seqs) - set(got))
            figures.problems.append(
                f"SSE client {n}: {len(got)} of {committed} changes ({missing} missing, "
                f"{len(got) - len(set(got))} twice, {others} of other kinds, in order: "
                f"{got == sorted(got)})")
        for _, kind, occurred, received in events:
            if kind == METER_KIND:
                latencies.append(received - occurred)
                last_receipt = max(last_receipt, received)
    window = last_receipt - written["started_wall"]
    sse.update(complete=complete, delivered=delivered, window=window,
               delivered_rate=delivered / window if window > 0 else float("nan"),
               tail=last_receipt - (written["started_wall"] + written["elapsed"]),
               p50=percentile(latencies, 0.5), p99=percentile(latencies, 0.99),
               max=max(latencies, default=float("nan")))


# -- databases ----------------------------------------------------------------------------

@contextmanager
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="rc-bench-http-") as tmp:
        yield f"sqlite:///{tmp}/reactive.db"


@contextmanager
def pg_url(url: str) -> Iterator[str]:
    """A scratch database `rc_bench_http_<random>`, dropped at the end."""
    import psycopg

    admin = make_url(url)
    if admin.drivername == "postgresql":
        admin = admin.set(drivername="postgresql+psycopg")
    raw = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    database = f"rc_bench_http_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        yield admin.set(database=database).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(raw, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def pg_version(url: str) -> str:
    import psycopg

    raw = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(raw, connect_timeout=5) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def run_backend(figures: Figures, url: str, args: Any, log: Path) -> None:
    print(f"  {figures.backend}: building {SYSTEMS:,} systems and objectives ...", end="",
          flush=True)
    figures.build_s = anyio.run(build, url)
    print(f" {figures.build_s:.1f} s", flush=True)
    with children(url, {"cached": None, "uncached": 0.0}, log / figures.backend) as servers:
        anyio.run(bench_reads, servers, figures, args)
        print("    change stream ...", flush=True)
        anyio.run(bench_sse, servers["cached"], figures, args)


# -- report -------------------------------------------------------------------------------

def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms" if seconds < 0.01 else f"{seconds * 1000:.0f} ms"


def per_s(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.2f}"


def report(all_figures: list[Figures], concurrency: int) -> None:
    for f in all_figures:
        print()
        print(f"== {f.backend} (data built in {f.build_s:.1f} s)")
        print(f"1. reads of {SYSTEMS:,} items, {concurrency} concurrent callers; medians of "
              f"the rounds (requests/s of each round in brackets); the server's CPU time "
              f"per request; HTTP requests/s as a fraction of the in-process calls/s")
        print(f"   {'':40} {'req/s':>9} {'p50':>9} {'p99':>9} {'CPU/req':>9} {'HTTP/in':>9}")
        for what in ENDPOINTS:
            for mode in ("cached", "uncached"):
                base = None
                for side in ("service", "http"):
                    rounds = f.reads.get((what, mode, side), [])
                    if not rounds:
                        continue
                    rate = median([r.rate for r in rounds])
                    cpu = median([r.cpu / r.count for r in rounds if r.count])
                    ratio = "" if base is None else f"{rate / base:.3g}"
                    base = rate if side == "service" else base
                    label = (f"GET {ENDPOINTS[what].split('?')[0]}" if side == "http"
                             else f"{what} service in-process")
                    print(f"   {label + ' ' + mode:40} {per_s(rate):>9} "
                          f"{ms(median([r.p50 for r in rounds])):>9} "
                          f"{ms(median([r.p99 for r in rounds])):>9} {ms(cpu):>9} {ratio:>9}"
                          f"  [{', '.join(per_s(r.rate) for r in rounds)}]")
        s = f.sse
        if s:
            print(f"2. change stream: {SSE_CLIENTS} clients on GET /api/events, "
                  f"{SSE_WRITERS} writers aiming at {SSE_RATE:,.0f} changes/s")
            print(f"   writers alone (no stream open): {s['alone_rate']:,.0f} changes/s")
            print(f"   committed (the baseline): {s['committed']:,} changes in "
                  f"{s['commit_s']:.2f} s = {s['rate']:,.0f} changes/s; ideal fan-out "
                  f"{s['rate'] * SSE_CLIENTS:,.0f} events/s")
            print(f"   delivered: {s['delivered']:,} events in {s['window']:.2f} s = "
                  f"{s['delivered_rate']:,.0f} events/s (the last client caught up "
                  f"{s['tail']:.2f} s after the last commit)")
            print(f"   complete clients: {s['complete']} of {SSE_CLIENTS} (every committed "
                  f"seq exactly once, in order)")
            print(f"   latency occurred_at -> receipt: p50 {ms(s['p50'])}, p99 {ms(s['p99'])}, "
                  f"max {ms(s['max'])}")
            print(f"   CPU during the run: server {s['cpu_server']:.1f} s, clients "
                  f"{s['cpu_client']:.1f} s over {s['window']:.1f} s")
        for problem in f.problems:
            print(f"   !! {problem}")


def machine_info(pg: str | None) -> list[str]:
    import sqlalchemy

    return [
        f"python      {platform.python_implementation()} {sys.version.split()[0]} on "
        f"{platform.platform()}",
        f"cpu         {os.cpu_count()} logical CPUs, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"sqlite      {sqlite3.sqlite_version}, sqlalchemy {sqlalchemy.__version__}, "
        f"httpx {httpx.__version__}",
        f"postgresql  {pg or 'not used (--pg URL)'}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--pg", metavar="URL",
                        help=f"also PostgreSQL: a server's URL, e.g. {PG_EXAMPLE}; a scratch "
                             "database is created there and dropped at the end")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="concurrent callers in section 1 (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=1.5,
                        help="seconds per round and setup in section 1 (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of section 1 (default %(default)s)")
    parser.add_argument("--sse-seconds", type=float, default=4.0,
                        help="seconds of writing in section 2 (default %(default)s)")
    parser.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--ttl", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.getLogger("reactive_core").setLevel(logging.WARNING)
    if args.serve:
        anyio.run(serve_child, args.serve, args.ttl)
        return 0
    started = time.perf_counter()
    pg = pg_version(args.pg) if args.pg else None
    print("reactive-core HTTP API benchmark")
    for line in machine_info(pg):
        print("  " + line)
    print()
    results: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="rc-bench-http-logs-") as logs:
        try:
            with sqlite_url() as url:
                results.append(Figures("sqlite"))
                run_backend(results[-1], url, args, Path(logs))
            if args.pg:
                with pg_url(args.pg) as url:
                    results.append(Figures("postgresql"))
                    run_backend(results[-1], url, args, Path(logs))
        finally:
            for log in sorted(Path(logs).iterdir()):
                text = log.read_text().strip()
                if text:
                    print(f"\n-- {log.name} (server stderr)\n{text[-2000:]}")
    report(results, args.concurrency)
    print(f"\ntotal time {time.perf_counter() - started:.1f} s")
    return 1 if any(f.problems for f in results) else 0


if __name__ == "__main__":
    sys.exit(main())
