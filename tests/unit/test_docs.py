"""The docs stay complete and true: every public name and hook has a reference entry,
every relative link resolves, the tutorial, the README's example and the plugin example
actually run, and what the how-tos and the command-line reference show is what the
commands do."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

import catalog_plugin
import health_plugin
import reactive_core
import slo_plugin
from health_plugin import hookspecs as health_hookspecs
from reactive_core import hookspecs
from reactive_core._cli.commands import EXIT_ABANDONED
from reactive_core._cli.main import run as reactive_cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference.md"
TUTORIAL = DOCS / "tutorial.md"
PLUGIN_HOWTO = DOCS / "howto" / "write-a-plugin.md"
INVENTORY_EXAMPLE = DOCS / "examples" / "inventory.py"
HEALTH_HOWTO = DOCS / "howto" / "health-checks.md"
FILE_AGE_EXAMPLE = DOCS / "examples" / "file_age.py"

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_BACKTICKED_NAME = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
_CODE_BLOCK = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def _without_code_blocks(markdown: str) -> str:
    return _FENCE.sub("", markdown)


def _headings(markdown: str) -> list[str]:
    return [m.group(2) for m in _HEADING.finditer(_without_code_blocks(markdown))]


def _code_blocks(markdown: str, language: str) -> list[str]:
    return [m.group(2) for m in _CODE_BLOCK.finditer(markdown) if m.group(1) == language]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(markdown: str) -> set[str]:
    seen: Counter[str] = Counter()
    anchors = set()
    for heading in _headings(markdown):
        slug = _slug(heading)
        anchors.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return anchors


def _reference_names() -> set[str]:
    names = set()
    for heading in _headings(REFERENCE.read_text(encoding="utf-8")):
        names.update(_BACKTICKED_NAME.findall(heading))
    return names


def _section(markdown: str, package: str) -> str:
    """The level-2 section whose heading names `package` in backticks, up to the next one."""
    text = _without_code_blocks(markdown)
    match = re.search(rf"^## [^\n]*`{re.escape(package)}`[^\n]*$", text, re.MULTILINE)
    assert match is not None, f"docs/reference.md has no '## ... `{package}`' section"
    following = re.search(r"^## ", text[match.end():], re.MULTILINE)
    return text[match.start(): match.end() + following.start() if following else len(text)]


def _hook_spec_names(module: object = hookspecs) -> list[str]:
    return [
        name for name, fn in inspect.getmembers(module, inspect.isfunction)
        if getattr(fn, f"{hookspecs.PROJECT}_spec", None) is not None
    ]


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def test_every_public_name_has_a_reference_heading() -> None:
    missing = sorted(set(reactive_core.__all__) - _reference_names())
    assert not missing, (
        f"docs/reference.md has no heading naming {missing}: add e.g. '### `{missing[0]}`'"
    )


def test_every_hook_spec_has_a_reference_heading() -> None:
    specs = _hook_spec_names()
    assert {"reactive_register", "reactive_startup", "reactive_shutdown"} <= set(specs)
    missing = sorted(set(specs) - _reference_names())
    assert not missing, (
        f"docs/reference.md has no heading naming hook {missing}: add e.g. '### `{missing[0]}`'"
    )


@pytest.mark.parametrize("package", [catalog_plugin, health_plugin, slo_plugin],
                         ids=lambda m: m.__name__)
def test_every_plugin_public_name_has_a_heading_in_its_reference_section(package: object) -> None:
    name = package.__name__  # type: ignore[attr-defined]
    section = _section(REFERENCE.read_text(encoding="utf-8"), name)
    headed = {found for heading in _headings(section)
              for found in _BACKTICKED_NAME.findall(heading)}
    missing = sorted(set(package.__all__) - headed)  # type: ignore[attr-defined]
    assert not missing, (
        f"the '{name}' section of docs/reference.md has no heading naming {missing}: "
        f"add e.g. '### `{missing[0]}`' there")


def test_health_plugin_hook_specs_have_a_reference_heading() -> None:
    specs = _hook_spec_names(health_hookspecs)
    assert "reactive_health_strategies" in specs
    missing = sorted(set(specs) - _reference_names())
    assert not missing, f"docs/reference.md has no heading naming hook {missing}"


def test_every_host_config_field_is_in_the_reference_table() -> None:
    text = _without_code_blocks(REFERENCE.read_text(encoding="utf-8"))
    start = text.index("### `HostConfig`")
    section = text[start: text.index("\n#", start + 1)]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE))
    missing = sorted(set(reactive_core.HostConfig.model_fields) - documented)
    assert not missing, f"the HostConfig table of docs/reference.md lacks rows for {missing}"
    unknown = sorted(documented - set(reactive_core.HostConfig.model_fields))
    assert not unknown, f"the HostConfig table of docs/reference.md lists unknown {unknown}"


@pytest.mark.parametrize("page", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files_and_headings(page: Path) -> None:
    broken = []
    for target in _LINK.findall(_without_code_blocks(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:, …
            continue
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            broken.append(f"{target} (no file {linked})")
        elif anchor and linked.suffix == ".md":
            if anchor not in _anchors(linked.read_text(encoding="utf-8")):
                broken.append(f"{target} (no heading with anchor #{anchor})")
    assert not broken, f"{page.relative_to(ROOT)} has broken links: {broken}"


def _run(args: list[str], cwd: Path,
         extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTIVE_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(cwd), str(ROOT / "src"), *filter(None, [(extra or {}).get("PYTHONPATH"),
                                                    os.environ.get("PYTHONPATH")])])
    env.update({k: v for k, v in (extra or {}).items() if k != "PYTHONPATH"})
    return subprocess.run(args, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_tutorial_code_runs_and_prints_what_the_tutorial_shows(tmp_path: Path) -> None:
    text = TUTORIAL.read_text(encoding="utf-8")
    files = {}
    for block in _code_blocks(text, "python"):
        first = block.splitlines()[0]
        assert first.startswith("# ") and first.endswith(".py"), (
            f"every Python block of the tutorial starts with '# <file>.py', not {first!r}")
        files[first[2:]] = block
    assert set(files) == {"counters.py", "run.py"}
    for name, source in files.items():
        (tmp_path / name).write_text(source, encoding="utf-8")

    result = _run([sys.executable, "run.py"], tmp_path)
    assert result.returncode == 0, result.stderr

    shown = next(b for b in _code_blocks(text, "console") if b.startswith("$ python run.py\n"))
    expected = shown.splitlines()[1:]
    # Handlers run concurrently with the script, so compare lines, not their order.
    assert sorted(result.stdout.splitlines()) == sorted(expected)

    for command, header in (("changes", "SEQ"), ("transitions", "TIME"), ("deliveries", "ID")):
        listed = _run([sys.executable, "-m", "reactive_core", command], tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.startswith(header) and "counter" in listed.stdout


def test_plugin_howto_python_blocks_are_excerpts_of_the_example() -> None:
    example = [line.strip() for line in INVENTORY_EXAMPLE.read_text(encoding="utf-8").splitlines()]
    joined = "\n".join(line for line in example if line)
    for block in _code_blocks(PLUGIN_HOWTO.read_text(encoding="utf-8"), "python"):
        excerpt = "\n".join(line.strip() for line in block.splitlines() if line.strip())
        assert excerpt in joined, f"not in docs/examples/inventory.py:\n{block}"


def test_plugin_example_runs(tmp_path: Path) -> None:
    result = _run([sys.executable, str(INVENTORY_EXAMPLE)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "['created item tea', 'created item mug']" in result.stdout
    assert "[]" in result.stdout.splitlines()  # the second apply changes nothing
    assert "bad.yaml:4: items[1]: sku 'cup' is declared twice" in result.stdout
    assert "reorder tea: ['PO-tea-16']" in result.stdout
    assert result.stdout.rstrip().endswith(
        "[('inventory_items', 'entity'), ('inventory_movements', 'declared')] True")


def _named_blocks(markdown: str, language: str, suffix: str) -> dict[str, str]:
    """Code blocks whose first line is `# <name><suffix>...`, by name."""
    named = {}
    for block in _code_blocks(markdown, language):
        match = re.match(rf"# (\S+{re.escape(suffix)})\b", block)
        if match:
            named[match.group(1)] = block
    return named


def test_health_howto_python_blocks_compile_or_are_excerpts_of_the_strategy_example() -> None:
    text = HEALTH_HOWTO.read_text(encoding="utf-8")
    scripts = _named_blocks(text, "python", ".py")
    assert set(scripts) == {"runs.py", "watch_health.py"}
    for name, source in scripts.items():
        compile(source, name, "exec")
    example = [line.strip() for line in FILE_AGE_EXAMPLE.read_text(encoding="utf-8").splitlines()]
    joined = "\n".join(line for line in example if line)
    for block in _code_blocks(text, "python"):
        if block in scripts.values():
            continue
        excerpt = "\n".join(line.strip() for line in block.splitlines() if line.strip())
        assert excerpt in joined, f"not in docs/examples/file_age.py:\n{block}"


def test_health_howto_config_files_apply_as_shown(tmp_path: Path) -> None:
    text = HEALTH_HOWTO.read_text(encoding="utf-8")
    files = _named_blocks(text, "yaml", ".yaml")
    assert set(files) == {"health.yaml", "backups.yaml"}
    for name, source in files.items():
        (tmp_path / name).write_text(source, encoding="utf-8")
    shown = next(b for b in _code_blocks(text, "console")
                 if b.startswith("$ reactive apply -f health.yaml\n"))
    expected = shown.split("$ ")[1].splitlines()[1:]
    cli = [sys.executable, "-m", "reactive_core", "--database-url",
           f"sqlite:///{tmp_path}/reactive.db"]
    with_strategy = ["--plugin", "file_age:FileAgeChecks"]
    env_path = {"PYTHONPATH": str(DOCS / "examples")}

    first = _run([*cli, "apply", "-f", "health.yaml"], tmp_path, env_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == expected
    again = _run([*cli, "apply", "-f", "health.yaml"], tmp_path, env_path)
    assert (again.returncode, again.stdout) == (0, "no changes\n"), again.stderr

    refused = _run([*cli, "apply", "-f", "backups.yaml"], tmp_path, env_path)
    assert refused.returncode == 2
    assert "unknown strategy 'file-age': expected one of http, tcp" in refused.stderr
    backups = _run([*cli, *with_strategy, "apply", "-f", "backups.yaml"], tmp_path, env_path)
    assert backups.returncode == 0, backups.stderr
    assert "created check backups-heartbeat (file-age every 60s)" in backups.stdout

    status = _run([*cli, "status", "--json"], tmp_path, env_path)
    assert status.returncode == 0, status.stderr
    assert [(r["system_id"], r["status"], r["healthy_checks"], r["total_checks"])
            for r in json.loads(status.stdout)] == [
        ("api", "healthy", 1, 1), ("backups", "healthy", 1, 1), ("db", "healthy", 1, 1)]


def test_file_age_example_strategy_judges_how_old_the_file_is(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("file_age_example", FILE_AGE_EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    strategy = module.FileAgeStrategy()
    heartbeat = tmp_path / "done"
    heartbeat.touch()
    config = strategy.config_model(path=str(heartbeat), degraded_after_seconds=60,
                                   unhealthy_after_seconds=120)

    async def run() -> list[str]:
        context = health_plugin.StrategyContext(http=None)  # type: ignore[arg-type]
        statuses = [(await strategy.run(config, context)).status]
        for age in (90, 300):
            os.utime(heartbeat, (time.time() - age, time.time() - age))
            statuses.append((await strategy.run(config, context)).status)
        heartbeat.unlink()
        missing = await strategy.run(config, context)
        assert missing.result["error"].startswith("FileNotFoundError")
        return [*statuses, missing.status]

    assert anyio.run(run) == ["healthy", "degraded", "unhealthy", "unhealthy"]
    with pytest.raises(ValueError, match="must not exceed"):
        strategy.config_model(path="x", degraded_after_seconds=9, unhealthy_after_seconds=1)
    plugin = module.FileAgeChecks()
    assert [s.name for s in plugin.reactive_health_strategies()] == ["file-age"]


# -- the README, the command line and the how-tos, run as shown -------------------------

README = ROOT / "README.md"
POSTGRES_HOWTO = DOCS / "howto" / "postgresql.md"
DELIVERIES_HOWTO = DOCS / "howto" / "operate-deliveries.md"
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}|…) ")


@pytest.fixture
def installed_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process `reactive` runs load the installed catalog and health plugins only."""
    for name in [n for n in os.environ if n.startswith("REACTIVE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("REACTIVE_PLUGINS", "catalog,health")


def test_readme_plugin_example_runs_as_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    (source,) = _code_blocks(README.read_text(encoding="utf-8"), "python")
    monkeypatch.chdir(tmp_path)  # the example uses the default ./reactive.db

    for _ in range(2):
        exec(compile(source, "README.md", "exec"), {"__name__": "__main__"})

    assert capsys.readouterr().out.splitlines() == [
        "counter visits {'n': 1}", "counter visits {'n': 2}"]


def _health_yaml() -> str:
    return _named_blocks(HEALTH_HOWTO.read_text(encoding="utf-8"), "yaml", ".yaml")[
        "health.yaml"]


def _console(markdown: str, command: str) -> list[str]:
    """The lines a console block shows after `$ <command>`, up to the next prompt."""
    for block in _code_blocks(markdown, "console"):
        if f"$ {command}\n" in block:
            return block.split(f"$ {command}\n", 1)[1].split("$ ", 1)[0].splitlines()
    raise AssertionError(f"no console block runs `{command}`")


def test_health_howto_pause_snippet_applies_as_shown(
    tmp_path: Path, installed_plugins: None, capsys: pytest.CaptureFixture[str],
) -> None:
    text = HEALTH_HOWTO.read_text(encoding="utf-8")
    section = text[text.index("## Pause and resume a check"):text.index("## What the triggers")]
    (snippet,) = _code_blocks(section, "yaml")
    original = _health_yaml()
    start = original.index("  - id: db-tcp\n")
    end = original.index("\n\n", start)
    config = tmp_path / "health.yaml"
    url = f"sqlite:///{tmp_path}/reactive.db"
    config.write_text(original, encoding="utf-8")
    assert reactive_cli(["apply", "-f", str(config), "--database-url", url]) == 0
    capsys.readouterr()

    config.write_text(original[:start] + snippet.rstrip("\n") + original[end:], encoding="utf-8")
    assert reactive_cli(["apply", "-f", str(config), "--database-url", url]) == 0

    shown = _console(section, "reactive apply -f health.yaml")
    assert capsys.readouterr().out.splitlines() == shown
    assert reactive_cli(["status", "--json", "--database-url", url]) == 0
    assert [(r["system_id"], r["status"], r["healthy_checks"], r["total_checks"])
            for r in json.loads(capsys.readouterr().out)] == [
        ("api", "healthy", 1, 1), ("db", "healthy", 0, 0)]
    shown_status = _console(section, "reactive status")
    assert [re.split(r"\s{2,}", line)[2:4] for line in shown_status[1:]] == [
        ["healthy", "1/1"], ["healthy", "0/0"]]


def test_health_settings_from_the_environment_reach_the_health_plugin(
    tmp_path: Path, installed_plugins: None, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = HEALTH_HOWTO.read_text(encoding="utf-8")
    section = text[text.index("## Settings"):]
    (command,) = [line for block in _code_blocks(section, "sh") for line in block.splitlines()
                  if line.startswith("REACTIVE_PLUGIN_SETTINGS=")]
    value = command.split("'")[1]
    monkeypatch.setenv("REACTIVE_PLUGIN_SETTINGS", value)

    # What `reactive serve` (and every other command) gives its host: the environment.
    settings = reactive_core.HostConfig.load({"workers": False}).plugin_settings(
        "health", health_plugin.HealthSettings)
    assert settings.model_dump(include=set(json.loads(value)["health"])) == json.loads(
        value)["health"]

    typo = re.search(r"\(`(plugins\.health\.\w+): …`\)", " ".join(section.split()))
    assert typo is not None, "the Settings section shows the error of a misspelt setting"
    monkeypatch.setenv("REACTIVE_PLUGIN_SETTINGS", value.replace(
        "max_concurrency", typo.group(1).rsplit(".", 1)[1]))
    assert reactive_cli(["serve", "--database-url", f"sqlite:///{tmp_path}/r.db"]) == 2
    assert typo.group(1) in capsys.readouterr().err
    # No page may say otherwise.
    for page in _markdown_files():
        prose = " ".join(_without_code_blocks(page.read_text(encoding="utf-8")).split())
        for sentence in re.split(r"(?<=[.;])\s", prose):
            if "REACTIVE_PLUGIN_SETTINGS" in sentence or "HealthSettings" in sentence:
                assert not re.search(r"\b(cannot|can't|can not|not) (be )?(set|read|given)\b|"
                                     r"\bonly (in code|from Python)\b", sentence), (
                    f"{page.name}: {sentence}")


def _documented_serve_exit(reference: str, outcome: str) -> int:
    match = re.search(rf"{outcome}[^*]*status \*\*(\d+)\*\*", " ".join(reference.split()))
    assert match is not None, f"docs/reference.md says no exit status for: {outcome}"
    return int(match.group(1))


def test_serve_with_the_health_howto_config_logs_and_exits_as_the_docs_show(
    tmp_path: Path,
) -> None:
    (tmp_path / "health.yaml").write_text(_health_yaml(), encoding="utf-8")
    applied = _run([sys.executable, "-m", "reactive_core", "apply", "-f", "health.yaml"],
                   tmp_path)
    assert applied.returncode == 0, applied.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTIVE_")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    server = subprocess.Popen([sys.executable, "-m", "reactive_core", "serve"], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, encoding="utf-8")
    try:
        assert server.stdout is not None
        ready = server.stdout.readline()
        time.sleep(1.5)  # each check's first run: at once, plus up to 0.5 s of jitter
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()

    def normal(line: str) -> str:
        return re.sub(r" as \S+$", " as <instance>", _LOG_TIME.sub("<time> ", line))

    logged = [normal(line) for line in err.splitlines()]
    shown = [normal(line) for line in _console(HEALTH_HOWTO.read_text(encoding="utf-8"),
                                                "reactive serve")]
    stopping = [normal(line) for block in _code_blocks(
        DELIVERIES_HOWTO.read_text(encoding="utf-8"), "text")
        for line in block.splitlines() if "reactive_core.cli: " in line]
    assert len(stopping) == 2
    # What the how-to shows at start, nothing while checks run, then what a stop logs.
    assert [*logged[:-2], normal(ready.rstrip("\n"))] == shown
    assert logged[-2:] == stopping
    assert out == ""
    reference = REFERENCE.read_text(encoding="utf-8")
    assert server.returncode == _documented_serve_exit(
        reference, "If nothing had to be cut off") == 0
    assert _documented_serve_exit(reference, "If some work was cut off") == EXIT_ABANDONED


def test_impact_is_documented_as_stored_but_not_acted_on_and_nothing_acts_on_it() -> None:
    # Only the catalog (which stores it) mentions an edge's impact; when another part
    # starts acting on it, the docs below must say what it does.
    src = ROOT / "src"
    users = sorted({path.relative_to(src).parts[0] for path in src.rglob("*.py")
                    if re.search(r"\bimpact\b", path.read_text(encoding="utf-8"))})
    assert users == ["catalog_plugin"]
    reference = " ".join(_without_code_blocks(REFERENCE.read_text(encoding="utf-8")).split())
    assert "**Declared, not acted on yet.**" in reference
    for page in (HEALTH_HOWTO, DOCS / "explanation" / "health.md"):
        assert "nothing acts on it yet" in " ".join(page.read_text(encoding="utf-8").split()) \
            or "not acted on by anything yet" in " ".join(
                page.read_text(encoding="utf-8").split()), page.name


def _listing_fields(reference: str) -> dict[str, list[str]]:
    """The fields docs/reference.md lists for each listing's JSON rows."""
    text = " ".join(reference[reference.index("The fields of each listing:"):].split())
    fields = {}
    for name in ("changes", "transitions", "deliveries", "timers", "status"):
        match = re.search(rf"- `{name}`: (.*?);? - `", text)
        assert match is not None, f"docs/reference.md lists no JSON fields for `{name}`"
        # The field names are the backticked words before any explanation in brackets.
        plain = re.sub(r"\([^()]*(\([^()]*\)[^()]*)*\)", "", match.group(1))
        plain = plain.split(" — ")[0].split("; ")[0]
        fields[name] = re.findall(r"`([a-z_]+)`", plain)
    return fields


def test_reference_lists_the_json_fields_every_listing_prints(
    tmp_path: Path, installed_plugins: None, capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "health.yaml"
    config.write_text(_health_yaml(), encoding="utf-8")
    url = f"sqlite:///{tmp_path}/reactive.db"
    assert reactive_cli(["apply", "-f", str(config), "--database-url", url]) == 0
    capsys.readouterr()
    printed = {}
    for name in ("changes", "transitions", "deliveries", "timers", "status"):
        assert reactive_cli([name, "--json", "--database-url", url]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert rows, name
        printed[name] = list(rows[0])

    documented = _listing_fields(REFERENCE.read_text(encoding="utf-8"))

    assert {name: sorted(fields) for name, fields in documented.items()} == {
        name: sorted(fields) for name, fields in printed.items()}


@pytest.mark.postgres
def test_postgresql_howto_schema_url_and_drop_tables_work_as_shown(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Every installed plugin, as a default install has them: the docs must name the
    # tables of each.
    for name in [n for n in os.environ if n.startswith("REACTIVE_")]:
        monkeypatch.delenv(name)
    import psycopg
    from sqlalchemy.engine import make_url

    howto = POSTGRES_HOWTO.read_text(encoding="utf-8")
    shown_url = re.search(r"REACTIVE_DATABASE_URL='(postgresql://[^']+)'", howto)
    assert shown_url is not None
    shown = make_url(shown_url.group(1))
    schema = shown.query["options"].removeprefix("-csearch_path=")
    conninfo = make_url(pg_url).set(drivername="postgresql").render_as_string(
        hide_password=False)
    url = f"{conninfo}?options={shown_url.group(1).split('?options=')[1]}"
    (drop,) = _code_blocks(howto, "sql")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    config = tmp_path / "health.yaml"
    config.write_text(_health_yaml(), encoding="utf-8")

    assert reactive_cli(["apply", "-f", str(config), "--database-url", url]) == 0
    assert reactive_cli(["status", "--database-url", url]) == 0
    assert "api     Orders API" in capsys.readouterr().out

    def tables(conn: psycopg.Connection[Any]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for table_schema, name in conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"):
            found.setdefault(table_schema, set()).add(name)
        return found

    listed = set(re.findall(r"[a-z_]+", drop.split("IF EXISTS", 1)[1]))
    with psycopg.connect(f"{conninfo}?options=-csearch_path%3D{schema}",
                         autocommit=True) as conn:
        assert tables(conn) == {schema: listed}  # the docs name every table, nothing else
        conn.execute(drop)
        assert tables(conn) == {}
