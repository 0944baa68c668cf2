"""The docs stay complete and true: every public name and hook has a reference entry,
every relative link resolves, and the tutorial and the plugin example actually run."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import reactive_core
from reactive_core import hookspecs

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference.md"
TUTORIAL = DOCS / "tutorial.md"
PLUGIN_HOWTO = DOCS / "howto" / "write-a-plugin.md"
INVENTORY_EXAMPLE = DOCS / "examples" / "inventory.py"

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


def _hook_spec_names() -> list[str]:
    return [
        name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
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


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTIVE_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(cwd), str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


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
        listed = _run([sys.executable, "-m", "reactive_core.cli", command], tmp_path)
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
