"""Conditions over the transition log, time conditions, time and interval triggers,
plugin actions, the folder watcher, the run log's size and the wake index."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time
from pathlib import Path

import anyio
import pytest

from automation_support import Clock, running
from reactive_core import EntityChange
from reactive_core.automation import load_rules
from reactive_core.automation.index import RuleIndex
from reactive_core.automation.model import TimeCondition
from reactive_core.automation.scope import time_matches

pytestmark = pytest.mark.anyio


def test_time_windows_wrap_midnight_and_follow_weekdays_and_zones() -> None:
    night = TimeCondition(after=time(22), before=time(6))
    assert time_matches(night, datetime(2026, 11, 2, 23, 30, tzinfo=UTC))
    assert time_matches(night, datetime(2026, 11, 2, 5, 59, tzinfo=UTC))
    assert not time_matches(night, datetime(2026, 11, 2, 6, 0, tzinfo=UTC))
    assert not time_matches(night, datetime(2026, 11, 2, 12, 0, tzinfo=UTC))
    weekend = TimeCondition(weekdays=frozenset({5, 6}))
    assert time_matches(weekend, datetime(2026, 11, 7, 12, tzinfo=UTC))       # Saturday
    assert not time_matches(weekend, datetime(2026, 11, 6, 12, tzinfo=UTC))   # Friday
    berlin = TimeCondition(after=time(9), before=time(17), timezone="Europe/Berlin")
    assert time_matches(berlin, datetime(2026, 11, 2, 8, 30, tzinfo=UTC))     # 09:30 there
    assert not time_matches(berlin, datetime(2026, 11, 2, 16, 30, tzinfo=UTC))


HELD = """
id: held
triggers:
  - entity: "gauge:g9"
conditions:
  - numeric_state: {value: "state.gauge.g1.value", below: 20, for: {minutes: 10}}
  - state: {entity: "gauge:g2", status: down, for: {minutes: 5}}
  - "in_state_for('gauge:g2', 'status') >= 300 and transition_count('gauge:g1', 'value', 60) >= 2"
actions:
  - log: ok
"""


async def test_conditions_with_for_read_the_transition_log(sqlite_url: str,
                                                           tmp_path: Path) -> None:
    clock = Clock()
    async with running(sqlite_url, clock) as world:
        await world.load(HELD, tmp_path)
        await world.set("g1", value=50)
        await world.set("g1", value=10)
        await world.set("g2", status="down")
        await world.later(minutes=6)
        await world.set("g1", value=15)          # still below: the hold goes on
        await world.set("g9", value=1)           # g1 low for 6 min only
        await world.later(minutes=4)
        await world.set("g9", value=2)           # 10 min low, g2 down 10 min
        statuses = [(r.status.value, [c["result"] for c in r.conditions])
                    for r in await world.runs("held")]
        assert statuses == [("not_met", [False]), ("succeeded", [True, True, True])]


TICKS = """
id: ticks
triggers:
  - interval: {minutes: 15}
  - time: {at: "07:30", timezone: UTC, weekdays: [mon]}
actions:
  - log: "{{ trigger.platform }} at {{ trigger.at }}"
"""


async def test_interval_and_time_triggers_fire_on_their_schedule(sqlite_url: str,
                                                                 tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 11, 2, 7, 0, tzinfo=UTC))   # a Monday
    async with running(sqlite_url, clock) as world:
        await world.load(TICKS, tmp_path)
        for _ in range(4):
            await world.later(minutes=15)
        kinds = [r.trigger["platform"] for r in await world.runs("ticks")]
        assert kinds.count("interval") == 4 and kinds.count("time") == 1
        await world.later(days=1)                 # Tuesday: no 07:30 run
        kinds = [r.trigger["platform"] for r in await world.runs("ticks")]
        assert kinds.count("time") == 1


async def test_a_disabled_rule_never_fires(sqlite_url: str, tmp_path: Path) -> None:
    clock = Clock()
    async with running(sqlite_url, clock) as world:
        await world.load(TICKS.replace("id: ticks", "id: ticks\nenabled: false")
                         + "", tmp_path)
        await world.later(hours=2)
        assert await world.runs("ticks") == []


async def test_the_run_log_keeps_the_last_runs_of_each_rule(sqlite_url: str,
                                                            tmp_path: Path) -> None:
    async with running(sqlite_url, Clock(), keep_runs=3) as world:
        await world.load("id: every\ntriggers: [{entity: gauge}]\nactions: [{log: x}]\n",
                         tmp_path)
        for value in range(6):
            await world.set("g1", value=value)
        runs = await world.runs("every")
        assert [r.trigger["next"]["value"] for r in runs] == [3.0, 4.0, 5.0]


def test_the_wake_index_finds_only_the_rules_that_read_the_entity() -> None:
    text = "".join(f"- {{id: r{n}, triggers: [{{entity: 'gauge:g{n}'}}], actions: [{{log: x}}]}}\n"
                   for n in range(1000))
    text += ("- {id: any, triggers: [{entity: gauge}], actions: [{log: x}]}\n"
             "- {id: ev, triggers: [{event: gauge.tripped}], actions: [{log: x}]}\n")
    rules = {r.id: r for r in load_rules(text)}
    index = RuleIndex.build(rules)
    change = EntityChange(change_id=uuid.uuid4(), seq=1, kind="gauge", id="g7", prev=None,
                          next={"value": 1}, delta={"value": 1}, changed_fields=("value",))
    assert sorted(rule.id for rule, _ in index.entity_matches(change)) == ["any", "r7"]
    assert [rule.id for rule, _, _ in index.event_matches(["gauge.tripped"])] == ["ev"]
    assert index.event_matches(["other"]) == []


PAUSE = """
id: pause
triggers:
  - entity: "gauge:maintenance"
    field: status
conditions:
  - "trigger.next.status == 'down'"
actions:
  - health.pause_check: {check_id: "{{ 'db-' ~ 'tcp' }}"}
"""


async def test_a_rule_pauses_a_health_check_through_the_plugin_action(
        sqlite_url: str, tmp_path: Path) -> None:
    from catalog_plugin import CatalogPlugin
    from health_plugin import HealthPlugin, health_service

    async with running(sqlite_url, Clock(), extra=(CatalogPlugin, HealthPlugin)) as world:
        health = health_service(world.host)
        await health.upsert_check("db-tcp", strategy="tcp",
                                  config={"host": "127.0.0.1", "port": 9})
        await world.load(PAUSE, tmp_path)
        await world.set("maintenance", status="down")
        [run] = await world.runs("pause")
        assert run.status.value == "succeeded", run.error
        assert run.trace[0]["result"] == "paused"
        check = await health.get_check("db-tcp")
        assert check is not None and check.paused


async def test_a_bad_plugin_action_parameter_fails_the_run_naming_it(
        sqlite_url: str, tmp_path: Path) -> None:
    from catalog_plugin import CatalogPlugin
    from health_plugin import HealthPlugin

    async with running(sqlite_url, Clock(), extra=(CatalogPlugin, HealthPlugin)) as world:
        await world.load(PAUSE.replace("check_id:", "check:"), tmp_path)
        await world.set("maintenance", status="down")
        [run] = await world.runs("pause")
        assert run.status.value == "failed"
        assert "check_id" in (run.error or "") and "health.pause_check" in (run.error or "")


async def test_the_folder_is_reloaded_when_a_file_changes(sqlite_url: str,
                                                          tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").write_text("id: a\ntriggers: [{entity: gauge}]\nactions: [{log: a}]\n")
    async with running(sqlite_url, Clock(), rules_dir=rules, watch_seconds=0.05) as world:
        engine = world.automation.engine
        assert engine is not None and set(engine.rules) == {"a"}
        (rules / "b.yaml").write_text(
            "id: b\ntriggers: [{entity: gauge}]\nactions: [{log: b}]\n")
        with anyio.fail_after(10):
            while set(engine.rules) != {"a", "b"}:
                await anyio.sleep(0.02)
        (rules / "a.yaml").unlink()
        with anyio.fail_after(10):
            while set(engine.rules) != {"b"}:
                await anyio.sleep(0.02)


def test_plugin_settings_from_the_environment_merge_with_the_callers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from reactive_core import HostConfig

    monkeypatch.setenv("REACTIVE_PLUGIN_SETTINGS",
                       '{"automation": {"watch_seconds": 0.1, "keep_runs": 7}, "x": {"a": 1}}')
    config = HostConfig.load({"plugins": {"automation": {"rules_dir": "/r", "keep_runs": 9}}})
    assert config.plugins == {"automation": {"watch_seconds": 0.1, "keep_runs": 9,
                                             "rules_dir": "/r"}, "x": {"a": 1}}
