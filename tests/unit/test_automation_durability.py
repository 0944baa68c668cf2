"""Holds, delays, waits and windows live in the database: they survive a host restart
and a reload of other rules; a changed rule starts over."""

from __future__ import annotations

from pathlib import Path

import pytest

from automation_support import Clock, running

pytestmark = pytest.mark.anyio

HOLD = """
id: hold
triggers:
  - numeric_state: {entity: "gauge:g1", field: value, below: 20, for: {minutes: 10}}
actions:
  - log: "held {{ trigger.value }}"
"""

WAIT = """
id: waiter
triggers:
  - event: gauge.tripped
    filter: "trigger.id == 'g3'"
actions:
  - delay: {minutes: 2}
  - wait_until:
      condition: {state: {entity: "gauge:g2", status: up}}
  - log: "resumed"
"""

OTHER = """
id: other
triggers:
  - entity: gauge
    id: g9
actions:
  - log: "other %s"
"""


def _write(folder: Path) -> None:
    (folder / "hold.yaml").write_text(HOLD)
    (folder / "wait.yaml").write_text(WAIT)
    (folder / "other.yaml").write_text(OTHER % "one")


async def test_a_hold_and_a_waiting_run_survive_a_restart(sqlite_url: str,
                                                         tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    _write(rules)
    clock = Clock()
    async with running(sqlite_url, clock, rules_dir=rules) as world:
        await world.set("g1", value=50)
        await world.set("g2", status="down")
        await world.set("g1", value=10)                 # hold armed: fires at +10 min
        await world.set("g3", status="down")            # waiter: delay, then wait
        await world.later(minutes=3)
        assert [r.status.value for r in await world.runs("waiter")] == ["waiting"]
        assert await world.runs("hold") == []
    clock.advance(minutes=4)                            # down for a while
    async with running(sqlite_url, clock, rules_dir=rules) as world:
        await world.settle()
        assert await world.runs("hold") == []
        await world.later(minutes=2, seconds=59)
        assert await world.runs("hold") == []
        await world.later(seconds=1)                    # the original deadline
        assert [r.status.value for r in await world.runs("hold")] == ["succeeded"]
        await world.set("g2", status="up")              # the wait resumes where it was
        [run] = await world.runs("waiter")
        assert run.status.value == "succeeded"
        assert [(s["action"], s["outcome"]) for s in run.trace] == [
            ("delay", "waiting"), ("delay", "ok"), ("wait_until", "waiting"),
            ("wait_until", "ok"), ("log", "ok")]


async def test_a_hold_whose_deadline_passed_while_down_fires_at_start_if_still_true(
        sqlite_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "hold.yaml").write_text(HOLD)
    clock = Clock()
    async with running(sqlite_url, clock, rules_dir=rules) as world:
        await world.set("g1", value=50)
        await world.set("g1", value=10)
    clock.advance(hours=1)
    async with running(sqlite_url, clock, rules_dir=rules) as world:
        await world.settle()
        [run] = await world.runs("hold")
        assert run.trace[0]["message"] == "held 10.0"


async def test_a_reload_of_an_unrelated_file_keeps_holds_and_waits(
        sqlite_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    _write(rules)
    clock = Clock()
    async with running(sqlite_url, clock, rules_dir=rules) as world:
        await world.set("g1", value=50)
        await world.set("g2", status="down")
        await world.set("g1", value=10)
        await world.set("g3", status="down")
        await world.later(minutes=3)
        (rules / "other.yaml").write_text(OTHER % "two")
        (rules / "broken.yaml").write_text("id: [unclosed\n")
        report = await world.automation.sync_folder(rules)
        assert report == ["rule other: updated"]
        assert [str(e.path).endswith("broken.yaml") for e in world.automation.load_errors] == [
            True]
        await world.later(minutes=7)
        assert [r.status.value for r in await world.runs("hold")] == ["succeeded"]
        await world.set("g2", status="up")
        assert [r.status.value for r in await world.runs("waiter")] == ["succeeded"]


async def test_a_changed_rule_drops_its_holds_and_runs(sqlite_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    _write(rules)
    clock = Clock()
    async with running(sqlite_url, clock, rules_dir=rules) as world:
        await world.set("g1", value=50)
        await world.set("g2", status="down")
        await world.set("g1", value=10)
        await world.set("g3", status="down")
        await world.later(minutes=3)
        (rules / "hold.yaml").write_text(HOLD.replace("below: 20", "below: 30"))
        (rules / "wait.yaml").write_text(WAIT.replace("resumed", "went on"))
        await world.automation.sync_folder(rules)
        await world.later(minutes=30)
        assert await world.runs("hold") == []
        [run] = await world.runs("waiter")
        assert run.status.value == "cancelled"
        assert "rule changed" in (run.error or "")


async def test_a_broken_file_keeps_its_previous_rules(sqlite_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "hold.yaml").write_text(HOLD)
    async with running(sqlite_url, Clock(), rules_dir=rules) as world:
        (rules / "hold.yaml").write_text(HOLD + "  - bogus: 1\n")
        await world.automation.sync_folder(rules)
        assert set(world.automation.engine.rules) == {"hold"}   # type: ignore[union-attr]
        [error] = world.automation.load_errors
        assert error.line == 7 and "bogus" in str(error)
        (rules / "hold.yaml").unlink()
        await world.automation.sync_folder(rules)
        assert world.automation.engine.rules == {}   # type: ignore[union-attr]
