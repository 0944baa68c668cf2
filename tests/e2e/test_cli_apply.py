"""`reactive apply -f FILE`: idempotent reconcile; bad files name file:line and store nothing."""

from __future__ import annotations

from pathlib import Path

from cli_support import Cli

SYSTEMS = """\
systems:
  - id: web
    name: Web shop
    tags: [frontend]
  - id: api
    name: Orders API
    description: the orders service
dependencies:
  - source: web
    target: api
    impact: critical
"""


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_apply_declares_then_a_second_run_changes_nothing(cli: Cli) -> None:
    config = write(cli.cwd / "catalog.yaml", SYSTEMS)

    first = cli.ok("apply", "-f", config)
    second = cli.ok("apply", "-f", config)

    assert first.splitlines() == [
        "created system web", "created system api", "added dependency web -> api (critical)",
    ]
    assert second == "no changes\n"
    assert [(c["entity_id"], c["changed_fields"]) for c in cli.json("changes")] == [
        ("web", ["metadata", "name", "tags"]),
        ("api", ["description", "metadata", "name", "tags"]),
    ]


def test_apply_reports_what_an_edited_file_changes(cli: Cli) -> None:
    cli.ok("apply", "-f", write(cli.cwd / "catalog.yaml", SYSTEMS))
    edited = SYSTEMS.replace("tags: [frontend]", "tags: [frontend, tier-1]")

    out = cli.ok("apply", "-f", write(cli.cwd / "catalog.yaml", edited))

    assert out.splitlines() == ["updated system web (tags)"]
    last = cli.json("changes", "--limit", "1")
    assert [(c["entity_id"], c["delta"], c["actor"]) for c in last] == [
        ("web", {"tags": ["frontend", "tier-1"]}, {"type": "config", "id": "apply"})]


def test_apply_of_an_invalid_item_exits_2_naming_file_and_line_and_stores_nothing(
    cli: Cli,
) -> None:
    bad = write(cli.cwd / "bad.yaml", SYSTEMS.replace("name: Orders API", "name: ''"))

    result = cli("apply", "-f", bad)

    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {bad}:6: systems[1].name:")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not Path(cli.url.removeprefix("sqlite:///")).exists()  # no database made


def test_apply_of_an_unknown_dependency_rolls_back_the_systems_of_the_same_file(
    cli: Cli,
) -> None:
    bad = write(cli.cwd / "bad.yaml", SYSTEMS.replace("target: api", "target: payments"))

    result = cli("apply", "-f", bad)

    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {bad}:10: dependencies[0]:")
    assert "'payments'" in result.stderr
    assert not Path(cli.url.removeprefix("sqlite:///")).exists()  # made, then removed
    # On a database that exists, the refused file rolls back whole: nothing is kept.
    cli.ok("apply", "-f", write(cli.cwd / "empty.yaml", "systems: []\n"))
    assert cli("apply", "-f", bad).returncode == 2
    assert cli.json("changes") == []
    assert cli.json("transitions") == []


def test_apply_of_malformed_yaml_exits_2_with_the_line(cli: Cli) -> None:
    bad = write(cli.cwd / "bad.yaml", "systems:\n  - id: web\n    name: [unclosed\n")

    result = cli("apply", "-f", bad)

    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {bad}:")
    assert "not valid YAML" in result.stderr


def test_bad_plugin_spec_and_missing_database_are_clear_errors(cli: Cli) -> None:
    missing_module, missing_attr, no_colon_attr, no_database = cli.many(
        ("--plugin", "no_such_module:plugin", "doctor"),
        ("doctor", "--plugin", "e2e_plugins:no_such_plugin"),
        ("--plugin", "e2e_plugins:", "doctor"),
        ("changes",))

    assert missing_module.returncode == 2
    assert missing_module.stderr.startswith(
        "error: --plugin 'no_such_module:plugin': cannot import module 'no_such_module'")
    assert missing_attr.returncode == 2
    assert "has no attribute 'no_such_plugin'" in missing_attr.stderr
    assert no_colon_attr.returncode == 2 and "expected MODULE:ATTR" in no_colon_attr.stderr
    assert no_database.returncode == 2
    assert no_database.stderr.startswith("error: no database at")
    for result in (missing_module, missing_attr, no_colon_attr, no_database):
        assert "Traceback" not in result.stderr


def test_a_refused_apply_leaves_no_database_behind(cli: Cli) -> None:
    database = Path(cli.url.removeprefix("sqlite:///"))
    bad_item = cli.cwd / "bad.yaml"
    bad_item.write_text("systems:\n  - {id: a}\n", encoding="utf-8")
    unknown_edge = cli.cwd / "edge.yaml"
    unknown_edge.write_text("systems:\n  - {id: a, name: A}\ndependencies:\n"
                            "  - {source: a, target: nowhere}\n", encoding="utf-8")
    refused = cli.many(("apply", "-f", str(bad_item)), ("apply", "-f", str(unknown_edge)),
                       ("apply", "-f", str(cli.cwd / "missing.yaml")))
    for result in refused:
        assert result.returncode == 2 and result.stderr.startswith("error: "), result.stderr
    assert "bad.yaml:2: systems[0].name: Field required" in refused[0].stderr
    assert "edge.yaml:4: dependencies[0]" in refused[1].stderr
    assert "missing.yaml" in refused[2].stderr
    assert not database.exists()  # neither validation nor a rolled-back apply made one
