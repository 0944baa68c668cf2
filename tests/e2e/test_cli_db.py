"""`reactive db current` / `reactive db upgrade`, and `serve --no-migrate`, end to end.

A host started with `--no-migrate` on an up-to-date database is tested in
tests/unit/test_migrations.py (migrate=False); here the flag must refuse.
"""

from __future__ import annotations

import json
from pathlib import Path

from cli_support import Cli, table

from fixtures.migration_support import load_release


def _by_component(out: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in out.strip().splitlines())


def test_db_upgrade_brings_a_release_0_1_0_database_up_to_date(health_cli: Cli) -> None:
    load_release(health_cli.url)
    current, as_json, serve, changes = health_cli.many(
        ["db", "current"], ["db", "current", "--json"], ["serve", "--no-migrate"],
        ["changes"])
    assert current.returncode == 1, current.stderr  # behind
    assert sorted(table(current.stdout)[1:]) == [
        ["catalog", "unversioned", "0001", "behind"],
        ["health", "unversioned", "0003", "behind"],
        ["reactive_core", "unversioned", "0002", "behind"]]
    assert {r["component"]: (r["current"], r["unversioned"], r["up_to_date"])
            for r in json.loads(as_json.stdout)} == {
        "reactive_core": (None, True, False), "catalog": (None, True, False),
        "health": (None, True, False)}
    for refused in (serve, changes):  # never migrates: refuses, says what to run
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.splitlines()[-1].startswith(
            "error: the database schema is behind")
        assert "reactive_core at 0001 (head 0002" in refused.stderr
        assert "Run `reactive db upgrade` first" in refused.stderr
        assert "Traceback" not in refused.stderr

    upgraded = _by_component(health_cli.ok("db", "upgrade"))
    stamped = "(stamped first: its tables were made before it had a version history)"
    assert upgraded == {
        "reactive_core": f"0001 → 0002 {stamped}",
        "health": f"0001 → 0003 {stamped}",
        "catalog": "0001 (stamped: its tables were made before it had a version history)"}
    current, again, changes = health_cli.many(["db", "current", "--json"], ["db", "upgrade"],
                                              ["changes"])
    assert {r["component"]: (r["current"], r["up_to_date"])
            for r in json.loads(current.stdout)} == {
        "reactive_core": ("0002", True), "catalog": ("0001", True), "health": ("0003", True)}
    assert _by_component(again.stdout) == {
        "reactive_core": "0002 (up to date)", "catalog": "0001 (up to date)",
        "health": "0003 (up to date)"}
    assert ["catalog-system", "cache"] in [row[2:4] for row in table(changes.stdout)]
    assert current.returncode == again.returncode == changes.returncode == 0


def test_db_upgrade_on_a_new_database_and_current_on_a_missing_one(cli: Cli,
                                                                   tmp_path: Path) -> None:
    missing, upgraded = cli.many(
        ["db", "current", "--database-url", f"sqlite:///{tmp_path}/nothing.db"],
        ["db", "upgrade"])
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: no database at")
    assert not (tmp_path / "nothing.db").exists()

    assert upgraded.returncode == 0, upgraded.stderr
    assert _by_component(upgraded.stdout) == {
        "reactive_core": "none → 0002", "catalog": "none → 0001"}
    assert table(cli.ok("db", "current"))[1:] == [
        ["reactive_core", "0002", "0002", "up to date"],
        ["catalog", "0001", "0001", "up to date"]]
