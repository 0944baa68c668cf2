"""Plugin loading: entry points, allow and deny lists, broken and misspelled plugins, doctor."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table

from plugins_for_tests import CorePlugin
from reactive_core import ConfigError, Host, PluginLoadError, RegistryError, doctor, hookimpl

pytestmark = pytest.mark.anyio

GOOD = '''
from pydantic import BaseModel
from reactive_core import hookimpl

class Note(BaseModel):
    text: str

class Plugin:
    @hookimpl
    def reactive_register(self, registry):
        registry.define_entity("{kind}", state=Note)

plugin = Plugin()
'''


def install_distribution(root: Path, dist: str, entry_points: dict[str, str],
                         modules: dict[str, str]) -> None:
    """Install a real (tiny) distribution into `root`: a dist-info and its modules."""
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[reactive_core]\n{lines}\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv("REACTIVE_PLUGINS", raising=False)
    monkeypatch.delenv("REACTIVE_DISABLE_PLUGINS", raising=False)
    yield root
    for name in [m for m in sys.modules if m.startswith("rc_test_")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def installed_host(url: str) -> Host:
    return Host(database_url=url, entry_points=True, config={"run_jobs": False})


async def test_entry_point_plugins_load_and_allow_deny_lists_apply(
    site: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    install_distribution(site, "rc-test-notes", {"rc_notes": "rc_test_notes:plugin",
                                                 "rc_memos": "rc_test_memos:plugin"},
                         {"rc_test_notes": GOOD.format(kind="note"),
                          "rc_test_memos": GOOD.format(kind="memo")})
    host = installed_host(sqlite_url)
    host.load_plugins()
    assert {"rc_notes", "rc_memos"} <= set(host.plugin_names)
    assert {"note", "memo"} <= set(host.registry.kinds)

    monkeypatch.setenv("REACTIVE_DISABLE_PLUGINS", "rc_memos")
    host = installed_host(sqlite_url)
    host.load_plugins()
    assert "note" in host.registry.kinds and "memo" not in host.registry.kinds

    monkeypatch.delenv("REACTIVE_DISABLE_PLUGINS")
    monkeypatch.setenv("REACTIVE_PLUGINS", "rc_memos")
    host = installed_host(sqlite_url)
    host.load_plugins()
    assert set(host.plugin_names) == {"rc_memos"}

    monkeypatch.setenv("REACTIVE_PLUGINS", "rc_memos, rc_nope")
    with pytest.raises(ConfigError, match="REACTIVE_PLUGINS names rc_nope"):
        installed_host(sqlite_url).load_plugins()


async def test_a_plugin_that_fails_to_import_is_named_and_can_be_disabled(
    site: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    install_distribution(site, "rc-test-broken", {"rc_broken": "rc_test_broken:plugin"},
                         {"rc_test_broken": "import rc_test_does_not_exist\n"})
    with pytest.raises(PluginLoadError) as info:
        async with installed_host(sqlite_url):
            pass
    message = str(info.value)
    assert "'rc_broken'" in message and "rc_test_does_not_exist" in message
    assert "REACTIVE_DISABLE_PLUGINS=rc_broken" in message
    monkeypatch.setenv("REACTIVE_DISABLE_PLUGINS", "rc_broken")
    async with installed_host(sqlite_url) as host:
        assert "rc_broken" not in host.plugin_names


async def test_a_misspelled_hook_fails_at_load(sqlite_url: str) -> None:
    class Typo:
        name = "typo"

        @hookimpl
        def reactive_regster(self, registry):  # type: ignore[no-untyped-def]
            pass

    with pytest.raises(PluginLoadError, match=r"'typo' is invalid.*reactive_regster"):
        Host(database_url=sqlite_url, plugins=[Typo()], entry_points=False).load_plugins()


async def test_errors_in_register_name_the_plugin(sqlite_url: str) -> None:
    class Crashes:
        name = "crashes"

        @hookimpl
        def reactive_register(self, registry):  # type: ignore[no-untyped-def]
            raise KeyError("missing setting")

    class Invalid:
        name = "invalid"

        @hookimpl
        def reactive_register(self, registry):  # type: ignore[no-untyped-def]
            registry.define_entity("", state=None)

    with pytest.raises(PluginLoadError, match="'crashes' failed in reactive_register: KeyError"):
        Host(database_url=sqlite_url, plugins=[Crashes()], entry_points=False).load_plugins()
    with pytest.raises(RegistryError, match="plugin 'invalid': define_entity"):
        Host(database_url=sqlite_url, plugins=[Invalid()], entry_points=False).load_plugins()


async def test_startup_and_shutdown_hooks_run_and_may_be_async(sqlite_url: str) -> None:
    calls: list[str] = []

    class Lifecycle:
        name = "lifecycle"

        @hookimpl
        def reactive_startup(self, host):  # type: ignore[no-untyped-def]
            async def start() -> None:
                calls.append(f"start:{'counter' in host.registry.kinds}")
            return start()

        @hookimpl
        def reactive_shutdown(self, host):  # type: ignore[no-untyped-def]
            calls.append("stop")

    async with Host(database_url=sqlite_url, plugins=[CorePlugin(), Lifecycle()],
                    entry_points=False, config={"run_jobs": False}):
        assert calls == ["start:True"]
    assert calls == ["start:True", "stop"]


async def test_doctor_lists_undeclared_plugin_tables(sqlite_url: str) -> None:
    md = MetaData()
    Table("rc_samples", md, Column("id", Integer, primary_key=True))
    Table("rc_secrets", md, Column("id", Integer, primary_key=True))

    class Samples:
        name = "samples"

        @hookimpl
        def reactive_register(self, registry):  # type: ignore[no-untyped-def]
            registry.add_tables(md)
            registry.declare_non_reactive_state("rc_secrets", "sensitive", "API tokens")
            registry.declare_non_reactive_state("rc_gone", "bookkeeping", "left behind")

    async with Host(database_url=sqlite_url, plugins=[CorePlugin(), Samples()],
                    entry_points=False, config={"run_jobs": False}) as host:
        report = await doctor(host)
    status = {t.table: (t.status, t.plugin) for t in report.tables}
    assert status == {
        "test_widgets": ("entity", "core-test"),
        "rc_samples": ("undeclared", "samples"),
        "rc_secrets": ("declared", "samples"),
    }
    assert [t.table for t in report.undeclared] == ["rc_samples"]
    assert report.stale_declarations == ("rc_gone",)
    assert not report.ok


async def test_bad_host_config_is_a_clear_error(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"lease_seconds: .*greater than 0 \(received -1\)"):
        Host(database_url=sqlite_url, config={"lease_seconds": -1})
    with pytest.raises(ConfigError, match="leese_seconds"):
        Host(database_url=sqlite_url, config={"leese_seconds": 3})
    with pytest.raises(ConfigError, match="expected sqlite or postgresql"):
        Host(database_url="mysql://x@localhost/db")
    monkeypatch.setenv("REACTIVE_POLL_INTERVAL", "soon")
    with pytest.raises(ConfigError, match="poll_interval"):
        Host(database_url=sqlite_url)


async def test_doctor_flags_a_stale_route_with_a_backlog(sqlite_url: str) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import update

    from plugins_for_tests import SubscriberPlugin, increment
    from reactive_core import WorkQueue
    from reactive_core._store.schema import work_queue_routes

    async def handler(change):  # type: ignore[no-untyped-def]
        pass

    async with Host(database_url=sqlite_url, plugins=[
            CorePlugin(), SubscriberPlugin("counter", handler, WorkQueue("gone"))],
            entry_points=False, config={"run_jobs": False}):
        pass
    async with Host(database_url=sqlite_url, plugins=[CorePlugin()], entry_points=False,
                    config={"run_jobs": False}) as host:
        await host.entity("counter").mutate("a", increment)
        assert (await doctor(host)).ok
        await host.run(lambda tx: tx.execute(update(work_queue_routes).values(
            last_seen_at=datetime(2020, 1, 1, tzinfo=UTC))))
        report = await doctor(host)
    (route,) = report.routes
    assert (route.group, route.kind, route.pending, route.stale) == ("gone", "counter", 1, True)
    assert not report.ok


async def test_plugin_settings_from_the_environment(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REACTIVE_PLUGIN_SETTINGS", '{"health": {"max_concurrency": 3}}')
    assert Host(database_url=sqlite_url).config.plugins == {"health": {"max_concurrency": 3}}
    # The caller's settings merge into the environment's, plugin by plugin, theirs winning.
    assert Host(database_url=sqlite_url, config={"plugins": {}}).config.plugins == {
        "health": {"max_concurrency": 3}}
    assert Host(database_url=sqlite_url, config={"plugins": {"health": {
        "max_concurrency": 5, "scheduler": False}}}).config.plugins == {
        "health": {"max_concurrency": 5, "scheduler": False}}
    monkeypatch.setenv("REACTIVE_PLUGIN_SETTINGS", "{health: 3}")
    with pytest.raises(ConfigError, match="REACTIVE_PLUGIN_SETTINGS is not valid JSON"):
        Host(database_url=sqlite_url)
