"""The rule loader: YAML files, folders and text become checked rules; every refusal
names the file, the line and what was expected."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import date, time
from pathlib import Path

import pytest

from reactive_core.automation import Rule, RuleError, RuleSet, load_rules, parse_rules
from reactive_core.automation.loader import rule_from_definition
from reactive_core.automation.loader_values import parse_duration
from reactive_core.automation.model import (
    ChooseAction,
    EntityTrigger,
    EventTrigger,
    FieldPath,
    IntervalTrigger,
    LogAction,
    Mode,
    NumericStateCondition,
    NumericStateTrigger,
    PluginAction,
    StateCondition,
    TemplateCondition,
    TimeCondition,
    TimeTrigger,
    WaitUntilAction,
    WebhookAction,
)
from reactive_core.automation.templates import Template

FULL = """\
id: slo-budget-low
description: the budget runs out
mode: queued
max: 5
triggers:
  - entity: slo
    field: budgetRemainingPercent
  - event: healthcheck.system_degraded
    filter: "trigger.system_id == 'api'"
    window: {count: 3, minutes: 60, refire: once, partition_by: "trigger.system_id"}
  - numeric_state: {value: "state.slo['obj-1'].budgetRemainingPercent", below: 20, for: {minutes: 10}}
  - numeric_state: {entity: slo, field: budgetRemainingPercent, below: 20}
  - time: {at: "07:30", timezone: Europe/Berlin, weekdays: [mon, fri]}
  - interval: {minutes: 5}
conditions:
  - numeric_state: {value: "state.slo['obj-1'].budgetRemainingPercent", above: 5, below: 20, for: {minutes: 10}}
  - state: {entity: "health:api", status: degraded, for: {minutes: 5}}
  - time: {after: "22:00", before: "06:00", weekday: [sat, sun], timezone: UTC}
  - template: "{{ trigger.next.status == 'down' }}"
  - "trigger.id != 'ignored'"
  - or: ["true", {not: "false"}]
actions:
  - log: "budget of {{ trigger.id }} is {{ state.slo['obj-1'].budgetRemainingPercent }}"
  - webhook:
      url: "http://hooks.example/budget"
      headers: {X-Rule: "{{ run.id }}"}
      body: {text: "budget {{ trigger.id }}", count: 3}
  - delay: {minutes: 5}
  - wait_until: {condition: "trigger.id", timeout: {minutes: 30}, continue_on_timeout: false}
  - choose:
      - conditions: ["true"]
        sequence: [{stop: "done"}]
    default: [{stop: {reason: failed, error: true}}]
  - health.pause_check: {check_id: "c1"}
"""

SMALL = "id: {id}\ntriggers:\n  - interval: 60\nactions:\n  - log: hi\n"


def as_item(text: str, indent: str = "") -> str:
    """`text` (one rule) as an item of a YAML list."""
    return indent + "- " + text.rstrip("\n").replace("\n", "\n  " + indent) + "\n"


def error_of(text: str, **kwargs: object) -> RuleError:
    with pytest.raises(RuleError) as caught:
        load_rules(text, **kwargs)  # type: ignore[arg-type]
    return caught.value


# -- what loads --------------------------------------------------------------------------

def test_yaml_text_loads_every_part() -> None:
    [rule] = load_rules(FULL)
    assert (rule.id, rule.mode, rule.max, rule.source, rule.line) == (
        "slo-budget-low", Mode.QUEUED, 5, "<text>", 1)
    kinds = [type(t.what) for t in rule.triggers]
    assert kinds == [EntityTrigger, EventTrigger, NumericStateTrigger, NumericStateTrigger,
                     TimeTrigger, IntervalTrigger]
    assert rule.triggers[1].window is not None and rule.triggers[1].window.refire == "once"
    numeric = rule.triggers[2].what
    assert isinstance(numeric, NumericStateTrigger)
    assert numeric.path == FieldPath("slo", "obj-1", "budgetRemainingPercent")
    assert (numeric.below, numeric.hold) == (20.0, 600.0)
    any_slo = rule.triggers[3].what
    assert isinstance(any_slo, NumericStateTrigger) and any_slo.path.id is None
    assert rule.triggers[4].what == TimeTrigger(at=time(7, 30), timezone="Europe/Berlin",
                                               weekdays=frozenset({0, 4}))
    assert rule.triggers[5].what == IntervalTrigger(300.0)
    assert [type(c) for c in rule.conditions][:4] == [
        NumericStateCondition, StateCondition, TimeCondition, TemplateCondition]
    assert isinstance(rule.conditions[1], StateCondition)
    assert rule.conditions[1].ref == ("health", "api")
    assert rule.conditions[1].fields == (("status", "degraded"),)
    assert [type(a) for a in rule.actions] == [LogAction, WebhookAction, type(rule.actions[2]),
                                               WaitUntilAction, ChooseAction, PluginAction]
    webhook = rule.actions[1]
    assert isinstance(webhook, WebhookAction) and webhook.method == "POST"
    assert isinstance(webhook.body["text"], Template) and webhook.body["count"] == 3
    plugin = rule.actions[5]
    assert isinstance(plugin, PluginAction) and plugin.name == "health.pause_check"
    assert rule.actions[0].line == 23


def test_a_folder_of_files_loads_sorted(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(SMALL.format(id="second"))
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "a.yml").write_text(SMALL.format(id="nested"))
    (tmp_path / "a.yaml").write_text(SMALL.format(id="first"))
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.yaml").write_text("not: [valid")
    (tmp_path / ".skipped.yaml").write_text("not: [valid")
    (tmp_path / "notes.txt").write_text("not: [valid")
    rules = load_rules(tmp_path)
    assert [r.id for r in rules] == ["first", "second", "nested"]
    assert rules[0].source == str(tmp_path / "a.yaml")
    assert load_rules(str(tmp_path)) == rules


def test_a_file_may_hold_a_list_or_a_rules_mapping(tmp_path: Path) -> None:
    listed = tmp_path / "listed.yaml"
    listed.write_text(as_item(SMALL.format(id="one")) + as_item(SMALL.format(id="two")))
    assert [r.id for r in load_rules(listed)] == ["one", "two"]
    nested = "rules:\n" + as_item(SMALL.format(id="three"), "  ")
    assert [r.id for r in load_rules(nested)] == ["three"]


def test_one_trigger_may_be_given_as_trigger() -> None:
    [rule] = load_rules("id: a\ntrigger: {event: x.y}\nactions: [{log: hi}]\n")
    assert rule.triggers[0].what == EventTrigger("x.y")


def test_unquoted_clock_times_are_times() -> None:
    # YAML 1.1 reads 22:00 as the number 1320; 07:30 (a leading zero) stays text.
    [rule] = load_rules("id: a\ntriggers:\n  - time: 22:00\n  - time: {at: 07:30}\n"
                        "conditions:\n  - time: {after: 21:15, before: 06:00}\n"
                        "actions: [{log: hi}]\n")
    assert [t.what.at for t in rule.triggers] == [time(22), time(7, 30)]  # type: ignore[union-attr]
    assert rule.conditions[0] == TimeCondition(after=time(21, 15), before=time(6),
                                               line=6)
    assert rule.definition["triggers"] == [{"time": "22:00"}, {"time": {"at": "07:30"}}]


def test_a_time_given_as_minutes_from_another_yaml_reader_is_a_time() -> None:
    rule = rule_from_definition({"id": "a", "triggers": [{"time": 1320}],
                                 "actions": [{"log": "hi"}]})
    assert rule.triggers[0].what == TimeTrigger(at=time(22))


# -- what is refused, and where ------------------------------------------------------------

def test_bad_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text("id: a\ntriggers:\n  - interval: [5\nactions: []\n")
    with pytest.raises(RuleError, match="not valid YAML") as caught:
        load_rules(file)
    assert caught.value.path == str(file)
    assert caught.value.line == 4


def test_unknown_trigger_condition_and_action_name_their_line() -> None:
    trigger = error_of("id: a\ntriggers:\n  - interval: 5\n  - entiti: slo\n"
                       "actions: [{log: hi}]\n")
    assert trigger.detail == ("unknown trigger 'entiti': expected one of entity, event, "
                              "numeric_state, time, interval")
    assert (trigger.line, trigger.rule_id) == (4, "a")
    condition = error_of("id: a\ntriggers: [{interval: 5}]\nconditions:\n"
                         "  - template: 'true'\n  - stat: {entity: 'health:api'}\n"
                         "actions: [{log: hi}]\n")
    assert condition.detail.startswith("unknown condition 'stat': expected one of")
    assert condition.line == 5
    action = error_of("id: a\ntriggers: [{interval: 5}]\nactions:\n  - log: hi\n"
                      "  - lgo: hi\n")
    assert action.detail.startswith("unknown action 'lgo': expected one of log, webhook")
    assert action.line == 5


def test_an_unknown_plugin_action_is_refused_when_actions_are_known() -> None:
    text = "id: a\ntriggers: [{interval: 5}]\nactions:\n  - health.pause_chek: {}\n"
    error = error_of(text, actions=["health.pause_check"])
    assert "unknown action 'health.pause_chek'" in error.detail
    assert "health.pause_check" in error.detail and error.line == 4
    assert load_rules(text)[0].actions[0] == PluginAction("health.pause_chek", {}, line=4)


def test_an_empty_band_names_the_line() -> None:
    error = error_of("id: a\ntriggers:\n  - numeric_state:\n      entity: slo\n"
                     "      field: budgetRemainingPercent\n      above: 20\n      below: 20\n"
                     "actions: [{log: hi}]\n")
    assert error.detail == "above (20) must be less than below (20): the band would be empty"
    assert error.line == 6


@pytest.mark.parametrize(("spec", "message"), [
    ("{entity: slo, field: x}", "expected above and/or below"),
    ("{entity: slo, field: x, above: true}", "above: expected a finite number"),
    ("{entity: slo, field: x, above: .nan}", "above: nan is not a finite number"),
    ("{value: 'state.slo.x.y + 1', below: 3}", "a numeric_state trigger watches one field"),
    ("{value: 'state.slo[trigger.id].y', below: 3}", "watches one field"),
    ("{value: 'state.slo.x.y', entity: slo, field: y, below: 3}", "not both"),
])
def test_numeric_state_triggers_need_bounds_and_one_field(spec: str, message: str) -> None:
    error = error_of(f"id: a\ntriggers:\n  - numeric_state: {spec}\nactions: [{{log: hi}}]\n")
    assert message in error.detail and error.line == 3


def test_a_held_numeric_condition_needs_a_state_path() -> None:
    error = error_of("id: a\ntriggers: [{interval: 5}]\nconditions:\n"
                     "  - numeric_state: {value: 'trigger.value', below: 3, for: 60}\n"
                     "actions: [{log: hi}]\n")
    assert "for needs one field's history" in error.detail and error.line == 4


@pytest.mark.parametrize(("template", "message"), [
    ("'{{ trigger.__class__ }}'", "template reaches attribute '__class__'"),
    ("'{{ trigger.id.upper() }}'", "template calls 'trigger.id.upper'"),
])
def test_bad_templates_in_a_rule_name_the_file_and_line(tmp_path: Path, template: str,
                                                         message: str) -> None:
    file = tmp_path / "rule.yaml"
    file.write_text(f"id: a\ntriggers: [{{interval: 5}}]\nactions:\n  - log: hi\n"
                    f"  - log: {template}\n")
    with pytest.raises(RuleError) as caught:
        load_rules(file)
    assert message in caught.value.detail
    assert (caught.value.path, caught.value.line) == (str(file), 5)


def test_a_template_in_a_literal_block_names_its_own_line() -> None:
    error = error_of("id: a\ntriggers: [{interval: 5}]\nactions:\n  - log: |\n"
                     "      first line\n      {{ x.__class__ }}\n")
    assert error.line == 6


@pytest.mark.parametrize(("text", "line", "message"), [
    ("id: a\ntriggers:\n  - interval: 5\n    every: 1\nactions: [{log: hi}]\n", 4,
     "unknown key 'every' in the interval trigger: expected filter, interval, window"),
    ("id: a\ntriggers: [{interval: 5}]\nactions:\n  - webhook: {url: 'http://x', verb: GET}\n",
     4, "unknown key 'verb' in a webhook action: expected backoff, body"),
    ("id: a\ntriggers: [{event: x, window: {count: 2, hours: 1}}]\nactions: [{log: hi}]\n",
     2, "unknown key 'hours' in window"),
    ("id: a\nwhen: now\ntriggers: [{interval: 5}]\nactions: [{log: hi}]\n", 2,
     "unknown key 'when' in a rule"),
    ("id: a\ntriggers: [{interval: 0.5}]\nactions: [{log: hi}]\n", 2, "expected at least 1"),
    ("id: a\ntriggers: [{time: '24:00'}]\nactions: [{log: hi}]\n", 2, "expected a time of day"),
    ("id: a\ntriggers: [{time: {at: '10:00', timezone: Mars/Olympus}}]\nactions: [{log: hi}]\n",
     2, "unknown time zone 'Mars/Olympus'"),
    ("id: a\ntriggers: [{time: {at: '10:00', weekdays: [mon, funday]}}]\nactions: [{log: hi}]\n",
     2, "unknown weekday 'funday'"),
    ("id: a\ntriggers: [{interval: 5}]\nactions: [{webhook: {url: 'ftp://x'}}]\n", 3,
     "expected an http or https URL"),
    ("id: a\ntriggers: [{interval: 5}]\nactions: [{webhook: {url: 'http://x', timeout: 61}}]\n",
     3, "expected more than 0 and at most 60"),
    ("id: a\ntriggers: [{interval: 5}]\nactions: [{webhook: {url: 'http://x', retries: 11}}]\n",
     3, "expected a whole number from 0 to 10"),
    ("id: a\ntriggers: [{interval: 5}]\nactions: [{webhook: {url: 'http://x', method: GOT}}]\n",
     3, "expected one of GET, POST, PUT, PATCH, DELETE"),
    ("id: a\ntriggers: [{interval: 5}]\nactions: []\n", 3, "expected a non-empty list"),
    ("id: a\nactions: [{log: hi}]\n", 1, "a rule without triggers"),
    ("id: ' a'\ntriggers: [{interval: 5}]\nactions: [{log: hi}]\n", 1,
     "starts or ends with whitespace"),
    ("id: a\nmode: fast\ntriggers: [{interval: 5}]\nactions: [{log: hi}]\n", 2,
     "expected one of single, restart, queued, parallel"),
    ("id: a\nmax: 0\ntriggers: [{interval: 5}]\nactions: [{log: hi}]\n", 2,
     "expected a whole number from 1 to 1000"),
    ("id: a\ntriggers: [{interval: 5}]\nconditions: [{state: {entity: health, status: up}}]\n"
     "actions: [{log: hi}]\n", 3, "expected one entity \"kind:id\""),
    ("id: a\ntriggers: [{interval: 5}]\nconditions: [{time: {after: '10:00', before: '10:00'}}]\n"
     "actions: [{log: hi}]\n", 3, "the window would be empty"),
    ("id: a\ntriggers: [{interval: 5}]\nactions: [{log: {message: hi, level: loud}}]\n", 3,
     "expected one of debug, info, warning, error"),
    ("id: a\ntriggers: [{interval: 5}]\nactions: [{x.y: {on: 1}}]\n", 3,
     "key True is a boolean: expected text keys"),
])
def test_refusals_name_the_line_and_the_expectation(text: str, line: int,
                                                    message: str) -> None:
    error = error_of(text)
    assert message in error.detail
    assert error.line == line and error.path == "<text>"


def test_a_missing_file_named_as_text_says_so() -> None:
    error = error_of("no-such-rules.yaml")
    assert "no file or folder of that name exists" in error.detail


def test_duplicate_ids_across_files_name_the_first(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(SMALL.format(id="same"))
    (tmp_path / "b.yaml").write_text("# a comment\n" + SMALL.format(id="same"))
    with pytest.raises(RuleError) as caught:
        load_rules(tmp_path)
    assert caught.value.detail == (f"rule id 'same' is already defined at "
                                   f"{tmp_path / 'a.yaml'}:1: expected each id once")
    assert (caught.value.path, caught.value.line) == (str(tmp_path / "b.yaml"), 2)


def test_parse_rules_keeps_good_rules_and_reports_bad_ones(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        as_item(SMALL.format(id="good"))
        + "- id: bad\n  triggers: [{entiti: x}]\n  actions: [{log: hi}]\n"
        + as_item(SMALL.format(id="also-good")))
    (tmp_path / "b.yaml").write_text("id: [broken\n")
    (tmp_path / "c.yaml").write_text(SMALL.format(id="third"))
    found = parse_rules(tmp_path)
    assert isinstance(found, RuleSet)
    assert [r.id for r in found.rules] == ["good", "also-good", "third"]
    assert [(e.path, e.line, e.rule_id) for e in found.errors] == [
        (str(tmp_path / "a.yaml"), 7, "bad"), (str(tmp_path / "b.yaml"), 2, None)]
    assert found.files == {
        str(tmp_path / name): hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        for name in ("a.yaml", "b.yaml", "c.yaml")}


# -- definitions and digests ----------------------------------------------------------------

def test_equal_definitions_have_equal_digests() -> None:
    [one] = load_rules(SMALL.format(id="a"))
    [same] = load_rules("# reordered\nactions: [{log: hi}]\nid: a\ntriggers: [{interval: 60}]\n")
    [changed] = load_rules(SMALL.format(id="a").replace("60", "61"))
    assert one.digest == same.digest
    assert one.digest != changed.digest
    assert len(one.digest) == 64


def test_rule_from_definition_round_trips_the_definition() -> None:
    [rule] = load_rules(FULL)
    again = rule_from_definition(rule.definition, source=rule.source, line=rule.line,
                                 actions=["health.pause_check"])
    assert isinstance(again, Rule)
    assert again.definition == rule.definition and again.digest == rule.digest
    assert [t.what for t in again.triggers] == [t.what for t in rule.triggers]
    assert [replace(c, line=None) for c in again.conditions[:4]] == [
        replace(c, line=None) for c in rule.conditions[:4]]


def test_the_definition_is_a_copy_of_plain_data() -> None:
    definition = {"id": "a", "triggers": ({"interval": 60},), "actions": [{"log": "hi"}]}
    rule = rule_from_definition(definition)
    assert rule.definition == {"id": "a", "triggers": [{"interval": 60}],
                               "actions": [{"log": "hi"}]}
    definition["id"] = "changed"
    assert rule.definition["id"] == "a"


def test_values_that_are_not_json_are_refused() -> None:
    with pytest.raises(RuleError, match=r"actions\[0\]\.x\.y\.day: datetime.date\(2024, 5, 1\) "
                                        "is date, not JSON data"):
        rule_from_definition({"id": "a", "triggers": [{"interval": 60}],
                              "actions": [{"x.y": {"day": date(2024, 5, 1)}}]})


def test_yaml_dates_are_kept_as_written() -> None:
    [rule] = load_rules("id: a\ntriggers: [{interval: 60}]\n"
                        "actions: [{x.y: {day: 2024-05-01}}]\n")
    assert rule.definition["actions"] == [{"x.y": {"day": "2024-05-01"}}]


# -- durations ----------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "seconds"), [
    ({"minutes": 5}, 300.0), ({"days": 1, "hours": 2, "minutes": 3, "seconds": 4.5}, 93784.5),
    (30, 30.0), (1.5, 1.5), ("05:00", 300.0), ("01:02:03", 3723.0), ({"seconds": 0}, 0.0),
])
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value, where="delay") == seconds


@pytest.mark.parametrize(("value", "message"), [
    ({}, "nothing given"), ({"mins": 5}, "unknown key 'mins'"),
    ({"minutes": -1}, "expected a non-negative number"), ({"minutes": True}, "non-negative"),
    (-1, "non-negative"), (float("inf"), "non-negative finite"), (True, "received a boolean"),
    ("5 minutes", "received text"), ("1:99", "received text"), ({"days": 400}, "a year"),
])
def test_bad_durations_say_what_is_expected(value: object, message: str) -> None:
    with pytest.raises(RuleError, match=r"^delay: ") as caught:
        parse_duration(value, where="delay")
    assert message in caught.value.detail


def test_durations_in_rules_name_their_line() -> None:
    error = error_of("id: a\ntriggers: [{interval: 5}]\nactions:\n  - delay: {minutes: -1}\n")
    assert error.detail.startswith("actions[0].delay: minutes -1")
    assert error.line == 4
