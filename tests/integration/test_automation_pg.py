"""Two hosts on one PostgreSQL database, one rules folder: each trigger occurrence makes
exactly one run, whichever host recorded the change and whichever host handles it.

Both hosts run (workers, timers, the `automation` work queue) in this process on one
event loop and share nothing but the database and the settable clock, like two
`reactive serve` processes. Changes come from both hosts, some in sequence, some at once.

On PostgreSQL the database's clock (`now()`) decides when a timer is due, whatever
`Host(clock=...)` says (docs/reference.md, timers), so the hosts' clock here is the wall
clock and the hold lasts two real seconds; its length against a settable clock is
checked on SQLite (tests/unit/test_automation_engine.py, test_automation_slo.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from automation_support import Clock, Gauge, World, host_for
from reactive_core import Host
from reactive_core.automation.engine import HOLD_TOPIC
from reactive_core.automation.runs import Run

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]

RULES = {
    "every.yaml": """
id: every-change
mode: parallel
max: 1000
triggers:
  - entity: gauge
actions:
  - log: "{{ trigger.entity_id }} changed"
""",
    "window.yaml": """
id: flapping
mode: parallel
triggers:
  - event: gauge.tripped
    filter: "trigger.id == 't1'"
    window: {count: 2, minutes: 60}
actions:
  - log: "{{ trigger.systemId }} flaps"
""",
    "hold.yaml": """
id: held-low
triggers:
  - numeric_state: {entity: "gauge:h1", field: value, below: 20, for: {seconds: 2}}
actions:
  - log: "h1 low for {{ trigger.for_seconds }} s at {{ trigger.value }}"
""",
    "wait.yaml": """
id: waiter
triggers:
  - event: gauge.tripped
    filter: "trigger.id == 'w1'"
actions:
  - wait_until:
      condition: {state: {entity: "gauge:w2", status: up}}
  - log: "w2 is {{ state.gauge.w2.status }}"
""",
}


class WallClock(Clock):
    """The real time (what the database's clock follows)."""

    def __call__(self) -> datetime:
        return datetime.now(UTC)


RULE_IDS = ("every-change", "flapping", "held-low", "waiter")


async def change(host: Host, gauge_id: str, **fields: Any) -> None:
    """One change of gauge `gauge_id`, written through `host` (nothing is waited for)."""
    def apply(_tx: Any, prev: Gauge | None) -> Gauge:
        return Gauge(**{**(prev.model_dump() if prev else {}), **fields})

    await host.entity("gauge").mutate(gauge_id, apply)


async def _fingerprint(world: World) -> tuple[object, ...]:
    newest = await world.host.changes(newest=True, limit=1)
    runs = await world.runs()
    return (newest[0].seq if newest else 0,
            tuple((r.id, r.status.value, len(r.trace)) for r in runs))


async def settle(*worlds: World) -> None:
    """`World.settle()` on each host in turn until a whole pass changes nothing."""
    last: tuple[object, ...] | None = None
    for _ in range(50):
        for world in worlds:
            await world.settle()
        now = await _fingerprint(worlds[0])
        if now == last:
            return
        last = now
    raise AssertionError("the two hosts never settled")


def _outcomes(run: Run) -> list[tuple[str, str]]:
    return [(step["action"], step["outcome"]) for step in run.trace]


@pytest.fixture
async def cluster(pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[World, World]]:
    """Hosts `node-a` and `node-b` on one fresh database, loading one rules folder."""
    rules = tmp_path / "rules"
    rules.mkdir()
    for name, text in RULES.items():
        (rules / name).write_text(text)
    clock = WallClock()
    async with host_for(pg_url, clock, rules_dir=rules, instance_id="node-a") as host_a, \
            host_for(pg_url, clock, rules_dir=rules, instance_id="node-b") as host_b:
        a, b = World(host_a, clock), World(host_b, clock)
        for world in (a, b):
            assert set(world.automation.engine.rules) == set(RULE_IDS)  # type: ignore[union-attr]
        yield a, b


async def test_thirty_changes_from_two_hosts_make_one_run_each_and_windows_count_once(
        cluster: tuple[World, World]) -> None:
    a, b = cluster
    hosts = [a.host, b.host]
    # In sequence, alternating hosts: four trips of t1 and six values of s1.
    sequence = [("t1", {"status": "down"}), ("t1", {"status": "up"})] * 4 + [
        ("s1", {"value": n}) for n in range(6)]
    for n, (gauge, fields) in enumerate(sequence):
        await change(hosts[n % 2], gauge, **fields)
    # At once, from both hosts: sixteen gauges.
    async with anyio.create_task_group() as group:
        for n in range(16):
            group.start_soon(lambda n=n: change(hosts[n % 2], f"c{n}", value=n))
    await settle(a, b)

    changes = await b.host.changes(kind="gauge")
    assert len(changes) == 30
    runs = await b.runs("every-change")
    assert len(runs) == len(changes)
    occurrences = Counter(r.occurrence for r in runs)
    assert set(occurrences.values()) == {1}
    assert set(occurrences) == {f"{c.change_id}:t0" for c in changes}
    assert {r.status.value for r in runs} == {"succeeded"}
    assert all(_outcomes(r) == [("log", "ok")] for r in runs)

    flaps = await a.runs("flapping")
    assert [r.status.value for r in flaps] == ["succeeded"] * 3   # trips 2, 3 and 4
    assert len({r.occurrence for r in flaps}) == 3
    assert {r.trace[0]["message"] for r in flaps} == {"sys-1 flaps"}
    assert await a.runs("held-low") == await a.runs("waiter") == []


async def test_a_run_waiting_on_one_host_is_woken_by_a_change_on_the_other_once(
        cluster: tuple[World, World]) -> None:
    a, b = cluster
    await change(a.host, "w2", status="down")
    await change(a.host, "w1", status="down")              # w1 trips: the waiter waits
    await settle(a, b)
    [waiting] = await a.runs("waiter")
    assert waiting.status.value == "waiting"
    await change(b.host, "c1", value=1)                    # unrelated: still waiting
    await settle(b, a)
    assert [r.status.value for r in await b.runs("waiter")] == ["waiting"]

    await change(b.host, "w2", status="up")                # on the other host
    await settle(b, a)
    [woken] = await b.runs("waiter")
    assert woken.id == waiting.id and woken.status.value == "succeeded"
    assert _outcomes(woken) == [("wait_until", "waiting"), ("wait_until", "ok"),
                                ("log", "ok")]
    assert woken.trace[-1]["message"] == "w2 is up"
    await change(a.host, "w2", status="down")
    await change(b.host, "w2", status="up")
    await settle(a, b)
    assert [r.status.value for r in await a.runs("waiter")] == ["succeeded"]


async def test_a_hold_armed_through_one_host_fires_once_in_the_cluster(
        cluster: tuple[World, World]) -> None:
    a, b = cluster
    await change(a.host, "h1", value=50)
    await change(b.host, "h1", value=10)                   # into the band: hold armed
    await change(a.host, "h1", value=5)                    # still in it: no new crossing
    await settle(a, b)
    [hold] = [t for t in await a.host.timers.list(limit=1000) if t.topic == HOLD_TOPIC]
    armed = datetime.fromisoformat((hold.payload or {})["armed_at"])
    assert timedelta(seconds=2) <= hold.due_at - armed < timedelta(seconds=2.1)
    assert await a.runs("held-low") == []
    await anyio.sleep(max(0.0, (hold.due_at - a.clock()).total_seconds()) + 0.05)
    await settle(b, a)
    [held] = await a.runs("held-low")
    assert held.status.value == "succeeded"
    assert held.created_at >= hold.due_at
    assert held.trace[0]["message"] == "h1 low for 2.0 s at 5.0"
    await change(b.host, "h1", value=3)                    # in the band all along
    await settle(a, b)
    assert len(await b.runs("held-low")) == 1
