"""The operator's side of rules: `reactive apply -f` with a `rules:` section,
`reactive rules`, `reactive rules check DIR`, `reactive runs` and `runs show`."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from automation_support import Clock, running
from reactive_core._cli.main import run as reactive

CONFIG = """
systems:
  - id: api
    name: Orders API
rules:
  - id: api-changed
    triggers:
      - entity: "health:api"
    actions:
      - log: "api is {{ trigger.newStatus }}"
  - id: api-paused
    mode: queued
    triggers:
      - event: healthcheck.system_degraded
    actions:
      - health.pause_check: {check_id: api-http}
"""


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    capsys.readouterr()
    assert reactive([*argv, "--json"]) in (0, 1)
    return json.loads(capsys.readouterr().out)


def test_apply_installs_rules_idempotently_and_refuses_a_bad_one_whole(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    assert reactive(["apply", "-f", str(config), "--database-url", url]) == 0
    out = capsys.readouterr().out
    assert "rule api-changed: created" in out and "rule api-paused: created" in out
    assert reactive(["apply", "-f", str(config), "--database-url", url]) == 0
    assert "rule api-" not in capsys.readouterr().out          # unchanged: nothing to do
    listed = _json(capsys, "rules", "--database-url", url)
    assert [r["rule_id"] for r in listed["rules"]] == ["api-changed", "api-paused"]  # type: ignore[index]
    assert listed["rules"][1]["mode"] == "queued"  # type: ignore[index]

    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.replace("api is", "api was").replace(
        "      - health.pause_check: {check_id: api-http}",
        "      - health.pause_chekc: {check_id: api-http}"))
    assert reactive(["apply", "-f", str(bad), "--database-url", url]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:16" in err and "health.pause_chekc" in err and "health.pause_check" in err
    listed = _json(capsys, "rules", "--database-url", url)
    assert len(listed["rules"]) == 2  # type: ignore[arg-type]


def test_rules_check_validates_a_folder_with_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "good.yaml").write_text(
        "id: ok\ntriggers: [{entity: health}]\nactions: [{log: hi}]\n")
    assert reactive(["rules", "check", str(folder)]) == 0
    assert "1 rule(s) valid, 0 error(s)" in capsys.readouterr().out
    (folder / "bad.yaml").write_text(
        "id: band\ntriggers:\n  - numeric_state: {entity: 'slo:o', field: f,"
        " above: 20, below: 10}\nactions: [{log: hi}]\n")
    (folder / "evil.yaml").write_text(
        "id: evil\ntriggers: [{entity: health}]\nactions:\n  - log: \"{{ ''.__class__ }}\"\n")
    assert reactive(["rules", "check", str(folder)]) == 1
    out = capsys.readouterr().out
    assert f"{folder / 'bad.yaml'}:3" in out and "above" in out
    assert f"{folder / 'evil.yaml'}:4" in out and "__class__" in out


RULE = """
id: watch
triggers:
  - entity: gauge
actions:
  - log: "gauge {{ trigger.id }} is {{ trigger.next.value }}"
  - delay: {minutes: 5}
"""


def test_runs_and_a_runs_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REACTIVE_PLUGINS", "automation")   # the database has no other tables
    url = f"sqlite:///{tmp_path / 'r.db'}"

    async def make_runs() -> None:
        async with running(url, Clock()) as world:
            await world.load(RULE, tmp_path)
            await world.set("g1", value=1)
            await world.later(minutes=5)
            await world.set("g2", value=2)

    anyio.run(make_runs)
    plugin = ["--plugin", "automation_support:Gauges"]
    runs = _json(capsys, "runs", "--database-url", url, *plugin)
    assert [(r["rule_id"], r["status"], r["entity_id"]) for r in runs] == [  # type: ignore[union-attr]
        ("watch", "waiting", "g2"), ("watch", "succeeded", "g1")]
    capsys.readouterr()
    assert reactive(["runs", "watch", "--database-url", url, *plugin]) == 0
    table = capsys.readouterr().out
    assert "succeeded" in table and "waiting" in table
    run_id = str(runs[1]["run_id"])  # type: ignore[index]
    assert reactive(["runs", "show", run_id, "--database-url", url, *plugin]) == 0
    trace = capsys.readouterr().out
    assert f"run {run_id} of rule watch: succeeded" in trace
    assert "actions[0] log: ok" in trace and "gauge g1 is 1.0" in trace
    assert "actions[1] delay: ok" in trace
    assert reactive(["runs", "show", "999", "--database-url", url, *plugin]) == 2


HOLD = """
id: low
triggers:
  - numeric_state: {entity: "gauge:g1", field: value, below: 20, for: {minutes: 10}}
actions:
  - log: low
"""


def test_rules_lists_armed_holds_with_their_deadlines_and_load_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REACTIVE_PLUGINS", "automation")
    url = f"sqlite:///{tmp_path / 'r.db'}"
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "low.yaml").write_text(HOLD)
    (rules / "bad.yaml").write_text("id: bad\ntriggers: [{entity: gauge}]\nactions: []\n")

    async def arm() -> None:
        async with running(url, Clock(), rules_dir=rules) as world:
            await world.set("g1", value=50)
            await world.set("g1", value=10)

    anyio.run(arm)
    plugin = ["--plugin", "automation_support:Gauges"]
    listed = _json(capsys, "rules", "--database-url", url, *plugin)
    assert [r["rule_id"] for r in listed["rules"]] == ["low"]  # type: ignore[index]
    [hold] = listed["holds"]  # type: ignore[index]
    assert hold["rule_id"] == "low" and hold["entity"] == "gauge:g1"
    assert hold["deadline"] == "2026-11-02T12:10:00+00:00"
    [error] = listed["load_errors"]  # type: ignore[index]
    assert error["path"].endswith("bad.yaml") and error["line"] == 3
    assert reactive(["rules", "--database-url", url, *plugin]) == 1
    out = capsys.readouterr().out
    assert "armed holds:" in out and "2026-11-02T12:10:00" in out and "bad.yaml:3" in out


def test_rules_check_refuses_a_kind_no_plugin_defines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "typo.yaml").write_text(
        "id: typo\ntriggers:\n  - entity: heatlh\nactions: [{log: hi}]\n")
    assert reactive(["rules", "check", str(folder)]) == 1
    out = capsys.readouterr().out
    assert f"{folder / 'typo.yaml'}:3" in out and "unknown entity kind 'heatlh'" in out
    assert "health" in out
