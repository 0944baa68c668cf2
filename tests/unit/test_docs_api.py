"""The HTTP API docs stay true: `docs/api.md` is what `scripts/api_reference.py`
generates from the app now, it covers every path, every metric a real scrape exposes is
named in the operations how-to or the reference, and every `curl` of the how-to asks
for a path the API has."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml

from catalog_plugin import CatalogPlugin
from health_plugin import HealthPlugin
from reactive_core import Host
from reactive_core.automation.plugin import AutomationPlugin
from reactive_core.http.plugin import HttpPlugin
from slo_plugin import SloPlugin

ROOT = Path(__file__).resolve().parents[2]
API_DOC = ROOT / "docs" / "api.md"
OPERATE_HOWTO = ROOT / "docs" / "howto" / "operate.md"
REFERENCE = ROOT / "docs" / "reference.md"
SCRIPT = ROOT / "scripts" / "api_reference.py"

_CODE_BLOCK = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_CURL_URL = re.compile(r"http://127\.0\.0\.1:8400(/[^\s'\"?]*)")


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("api_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("api_reference", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return _load_script()


@pytest.fixture(scope="module")
def generated(script: ModuleType) -> tuple[dict[str, Any], str]:
    """The app's OpenAPI document and the page the script makes of it, built once."""
    doc, access = script.openapi_and_access()
    return doc, script.render(doc, access)


def _code_blocks(markdown: str, *languages: str) -> list[str]:
    return [m.group(2) for m in _CODE_BLOCK.finditer(markdown) if m.group(1) in languages]


def _path_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p)
                              for p in parts) + "$")


def test_api_reference_is_what_the_script_generates_now(
        generated: tuple[dict[str, Any], str]) -> None:
    _doc, text = generated
    assert API_DOC.read_text(encoding="utf-8") == text, (
        "docs/api.md is out of date: run `.venv/bin/python scripts/api_reference.py`")


def test_api_reference_covers_every_path_and_method_of_the_openapi_document(
        generated: tuple[dict[str, Any], str]) -> None:
    doc, _text = generated
    page = API_DOC.read_text(encoding="utf-8")
    headings = set(re.findall(r"^### `([A-Z]+ /\S*)`$", page, re.MULTILINE))
    operations = {f"{method.upper()} {path}" for path, item in doc["paths"].items()
                  for method in item}
    assert "GET /api/events" in operations and "POST /api/apply" in operations
    assert operations - headings == set()
    for name in doc["components"]["schemas"]:
        if name not in ("HTTPValidationError", "ValidationError"):
            assert f"### `{name}`" in page, name


def test_access_levels_are_found_by_asking_the_app(
        generated: tuple[dict[str, Any], str]) -> None:
    _doc, text = generated
    rows = dict(re.findall(r"^\| (?:GET|POST) \| \[`(\S+)`\]\(#\S+\) \| [^|]* \| (\w+) \|$",
                           text, re.MULTILINE))
    assert rows["/healthz"] == "public"
    assert rows["/api/changes"] == rows["/metrics"] == rows["/api/health"] == "read"
    assert rows["/api/apply"] == rows["/api/checks/{check_id}/pause"] == "write"
    assert rows["/api/deliveries/{delivery_id}/replay"] == "write"


def test_check_mode_exits_1_when_the_page_differs(
        script: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        generated: tuple[dict[str, Any], str]) -> None:
    _doc, text = generated
    monkeypatch.setattr(script, "generate", lambda: text)
    stale = tmp_path / "api.md"
    stale.write_text(text.replace("## Schemas", "## Schemata"), encoding="utf-8")
    monkeypatch.setattr(script, "OUTPUT", stale)
    assert script.main(["--check"]) == 1
    assert script.main([]) == 0 and stale.read_text(encoding="utf-8") == text
    assert script.main(["--check"]) == 0


def test_every_curl_of_the_operations_howto_asks_for_a_path_the_api_has(
        generated: tuple[dict[str, Any], str]) -> None:
    doc, _text = generated
    patterns = [_path_pattern(path) for path in doc["paths"]]
    howto = OPERATE_HOWTO.read_text(encoding="utf-8")
    commands = [command for block in _code_blocks(howto, "sh", "console")
                for command in block.replace("\\\n", " ").splitlines()
                if command.lstrip("$ ").startswith("curl ")]
    paths = [path for command in commands for path in _CURL_URL.findall(command)]
    assert len(paths) == len(commands), "every curl names a URL on http://127.0.0.1:8400"
    unknown = sorted({p for p in paths if not any(pat.match(p) for pat in patterns)})
    assert unknown == [], f"the how-to curls paths the API does not have: {unknown}"
    # The main resources are all shown.
    for shown in ("/api/health", "/api/objectives", "/api/changes", "/api/events",
                  "/api/rules", "/api/runs", "/api/apply", "/healthz"):
        assert shown in paths, shown
    assert any(p.endswith("/pause") for p in paths)
    assert any(p.endswith("/replay") for p in paths)


def test_the_operations_howto_yaml_blocks_parse() -> None:
    for block in _code_blocks(OPERATE_HOWTO.read_text(encoding="utf-8"), "yaml"):
        assert yaml.safe_load(block), block


@pytest.mark.anyio
async def test_every_metric_a_scrape_exposes_is_named_in_the_howto_or_the_reference(
        sqlite_url: str) -> None:
    async with Host(database_url=sqlite_url, entry_points=False,
                    plugins=[CatalogPlugin, HealthPlugin, SloPlugin, AutomationPlugin,
                             HttpPlugin],
                    config={"run_jobs": False,
                            "plugins": {"health": {"scheduler": False},
                                        "http": {"enabled": True,
                                                 "listen": "127.0.0.1:0"}}}) as host:
        http = host.plugin("http")
        assert isinstance(http, HttpPlugin) and http.url is not None
        async with httpx.AsyncClient(trust_env=False) as client:
            response = await client.get(f"{http.url}/metrics")
    assert response.status_code == 200, response.text
    names = set(re.findall(r"^# TYPE (\S+) ", response.text, re.MULTILINE))
    assert {"reactive_up", "reactive_dead_letters", "reactive_delivery_duration_seconds",
            "reactive_rule_runs", "reactive_systems", "reactive_system_health",
            "reactive_slo_budget_remaining_percent"} <= names
    docs = OPERATE_HOWTO.read_text(encoding="utf-8") + REFERENCE.read_text(encoding="utf-8")
    missing = sorted(n for n in names if not re.search(rf"\b{re.escape(n)}\b", docs))
    assert missing == [], (
        f"metrics named neither in docs/howto/operate.md nor in docs/reference.md: {missing}")
