#!/usr/bin/env python
"""Automation engine benchmark: what one entity change costs with 10 rules and with
10,000, and changes per second through the whole path next to `mutate` alone.

Run from the repository root (SQLite in a temp dir, about 90 s; PostgreSQL too with
`--pg`, in scratch databases created on that server and dropped at the end, about 170 s
in all):

    .venv/bin/python benchmarks/automation.py
    .venv/bin/python benchmarks/automation.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres

Every host has the automation plugin and a store-backed `gauge` kind `{value, status}`
with a change deriver (`gauge.tripped` when `status` turns `down`), `run_jobs` off, the
host's other settings at their defaults. The `reactive_core` loggers are at WARNING (the
`log` action logs at INFO). The engine's work-queue handler (`Engine.on_change`) is
wrapped before the engine installs its routes, so a change counts as handled when the
handler returns: by then every run it started has ended (a `log` step never suspends).

0. Installing 10,000 rules (100 YAML files of 100 rules), in the three steps
   `AutomationPlugin.sync_folder` takes, each timed: parsing the folder
   (`parse_rules`, once per run: it does not depend on the database), storing them
   (`write_rules_in` in one `host.run` on a host without workers: one entity write per
   rule), and installing the stored rules (`reload_from_store`, here the measured
   host's start-up); rules installed per second over the three. (Timed apart so that
   the run stays short: `sync_folder` itself re-installs at its end, and the measured
   host would then install them all again.) On a RUNNING host every rule written is a
   change of the `automation-rule` kind whose broadcast handler re-installs every
   stored rule: measured with 50 and 100 rules (sync_folder, then until
   `host.drain()` returns; re-installs counted), as 10,000 would take hours.
1. Per change, from `mutate` of `gauge:g1` until the engine's handler has finished the
   10 runs (route -> on_change -> a numeric_state condition reading `gauge:g1` -> a
   `log` action): `few`, a host with the 10 rules reading `gauge:g1`, next to `many`,
   a host with those 10 and 9,990 others (a third each: entity triggers on
   `gauge:other-N` with a condition reading it, numeric_state triggers on
   `gauge:other-N`, event triggers on ids no deriver produces). Both hosts are open
   at once (separate databases); rounds alternate. Target: many / few <= 1.5.
   Then `Engine.on_change` alone, called directly with the `EntityChange` that
   `host.changes(...)` returns (each call with a fresh `change_id`, so it is a new
   occurrence and starts 10 runs), the index lookup alone (`entity_matches` plus the
   derived events' `event_matches`) and `on_change` of a change no rule reads.
2. Changes per second through the whole path: a burst of changes from 8 concurrent
   callers (4 gauges each) on a host with ONE rule (`entity: gauge`, any id, one
   condition reading the changed entity from the store, a `log` action; mode
   `parallel`, so that no occurrence is skipped while another runs), timed until
   the handler has finished every change, next to the same burst on a host with the
   same plugins and no rules (`mutate` alone, timed until every `mutate` returned).
   No target: reported.

Each figure is the median over its rounds; every round's value is printed. The exit
status is 1 when a sanity check fails (a run missing or not succeeded, a change not
handled), never because a target is missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import make_url

from reactive_core import EntityChange, Host, hookimpl
from reactive_core.automation.engine import Engine
from reactive_core.automation.loader import parse_rules
from reactive_core.automation.model import Rule
from reactive_core.automation.plugin import AutomationPlugin
from reactive_core.automation.runs import RunStatus, list_runs

KIND = "gauge"
HOT = "g1"                    # the entity the 10 rules read
HOT_RULES = 10
MANY_RULES = 10_000
RULES_PER_FILE = 100
STORM_SIZES = (50, 100)       # rules synced into a running host
CALLERS = 8
GAUGES_PER_CALLER = 4
TARGET_RATIO = 1.5            # cost of a change with 10,000 rules / with 10
PG_EXAMPLE = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


# -- the hosts ----------------------------------------------------------------------------

class Gauge(BaseModel):
    model_config = ConfigDict(frozen=True)

    value: float | None = None
    status: str = "up"


def derive_gauge(change: EntityChange) -> list[str]:
    before = (change.prev or {}).get("status")
    after = (change.next or {}).get("status")
    return ["gauge.tripped"] if after == "down" and before != "down" else []


class Gauges:
    """A store-backed `gauge` kind whose changes derive `gauge.tripped`."""

    name = "gauges"

    @hookimpl
    def reactive_register(self, registry: Any) -> None:
        registry.define_entity(KIND, state=Gauge)
        registry.register_change_deriver(KIND, derive_gauge)


class TimedAutomation(AutomationPlugin):
    """The automation plugin with its work-queue handler counted, and its re-installs.

    `Engine.on_change` is wrapped here, before start-up, where the engine installs its
    routes with whatever `engine.on_change` is then: the wrapper."""

    def __init__(self) -> None:
        super().__init__()
        self.handled = 0
        self.reloads = 0
        self.inner: Callable[[EntityChange], Awaitable[None]] | None = None
        self._progress: anyio.Event | None = None

    @hookimpl
    def reactive_register(self, registry: Any, host: Host) -> None:
        super().reactive_register(registry, host)
        engine = self.engine
        assert engine is not None
        inner = self.inner = engine.on_change

        async def on_change(change: EntityChange) -> None:
            await inner(change)
            self.handled += 1
            if self._progress is not None:
                self._progress.set()

        engine.on_change = on_change  # type: ignore[method-assign]

    async def reload_from_store(self) -> Any:
        self.reloads += 1
        return await super().reload_from_store()

    async def until_handled(self, count: int, timeout: float = 120.0) -> None:
        with anyio.fail_after(timeout):
            while self.handled < count:
                self._progress = anyio.Event()
                await self._progress.wait()


def engine_of(plugin: AutomationPlugin) -> Engine:
    assert plugin.engine is not None, "the plugin is registered with a host"
    return plugin.engine


def make_host(url: str, plugin: AutomationPlugin, *, workers: bool = True) -> Host:
    return Host(database_url=url, entry_points=False, plugins=[plugin, Gauges()],
                config={"run_jobs": False, "workers": workers})


def set_value(value: float) -> Callable[[Any, Gauge | None], Gauge]:
    def apply(_tx: Any, prev: Gauge | None) -> Gauge:
        return Gauge(value=value, status=prev.status if prev else "up")
    return apply


# -- rules --------------------------------------------------------------------------------

def hot_rule(i: int) -> str:
    return (f"- id: hot-{i}\n"
            f"  triggers: [{{entity: \"{KIND}:{HOT}\", field: value}}]\n"
            f"  conditions: [{{numeric_state: {{entity: \"{KIND}:{HOT}\", field: value, "
            f"above: -1}}}}]\n"
            f"  actions: [{{log: \"hot-{i} saw {{{{ trigger.next.value }}}}\"}}]\n")


def other_rule(i: int) -> str:
    """A rule reading `gauge:other-<i>` (or an event nobody derives): never woken here."""
    ref = f"{KIND}:other-{i}"
    if i % 3 == 0:
        return (f"- id: other-{i}\n"
                f"  triggers: [{{entity: \"{ref}\", field: value}}]\n"
                f"  conditions: [{{numeric_state: {{entity: \"{ref}\", field: value, "
                f"above: -1}}}}]\n"
                f"  actions: [{{log: \"other-{i}\"}}]\n")
    if i % 3 == 1:
        return (f"- id: other-{i}\n"
                f"  triggers: [{{numeric_state: {{entity: \"{ref}\", field: value, "
                f"below: 20}}}}]\n"
                f"  actions: [{{log: \"other-{i}\"}}]\n")
    return (f"- id: other-{i}\n"
            f"  triggers: [{{event: \"other.event-{i}\"}}]\n"
            f"  actions: [{{log: \"other-{i}\"}}]\n")


ANY_GAUGE_RULE = (
    "- id: any-gauge\n"
    "  mode: parallel\n"
    "  max: 1000\n"
    f"  triggers: [{{entity: {KIND}, field: value}}]\n"
    f"  conditions: [\"state.{KIND}[trigger.entity_id].value >= 0\"]\n"
    "  actions: [{log: \"{{ trigger.entity_id }} at {{ trigger.next.value }}\"}]\n")


def write_rules(folder: Path, rules: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(rules), RULES_PER_FILE):
        (folder / f"rules-{start // RULES_PER_FILE:04d}.yaml").write_text(
            "".join(rules[start: start + RULES_PER_FILE]))
    return folder


def origin_of(folder: Path) -> str:
    """The origin `sync_folder` stores a folder's rules under."""
    return f"folder:{folder.resolve()}"


def parse_folder(folder: Path) -> tuple[list[Rule], float]:
    """The folder's rules as `sync_folder` parses them (no plugin actions here)."""
    started = time.perf_counter()
    ruleset = parse_rules(folder, actions=[])
    elapsed = time.perf_counter() - started
    if ruleset.errors:
        raise ruleset.errors[0]
    return ruleset.rules, elapsed


async def store_rules(url: str, rules: list[Rule], origin: str) -> float:
    """Seconds `write_rules_in` takes in one `host.run` (a host without workers)."""
    plugin = AutomationPlugin()
    async with make_host(url, plugin, workers=False) as host:
        started = time.perf_counter()
        await host.run(lambda tx: plugin.write_rules_in(tx, rules, origin, prune=True))
        return time.perf_counter() - started


async def install(url: str, folder: Path) -> float:
    """Seconds `sync_folder` takes on a host without workers (no broadcast feed)."""
    plugin = AutomationPlugin()
    async with make_host(url, plugin, workers=False):
        started = time.perf_counter()
        await plugin.sync_folder(folder)
        return time.perf_counter() - started


# -- figures ------------------------------------------------------------------------------

@dataclasses.dataclass
class Figures:
    """One backend's results (seconds unless named otherwise)."""

    backend: str
    parse_s: float = 0.0
    write_s: float = 0.0
    startup_many_s: float = 0.0
    startup_few_s: float = 0.0
    storm: list[tuple[int, float, float, int]] = dataclasses.field(default_factory=list)
    change: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    direct: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    lookup: dict[str, float] = dataclasses.field(default_factory=dict)
    unread: dict[str, float] = dataclasses.field(default_factory=dict)
    rate: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"


def spread(values: list[float], fmt: Callable[[float], str]) -> str:
    return ", ".join(fmt(v) for v in values)


async def bench_storm(url_for: Callable[[str], str], figures: Figures, folder: Path) -> None:
    """`sync_folder` of N rules into a running host, then until `drain()` returns."""
    for n in STORM_SIZES:
        rules = write_rules(folder / f"storm-{n}", [other_rule(i) for i in range(n)])
        plugin = TimedAutomation()
        async with make_host(url_for(f"storm{n}"), plugin) as host:
            base = plugin.reloads
            started = time.perf_counter()
            await plugin.sync_folder(rules)
            synced = time.perf_counter() - started
            await host.drain(timeout=300)
            figures.storm.append((n, synced, time.perf_counter() - started,
                                  plugin.reloads - base))
        print(f"    {n} rules into a running host: sync_folder {synced:.2f} s, "
              f"drained after {figures.storm[-1][2]:.2f} s, "
              f"{figures.storm[-1][3]} re-installs", flush=True)


async def per_change(host: Host, plugin: TimedAutomation, n: int, value: float) -> float:
    """Mean seconds from `mutate` of the hot gauge until its 10 runs ended."""
    handle = host.entity(KIND)
    started = time.perf_counter()
    for i in range(n):
        target = plugin.handled + 1
        await handle.mutate(HOT, set_value(value + i))
        await plugin.until_handled(target)
    return (time.perf_counter() - started) / n


async def direct_calls(host: Host, plugin: TimedAutomation, n: int) -> float:
    """Mean seconds of `Engine.on_change` called directly (new occurrence each call)."""
    [change] = await host.changes(kind=KIND, entity_id=HOT, newest=True, limit=1)
    assert plugin.inner is not None
    started = time.perf_counter()
    for _ in range(n):
        await plugin.inner(dataclasses.replace(change, change_id=str(uuid.uuid4())))
    return (time.perf_counter() - started) / n


def lookup_cost(host: Host, plugin: TimedAutomation, change: EntityChange,
                n: int = 20_000) -> float:
    index = engine_of(plugin).index
    started = time.perf_counter()
    for _ in range(n):
        index.entity_matches(change)
        if index.by_event:
            index.event_matches(host.derive_triggers(change))
    return (time.perf_counter() - started) / n


async def unread_cost(host: Host, plugin: TimedAutomation, change: EntityChange,
                      n: int = 2_000) -> float:
    assert plugin.inner is not None
    started = time.perf_counter()
    for _ in range(n):
        await plugin.inner(change)
    return (time.perf_counter() - started) / n


async def check_hot_runs(host: Host, last: float, figures: Figures, label: str) -> None:
    """The newest run of every hot rule succeeded and logged the last value."""
    for i in range(HOT_RULES):
        runs = await host.read(list_runs, rule_id=f"hot-{i}", limit=1)
        if not runs or runs[0].status is not RunStatus.SUCCEEDED:
            figures.problems.append(f"{label}: hot-{i}'s newest run is "
                                    f"{runs[0].status if runs else 'missing'}")
            continue
        message = runs[0].trace[-1].get("message")
        if message != f"hot-{i} saw {last}":
            figures.problems.append(f"{label}: hot-{i} logged {message!r}, expected "
                                    f"'hot-{i} saw {last}'")


async def bench_changes(url_for: Callable[[str], str], figures: Figures, folder: Path,
                        many_rules: tuple[Path, list[Rule], float], changes: int,
                        rounds: int) -> None:
    few_url, many_url = url_for("few"), url_for("many")
    many_folder, rules, figures.parse_s = many_rules
    print(f"    storing {MANY_RULES:,} rules ...", end="", flush=True)
    figures.write_s = await store_rules(many_url, rules, origin_of(many_folder))
    print(f" {figures.write_s:.1f} s; starting the hosts ...", end="", flush=True)
    await install(few_url, write_rules(folder / "few",
                                       [hot_rule(i) for i in range(HOT_RULES)]))

    few, many = TimedAutomation(), TimedAutomation()
    async with AsyncExitStack() as stack:
        started = time.perf_counter()
        few_host = await stack.enter_async_context(make_host(few_url, few))
        figures.startup_few_s = time.perf_counter() - started
        started = time.perf_counter()
        many_host = await stack.enter_async_context(make_host(many_url, many))
        figures.startup_many_s = time.perf_counter() - started
        print(f" {figures.startup_many_s:.1f} s", flush=True)
        setups = {"few": (few_host, few), "many": (many_host, many)}
        for name, (_host, plugin) in setups.items():
            if len(engine_of(plugin).rules) != (HOT_RULES if name == "few" else MANY_RULES):
                figures.problems.append(f"{name}: {len(engine_of(plugin).rules)} rules installed")

        # Warm-up: the gauge exists, the runs table has rows, statements are compiled.
        per = max(1, changes // rounds)
        value = 0.0
        for host, plugin in setups.values():
            await per_change(host, plugin, max(5, per // 4), value)
            await direct_calls(host, plugin, 3)
        value = 1000.0
        for name in setups:
            figures.change[name], figures.direct[name] = [], []
        for _ in range(rounds):
            for name, (host, plugin) in setups.items():
                figures.change[name].append(await per_change(host, plugin, per, value))
            value += per
        last = value - 1
        for name, (host, _plugin) in setups.items():
            await check_hot_runs(host, last, figures, name)
        direct_per = max(1, per // 2)
        for _ in range(rounds):
            for name, (host, plugin) in setups.items():
                figures.direct[name].append(await direct_calls(host, plugin, direct_per))
        for name, (host, plugin) in setups.items():
            [change] = await host.changes(kind=KIND, entity_id=HOT, newest=True, limit=1)
            figures.lookup[name] = lookup_cost(host, plugin, change)
            unread = dataclasses.replace(change, id="nobody", change_id=str(uuid.uuid4()))
            figures.unread[name] = await unread_cost(host, plugin, unread)
        for name, (host, _plugin) in setups.items():
            await check_hot_runs(host, last, figures, f"{name} (direct)")


async def burst(host: Host, n: int, value: float) -> None:
    """`n` mutations from CALLERS tasks, each on its own gauges."""
    handle = host.entity(KIND)

    async def caller(k: int, count: int) -> None:
        for i in range(count):
            await handle.mutate(f"c{k}-{i % GAUGES_PER_CALLER}", set_value(value + i))

    async with anyio.create_task_group() as tg:
        for k in range(CALLERS):
            tg.start_soon(caller, k, n // CALLERS + (k < n % CALLERS))


async def bench_rate(url_for: Callable[[str], str], figures: Figures, folder: Path,
                     n: int, rounds: int) -> None:
    await install(url_for("one"), write_rules(folder / "one", [ANY_GAUGE_RULE]))
    whole, alone = TimedAutomation(), TimedAutomation()
    async with make_host(url_for("one"), whole) as whole_host, \
            make_host(url_for("none"), alone) as alone_host:
        if len(engine_of(whole).rules) != 1 or engine_of(alone).rules:
            figures.problems.append("rate: the hosts' rules are not 1 and 0")
        for host in (whole_host, alone_host):  # warm-up: creates every gauge
            await burst(host, CALLERS * GAUGES_PER_CALLER * 2, 0.0)
        await whole.until_handled(CALLERS * GAUGES_PER_CALLER * 2)
        figures.rate = {"whole": [], "alone": []}
        value = 100.0
        for _ in range(rounds):
            started = time.perf_counter()
            await burst(alone_host, n, value)
            figures.rate["alone"].append(n / (time.perf_counter() - started))
            target = whole.handled + n
            started = time.perf_counter()
            await burst(whole_host, n, value)
            await whole.until_handled(target)
            figures.rate["whole"].append(n / (time.perf_counter() - started))
            value += n
        if alone.handled:
            figures.problems.append(f"rate: the host without rules handled {alone.handled}")
        runs = await whole_host.read(list_runs, rule_id="any-gauge", limit=100)
        bad = [r for r in runs if r.status is not RunStatus.SUCCEEDED]
        if len(runs) < 100 or bad:
            figures.problems.append(f"rate: {len(runs)} newest runs read, {len(bad)} not "
                                    f"succeeded ({bad[0].status if bad else ''})")


async def bench_backend(figures: Figures, url_for: Callable[[str], str],
                        many_rules: tuple[Path, list[Rule], float], args: Any) -> None:
    with tempfile.TemporaryDirectory(prefix="rc-bench-rules-") as tmp:
        folder = Path(tmp)
        print(f"  {figures.backend}:", flush=True)
        await bench_storm(url_for, figures, folder)
        await bench_changes(url_for, figures, folder, many_rules, args.changes, args.rounds)
        print(f"    per change: few {spread(figures.change['few'], ms)}; "
              f"many {spread(figures.change['many'], ms)}", flush=True)
        await bench_rate(url_for, figures, folder, args.burst, args.rate_rounds)
        print(f"    changes/s: whole path {spread(figures.rate['whole'], '{:,.0f}'.format)}; "
              f"mutate alone {spread(figures.rate['alone'], '{:,.0f}'.format)}", flush=True)


# -- databases ----------------------------------------------------------------------------

@contextmanager
def sqlite_urls() -> Iterator[Callable[[str], str]]:
    with tempfile.TemporaryDirectory(prefix="rc-bench-") as tmp:
        yield lambda name: f"sqlite:///{tmp}/{name}.db"


@contextmanager
def pg_urls(url: str) -> Iterator[Callable[[str], str]]:
    """Scratch databases `rc_bench_auto_<random>_<name>`, made on demand, all dropped."""
    import psycopg

    admin = make_url(url)
    if admin.drivername == "postgresql":
        admin = admin.set(drivername="postgresql+psycopg")
    admin_raw = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    prefix = f"rc_bench_auto_{uuid.uuid4().hex[:8]}"
    made: dict[str, str] = {}

    def url_for(name: str) -> str:
        if name not in made:
            database = f"{prefix}_{name}"
            with psycopg.connect(admin_raw, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{database}"')
            made[name] = admin.set(database=database).render_as_string(hide_password=False)
        return made[name]

    try:
        yield url_for
    finally:
        with psycopg.connect(admin_raw, autocommit=True) as conn:
            for name in made:
                conn.execute(f'DROP DATABASE IF EXISTS "{prefix}_{name}" WITH (FORCE)')


def pg_version(url: str) -> str:
    import psycopg

    raw = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(raw, connect_timeout=5) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


# -- report -------------------------------------------------------------------------------

def report(all_figures: list[Figures]) -> None:
    for f in all_figures:
        print()
        print(f"== {f.backend}")
        total = f.parse_s + f.write_s + f.startup_many_s
        print(f"0. install {MANY_RULES:,} rules (sync_folder's steps): {total:.1f} s, "
              f"{MANY_RULES / total:,.0f} rules/s = parse {f.parse_s:.1f} s + store (one "
              f"unit) {f.write_s:.1f} s + install at start-up {f.startup_many_s:.1f} s "
              f"(a host with {HOT_RULES} rules starts in {f.startup_few_s:.2f} s)")
        for n, synced, drained, reloads in f.storm:
            print(f"   into a running host, {n} rules: sync_folder {synced:.2f} s, host busy "
                  f"until {drained:.1f} s ({n / drained:,.0f} rules/s), {reloads} "
                  f"re-installs of every rule")
        if len(f.storm) >= 2:
            (n1, _, d1, _), (n2, _, d2, _) = f.storm[0], f.storm[-1]
            per_pair = d2 / (n2 * n2)
            print(f"   ({n1} -> {n2} rules: {d2 / d1:.1f}x the time, {per_pair * 1e6:.0f} µs "
                  f"per rule re-installed per rule written; {MANY_RULES:,} rules would keep "
                  f"a running host busy > {per_pair * MANY_RULES ** 2 / 3600:.0f} h at that "
                  f"rate, ~{f.startup_many_s * MANY_RULES / 3600:.0f} h at the start-up's "
                  f"{f.startup_many_s:.1f} s per re-install of all {MANY_RULES:,})")
        few, many = median(f.change["few"]), median(f.change["many"])
        ratio = many / few
        verdict = "MET" if ratio <= TARGET_RATIO else "MISSED"
        print(f"1. one change of gauge:{HOT}, 10 runs (mutate -> route -> on_change -> "
              f"condition -> log), median of {len(f.change['few'])} rounds:")
        print(f"   {HOT_RULES} rules       {ms(few):>10}   rounds {spread(f.change['few'], ms)}")
        print(f"   {MANY_RULES:,} rules   {ms(many):>10}   rounds "
              f"{spread(f.change['many'], ms)}")
        print(f"   ratio {ratio:.2f}  (target <= {TARGET_RATIO}: {verdict})")
        dfew, dmany = median(f.direct["few"]), median(f.direct["many"])
        print(f"   Engine.on_change alone (10 runs): {ms(dfew)} with {HOT_RULES} rules, "
              f"{ms(dmany)} with {MANY_RULES:,}, ratio {dmany / dfew:.2f}")
        print(f"   index lookup alone: {us(f.lookup['few'])} / {us(f.lookup['many'])}; "
              f"on_change of a change no rule reads: {us(f.unread['few'])} / "
              f"{us(f.unread['many'])}")
        print(f"   so per change: the engine's own work {dfew / few:.0%} / {dmany / many:.0%} "
              f"of the end-to-end figure; per run {ms(few / HOT_RULES)} / "
              f"{ms(many / HOT_RULES)} end to end")
        whole, alone = median(f.rate["whole"]), median(f.rate["alone"])
        print(f"2. changes/s, {CALLERS} callers: whole path (1 rule, 1 condition, log) "
              f"{whole:,.0f}/s; mutate alone (no rules) {alone:,.0f}/s; "
              f"ratio {whole / alone:.2f} (no target)")
        for problem in f.problems:
            print(f"   !! {problem}")


def machine_info(pg: str | None) -> list[str]:
    import sqlalchemy

    return [
        f"python      {platform.python_implementation()} {sys.version.split()[0]} on "
        f"{platform.platform()}",
        f"cpu         {os.cpu_count()} logical CPUs, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"sqlite      {sqlite3.sqlite_version}, sqlalchemy {sqlalchemy.__version__}",
        f"postgresql  {pg or 'not used (--pg URL)'}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--pg", metavar="URL",
                        help=f"also PostgreSQL: a server's URL, e.g. {PG_EXAMPLE}; scratch "
                             "databases are created there and dropped at the end")
    parser.add_argument("--changes", type=int, default=32,
                        help="measured changes per setup in section 1 (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="rounds of section 1, alternating the setups (default %(default)s)")
    parser.add_argument("--burst", type=int, default=160,
                        help="changes per round in section 2 (default %(default)s)")
    parser.add_argument("--rate-rounds", type=int, default=2,
                        help="rounds of section 2 (default %(default)s)")
    args = parser.parse_args(argv)
    logging.getLogger("reactive_core").setLevel(logging.WARNING)
    started = time.perf_counter()
    pg = pg_version(args.pg) if args.pg else None
    print("reactive-core automation benchmark")
    for line in machine_info(pg):
        print("  " + line)
    print()

    results: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="rc-bench-rules-") as tmp:
        hot = [hot_rule(i) for i in range(HOT_RULES)]
        folder = write_rules(Path(tmp) / "many", hot + [
            other_rule(i) for i in range(MANY_RULES - HOT_RULES)])
        print(f"  parsing {MANY_RULES:,} rules ...", end="", flush=True)
        rules, parse_s = parse_folder(folder)
        print(f" {parse_s:.1f} s", flush=True)
        many_rules = (folder, rules, parse_s)
        with sqlite_urls() as url_for:
            results.append(Figures("sqlite"))
            anyio.run(bench_backend, results[-1], url_for, many_rules, args)
        if args.pg:
            with pg_urls(args.pg) as url_for:
                results.append(Figures("postgresql"))
                anyio.run(bench_backend, results[-1], url_for, many_rules, args)
    report(results)
    print(f"\ntotal time {time.perf_counter() - started:.1f} s")
    return 1 if any(f.problems for f in results) else 0


if __name__ == "__main__":
    sys.exit(main())
