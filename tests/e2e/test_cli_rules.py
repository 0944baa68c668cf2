"""`reactive serve --rules DIR`: the folder's rules are installed, a changed file is
reloaded while serving, and a broken one is reported with file and line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cli_support import Server, cli_env, wait_until

RULE = """
id: {id}
triggers:
  - entity: catalog-system
actions:
  - log: "system {{{{ trigger.id }}}} changed"
"""


def _rules(url: str, tmp_path: Path, env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "reactive_core", "rules", "--json",
                           "--database-url", url], env=env, cwd=tmp_path, text=True,
                          capture_output=True, timeout=60, check=False)
    assert done.returncode in (0, 1), done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_serve_loads_a_rules_folder_and_reloads_it_when_a_file_changes(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "one.yaml").write_text(RULE.format(id="one"))
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    env = cli_env(REACTIVE_PLUGINS="catalog,automation",
                  REACTIVE_PLUGIN_SETTINGS='{"automation": {"watch_seconds": 0.1}}')
    server = Server([sys.executable, "-m", "reactive_core", "serve", "--no-http",
                     "--database-url", url, "--rules", str(folder)],
                    env=env, cwd=tmp_path, log=tmp_path / "serve.log").start()
    try:
        ids = lambda: [r["rule_id"] for r in _rules(url, tmp_path, env)["rules"]]  # type: ignore[index]  # noqa: E731
        assert ids() == ["one"]
        (folder / "two.yaml").write_text(RULE.format(id="two"))
        wait_until(lambda: ids() == ["one", "two"], timeout=20, what="two.yaml loaded")
        (folder / "two.yaml").write_text("id: two\ntriggers: [{entity: nope}]\nactions: []\n")
        errors = wait_until(lambda: _rules(url, tmp_path, env)["load_errors"], timeout=20,
                            what="the broken file reported")
        assert errors[0]["path"].endswith("two.yaml") and errors[0]["line"]  # type: ignore[index]
        assert ids() == ["one", "two"]        # a broken file keeps its rules
        assert "rule not loaded" in server.logs()
    finally:
        assert server.stop() == 0


def test_serve_refuses_a_rules_path_that_is_not_a_folder(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "reactive_core", "serve", "--no-http",
                           "--database-url", f"sqlite:///{tmp_path / 'db.sqlite'}",
                           "--rules", str(tmp_path / "missing")],
                          env=cli_env(), cwd=tmp_path, text=True, capture_output=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert "not a folder" in done.stderr
