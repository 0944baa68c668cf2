"""The engine on SQLite: edge triggers, holds, windows, modes, waits and the run log."""

from __future__ import annotations

from pathlib import Path

import pytest

from automation_support import Clock, World, running

pytestmark = pytest.mark.anyio

LOW = """
id: low
triggers:
  - numeric_state: {entity: "gauge:g1", field: value, below: 20}
actions:
  - log: "g1 low at {{ trigger.value }}"
"""


async def test_numeric_trigger_fires_once_per_crossing_and_not_at_startup(
        sqlite_url: str, tmp_path: Path) -> None:
    clock = Clock()
    async with running(sqlite_url, clock) as world:
        await world.set("g1", value=10)       # already low before the rule exists
        await world.load(LOW, tmp_path)
        await world.set("g1", value=5)        # still low: no crossing
        assert await world.runs("low") == []
        await world.set("g1", value=50)
        await world.set("g1", value=15)       # crossing
        await world.set("g1", value=12)       # still low
        runs = await world.runs("low")
        assert [r.status.value for r in runs] == ["succeeded"]
        assert runs[0].trace[0]["message"] == "g1 low at 15.0"
        await world.set("g1", value=30)
        await world.set("g1", value=1)        # second crossing
        assert len(await world.runs("low")) == 2


HOLD = """
id: hold
triggers:
  - numeric_state: {entity: "gauge:g1", field: value, below: 20, for: {minutes: 10}}
actions:
  - log: "held"
"""


async def test_a_hold_fires_after_its_time_and_is_cancelled_when_the_value_leaves(
        sqlite_url: str, tmp_path: Path) -> None:
    clock = Clock()
    async with running(sqlite_url, clock) as world:
        await world.set("g1", value=50)
        await world.load(HOLD, tmp_path)
        await world.set("g1", value=10)
        await world.later(minutes=5)
        await world.set("g1", value=40)       # recovers after 5 minutes: cancelled
        await world.later(minutes=30)
        assert await world.runs("hold") == []
        await world.set("g1", value=10)
        await world.later(minutes=9, seconds=59)
        assert await world.runs("hold") == []
        await world.later(seconds=1)
        runs = await world.runs("hold")
        assert [r.status.value for r in runs] == ["succeeded"]
        assert runs[0].trigger["for_seconds"] == 600


WINDOW = """
id: flapping
triggers:
  - event: gauge.tripped
    window: {count: 3, minutes: 60, refire: %s}
actions:
  - log: "{{ trigger.systemId }} flaps"
"""


async def _trip(world: World, gauge: str, system: str) -> None:
    await world.set(gauge, status="down", systemId=system)
    await world.set(gauge, status="up", systemId=system)
    await world.later(minutes=1)


@pytest.mark.parametrize("refire, fired", [("every", [3, 4, 5]), ("once", [3])])
async def test_a_window_lets_the_third_occurrence_through(
        sqlite_url: str, tmp_path: Path, refire: str, fired: list[int]) -> None:
    clock = Clock()
    async with running(sqlite_url, clock) as world:
        await world.load(WINDOW % refire, tmp_path)
        counts = []
        for _ in range(5):
            await _trip(world, "g1", "api")
            counts.append(len(await world.runs("flapping")))
        fired_at = [n for n, (a, b) in enumerate(zip([0, *counts], counts, strict=False), 1)
                    if b > a]
        assert fired_at == fired


async def test_a_window_counts_each_system_apart(sqlite_url: str, tmp_path: Path) -> None:
    clock = Clock()
    async with running(sqlite_url, clock) as world:
        await world.load(WINDOW % "every", tmp_path)
        await _trip(world, "g1", "api")
        await _trip(world, "g2", "db")
        await _trip(world, "g1", "api")
        await _trip(world, "g2", "db")
        assert await world.runs("flapping") == []
        await _trip(world, "g2", "db")
        runs = await world.runs("flapping")
        assert [r.trace[0]["message"] for r in runs] == ["db flaps"]


async def test_a_window_forgets_occurrences_older_than_its_minutes(
        sqlite_url: str, tmp_path: Path) -> None:
    clock = Clock()
    async with running(sqlite_url, clock) as world:
        await world.load(WINDOW % "every", tmp_path)
        await _trip(world, "g1", "api")
        await _trip(world, "g1", "api")
        await world.later(minutes=61)
        await _trip(world, "g1", "api")
        assert await world.runs("flapping") == []


MODES = """
id: slow
mode: %s
max: %d
triggers:
  - entity: gauge
    field: value
actions:
  - log: "start {{ trigger.next.value }}"
  - delay: {minutes: 5}
  - log: "end {{ trigger.next.value }}"
"""


async def _statuses(world: World, rule: str) -> list[tuple[str, object]]:
    return [(r.status.value, r.trigger["next"]["value"]) for r in await world.runs(rule)]


async def test_single_mode_skips_occurrences_while_a_run_is_active(
        sqlite_url: str, tmp_path: Path) -> None:
    async with running(sqlite_url, Clock()) as world:
        await world.load(MODES % ("single", 10), tmp_path)
        await world.set("g1", value=1)
        await world.set("g1", value=2)
        assert await _statuses(world, "slow") == [("waiting", 1.0), ("skipped", 2.0)]
        await world.later(minutes=5)
        assert await _statuses(world, "slow") == [("succeeded", 1.0), ("skipped", 2.0)]


async def test_restart_mode_cancels_the_active_run(sqlite_url: str, tmp_path: Path) -> None:
    async with running(sqlite_url, Clock()) as world:
        await world.load(MODES % ("restart", 10), tmp_path)
        await world.set("g1", value=1)
        await world.later(minutes=2)
        await world.set("g1", value=2)
        await world.later(minutes=5)
        assert await _statuses(world, "slow") == [("cancelled", 1.0), ("succeeded", 2.0)]
        last = (await world.runs("slow"))[-1]
        assert [s.get("message") for s in last.trace if s["action"] == "log"] == [
            "start 2.0", "end 2.0"]


async def test_queued_mode_runs_in_occurrence_order_one_at_a_time(
        sqlite_url: str, tmp_path: Path) -> None:
    async with running(sqlite_url, Clock()) as world:
        await world.load(MODES % ("queued", 2), tmp_path)
        for value in (1, 2, 3, 4):
            await world.set("g1", value=value)
        assert await _statuses(world, "slow") == [
            ("waiting", 1.0), ("queued", 2.0), ("queued", 3.0), ("skipped", 4.0)]
        finished: list[float] = []
        for _ in range(3):
            await world.later(minutes=5)
            finished = [v for s, v in await _statuses(world, "slow") if s == "succeeded"]
        assert finished == [1.0, 2.0, 3.0]
        runs = await world.runs("slow")
        ends = [r.finished_at for r in runs if r.status.value == "succeeded"]
        starts = [r.started_at for r in runs if r.status.value == "succeeded"]
        assert all(e is not None and s is not None and e <= s2
                   for e, s, s2 in zip(ends, starts, starts[1:], strict=False))


async def test_parallel_mode_runs_side_by_side_up_to_max(sqlite_url: str, tmp_path: Path) -> None:
    async with running(sqlite_url, Clock()) as world:
        await world.load(MODES % ("parallel", 2), tmp_path)
        for value in (1, 2, 3):
            await world.set("g1", value=value)
        assert await _statuses(world, "slow") == [
            ("waiting", 1.0), ("waiting", 2.0), ("skipped", 3.0)]
        await world.later(minutes=5)
        assert [s for s, _ in await _statuses(world, "slow")] == [
            "succeeded", "succeeded", "skipped"]


WAIT = """
id: waiter
triggers:
  - event: gauge.tripped
actions:
  - wait_until:
      condition: {state: {entity: "gauge:g2", status: up}}
      timeout: {minutes: 30}
      continue_on_timeout: %s
  - log: "g2 is {{ state.gauge.g2.status }}"
"""


async def test_wait_until_resumes_when_the_entity_it_reads_changes(
        sqlite_url: str, tmp_path: Path) -> None:
    async with running(sqlite_url, Clock()) as world:
        await world.set("g2", status="down")
        await world.load(WAIT % "true", tmp_path)
        await world.set("g1", status="down")
        [run] = await world.runs("waiter")
        assert run.status.value == "waiting"
        await world.set("g3", value=1)            # unrelated: stays waiting
        assert (await world.runs("waiter"))[0].status.value == "waiting"
        await world.later(minutes=3)
        await world.set("g2", status="up")
        [run] = await world.runs("waiter")
        assert run.status.value == "succeeded"
        assert run.trace[-1]["message"] == "g2 is up"


async def test_wait_until_continues_at_once_when_already_true(
        sqlite_url: str, tmp_path: Path) -> None:
    async with running(sqlite_url, Clock()) as world:
        await world.set("g2", status="up")
        await world.load(WAIT % "true", tmp_path)
        await world.set("g1", status="down")
        [run] = await world.runs("waiter")
        assert run.status.value == "succeeded"


@pytest.mark.parametrize("go_on, status, steps", [
    ("true", "succeeded", ["waiting", "timed out, continuing", "ok"]),
    ("false", "stopped", ["waiting", "timed out"])])
async def test_wait_until_timeout(sqlite_url: str, tmp_path: Path, go_on: str, status: str,
                                  steps: list[str]) -> None:
    async with running(sqlite_url, Clock()) as world:
        await world.set("g2", status="down")
        await world.load(WAIT % go_on, tmp_path)
        await world.set("g1", status="down")
        await world.later(minutes=29)
        assert (await world.runs("waiter"))[0].status.value == "waiting"
        await world.later(minutes=1)
        [run] = await world.runs("waiter")
        assert run.status.value == status
        assert [s["outcome"] for s in run.trace] == steps


CHOOSE = """
id: chooser
triggers:
  - entity: gauge
conditions:
  - "trigger.next.value is not none"
actions:
  - choose:
      - conditions: [{numeric_state: {value: "trigger.next.value", above: 100}}]
        actions: [{log: "high"}]
      - conditions: [{numeric_state: {value: "trigger.next.value", below: 10}}]
        actions: [{log: "low"}, {stop: "nothing more"}]
    default: [{log: "normal"}]
  - log: "after"
"""


async def test_choose_stop_and_conditions(sqlite_url: str, tmp_path: Path) -> None:
    async with running(sqlite_url, Clock()) as world:
        await world.load(CHOOSE, tmp_path)
        await world.set("g1", status="down")          # value None: conditions fail
        for value in (500, 5, 50):
            await world.set("g1", value=value)
        runs = await world.runs("chooser")
        assert [r.status.value for r in runs] == ["not_met", "succeeded", "stopped",
                                                   "succeeded"]
        messages = [[s.get("message") for s in r.trace if s["action"] == "log"]
                    for r in runs[1:]]
        assert messages == [["high", "after"], ["low"], ["normal", "after"]]
        assert runs[0].conditions[0]["result"] is False
