"""The rules the automation how-to shows are valid rules, `reactive rules check` prints
what the how-to says it prints, and every public name of `reactive_core.automation`
has a heading in its section of the reference."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import reactive_core.automation
from health_plugin.actions import HealthActions
from reactive_core._cli.main import run as reactive_cli
from reactive_core.automation.loader import parse_rules

ROOT = Path(__file__).resolve().parents[2]
HOWTO = ROOT / "docs" / "howto" / "write-a-rule.md"
REFERENCE = ROOT / "docs" / "reference.md"

_CODE_BLOCK = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_FILE_NAME = re.compile(r"^# rules/(\S+\.yaml)\n")


def _blocks(language: str) -> list[str]:
    text = HOWTO.read_text(encoding="utf-8")
    return [m.group(2) for m in _CODE_BLOCK.finditer(text) if m.group(1) == language]


def _rule_blocks() -> list[str]:
    """The how-to's YAML blocks that are rules: a mapping with `id`, a list of them, or
    a `rules:` list."""
    found = []
    for block in _blocks("yaml"):
        data = yaml.safe_load(block)
        if (isinstance(data, dict) and ("id" in data or "rules" in data)) or (
                isinstance(data, list) and data and all(
                    isinstance(item, dict) and "id" in item for item in data)):
            found.append(block)
    return found


class _Recorder:
    """Stands in for the registry to learn the names of the health plugin's actions."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def add_action(self, name: str, *_args: Any, **_kwargs: Any) -> None:
        self.names.append(name)


def _health_actions() -> list[str]:
    recorder = _Recorder()
    HealthActions(service=None).register(recorder)  # type: ignore[arg-type]
    return recorder.names


def test_the_howto_shows_the_patterns_it_promises() -> None:
    ids = [rule.id for block in _rule_blocks() for rule in parse_rules(block).rules]
    assert {"slo-budget-low", "streak-broken", "flapping", "page-fast-burn",
            "db-maintenance"} <= set(ids)
    assert len(ids) == len(set(ids)), f"a rule id is shown twice: {ids}"


@pytest.mark.parametrize("block", _rule_blocks(),
                         ids=lambda b: str(yaml.safe_load(b).get("id", "rules"))
                         if isinstance(yaml.safe_load(b), dict) else "list")
def test_every_rule_of_the_howto_loads(block: str) -> None:
    found = parse_rules(block, actions=_health_actions())
    assert not found.errors, [str(e) for e in found.errors]
    assert found.rules


def _console(command: str) -> list[str]:
    for block in _blocks("console"):
        if f"$ {command}\n" in block:
            return block.split(f"$ {command}\n", 1)[1].split("$ ", 1)[0].splitlines()
    raise AssertionError(f"no console block of the how-to runs `{command}`")


def test_rules_check_prints_what_the_howto_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    for name in [n for n in os.environ if n.startswith("REACTIVE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/reactive.db"
    assert reactive_cli(["db", "upgrade", "--database-url", url]) == 0
    rules = tmp_path / "rules"
    rules.mkdir()
    named = {}
    for index, block in enumerate(_rule_blocks()):
        match = _FILE_NAME.match(block)
        name = match.group(1) if match else f"more-{index}.yaml"
        named[name] = block
        (rules / name).write_text(block, encoding="utf-8")
    capsys.readouterr()

    assert reactive_cli(["rules", "check", "rules/", "--database-url", url]) == 0
    assert capsys.readouterr().out.splitlines() == _console("reactive rules check rules/")

    # The refusal the how-to shows: the maintenance rule with a misspelt action.
    (rules / "maintenance.yaml").write_text(
        named["maintenance.yaml"].replace("health.pause_check", "health.pause_chek"),
        encoding="utf-8")
    assert reactive_cli(["rules", "check", "rules/", "--database-url", url]) == 1
    shown = [line for block in _blocks("text") for line in block.splitlines()
             if line.startswith("error: ")]
    printed = capsys.readouterr().out.splitlines()
    assert shown and shown[0] in printed, printed


def _section(markdown: str, package: str) -> str:
    text = _FENCE.sub("", markdown)
    match = re.search(rf"^## [^\n]*`{re.escape(package)}`[^\n]*$", text, re.MULTILINE)
    assert match is not None, f"docs/reference.md has no '## ... `{package}`' section"
    following = re.search(r"^## ", text[match.end():], re.MULTILINE)
    return text[match.start(): match.end() + following.start() if following else len(text)]


def test_every_automation_public_name_has_a_heading_in_its_reference_section() -> None:
    section = _section(REFERENCE.read_text(encoding="utf-8"), "reactive_core.automation")
    headed = {name for heading in re.findall(r"^#{3,6}[ \t]+(.+)$", section, re.MULTILINE)
              for name in re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)", heading)}
    missing = sorted(set(reactive_core.automation.__all__) - headed)
    assert not missing, (
        f"the 'reactive_core.automation' section of docs/reference.md has no heading "
        f"naming {missing}: add e.g. '### `{missing[0]}`' there")
