"""`reactive demo`: a self-contained catalog run that prints what happens, then exits."""

from __future__ import annotations

import re
from pathlib import Path

from cli_support import Cli


def test_demo_prints_changes_triggers_transitions_and_deliveries_then_exits(cli: Cli) -> None:
    result = cli("demo", "--seconds", "0", url=None, timeout=30)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout
    assert re.search(r"change  #1 +catalog-system:web  created by user:demo", out)
    assert re.search(r"#5 +catalog-system:api  updated", out)
    assert re.search(r"#7 +catalog-system:cdn  deleted", out)
    for trigger in ("catalog.created", "catalog.updated", "catalog.deleted"):
        assert f"triggers  {trigger}" in out
    assert '"systemId": "cdn", "changedFields"' in out  # tombstone payload has no name
    assert 'tags  ["backend"] → ["backend","tier-1"]' in out  # a transition row
    assert "demo-audit handled #7 catalog-system:cdn (deleted)" in out
    assert "web unchanged: nothing logged, nothing delivered (0 new changes)" in out
    assert "edges   into cdn after catalog-edge-cleanup (delivery 13 done): none" in out
    assert "edges: api → db (critical), web → api (critical)" in out
    assert "changes: 7  transitions: 18  deliveries: 14 (14 done); demo-audit handled 7" in out
    # The default database is a temporary file, gone afterwards; nothing lands in the cwd.
    location = re.search(r"reactive demo on sqlite:///(\S+)", out)
    assert location is not None and not Path(location.group(1)).exists()
    assert not any(cli.cwd.iterdir())


def test_demo_on_a_given_database_leaves_its_history_there(cli: Cli) -> None:
    result = cli("demo", "--seconds", "0", timeout=30)
    assert result.returncode == 0, result.stderr

    changes = cli.json("changes")
    assert [(c["seq"], c["id"]) for c in changes][-1] == (7, "cdn")
    assert changes[-1]["next"] is None
    assert {d["status"] for d in cli.json("deliveries")} == {"done"}
