"""Schema migrations on SQLite: one Alembic history per component, run at start-up.

The PostgreSQL side is tests/integration/test_migrations_pg.py; the CLI is
tests/e2e/test_cli_db.py.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import anyio
import pytest
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, inspect, text
from sqlalchemy.pool import NullPool

from fixtures.migration_support import (
    check_upgraded_release,
    histories,
    load_release,
    plugins,
    schema_differences,
    snapshot,
    upgraded_host,
)
from reactive_core import ConfigError, Host, RegistryError, hookimpl
from reactive_core._store.migrate import History, _graph, schema_status

pytestmark = pytest.mark.anyio


def _tables(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def _versions(url: str) -> dict[str, str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return {t: conn.execute(text(f"SELECT version_num FROM {t}")).scalar_one()
                    for t in inspect(conn).get_table_names() if t.startswith("alembic_version")}
    finally:
        engine.dispose()


async def test_a_fresh_database_runs_every_revision_and_matches_the_models(
        sqlite_url: str) -> None:
    async with Host(database_url=sqlite_url, plugins=plugins(), entry_points=False,
                    config={"workers": False}):
        pass
    assert _versions(sqlite_url) == {"alembic_version_reactive_core": "0002",
                                     "alembic_version_catalog": "0001",
                                     "alembic_version_health": "0003"}
    assert schema_differences(sqlite_url, histories()) == []


async def test_revision_one_is_the_0_1_0_schema(sqlite_url: str, tmp_path: Path) -> None:
    """Each component's first revision builds exactly what release 0.1.0's create_all did."""
    release_url = f"sqlite:///{tmp_path}/release.db"
    load_release(release_url)
    engine = create_engine(sqlite_url, poolclass=NullPool)
    with engine.begin() as conn:
        for history in histories():
            context = MigrationContext.configure(conn, opts={
                "version_table": history.version_table,
                "fn": lambda heads, _c, h=history: h.script._upgrade_revs(h.base, heads)})
            with Operations.context(context):
                context.run_migrations()
    engine.dispose()

    def schema(url: str) -> dict[str, Any]:
        e = create_engine(url, poolclass=NullPool)
        with e.connect() as conn:
            rows = conn.execute(text(
                "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                "AND name NOT LIKE 'alembic_version%'")).all()
        e.dispose()
        return {name: " ".join(sql.replace('"', "").split()) for name, sql in rows}

    assert schema(sqlite_url) == schema(release_url)


async def test_a_release_0_1_0_database_upgrades_in_place_with_its_data(
        sqlite_url: str) -> None:
    load_release(sqlite_url)
    before = snapshot(sqlite_url)
    await check_upgraded_release(sqlite_url, before)
    assert schema_differences(sqlite_url, histories()) == []


async def test_migrate_false_refuses_a_database_that_is_behind(sqlite_url: str) -> None:
    load_release(sqlite_url)
    with pytest.raises(ConfigError) as refused:
        async with upgraded_host(sqlite_url, migrate=False):
            pytest.fail("a host started on a database that is behind")
    message = str(refused.value)
    assert "reactive_core at 0001 (head 0002" in message
    assert "health at 0001 (head 0003" in message
    assert "catalog at 0001 (head 0001" in message
    assert "run `reactive db upgrade`" in message.lower()
    assert "alembic_version_reactive_core" not in _tables(sqlite_url)  # nothing migrated

    async with upgraded_host(sqlite_url, workers=False):
        pass
    async with upgraded_host(sqlite_url, migrate=False, workers=False) as host:
        status = await host.read(schema_status, histories())
        assert all(s.up_to_date for s in status)


async def test_migrate_false_refuses_an_empty_database(sqlite_url: str) -> None:
    with pytest.raises(ConfigError, match=r"reactive_core at none \(head 0002\)"):
        async with upgraded_host(sqlite_url, migrate=False):
            pass


async def test_a_database_a_newer_release_migrated_is_refused(sqlite_url: str) -> None:
    async with upgraded_host(sqlite_url, workers=False):
        pass
    engine = create_engine(sqlite_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version_health SET version_num = '0099'"))
    engine.dispose()
    for migrate in (True, False):
        with pytest.raises(ConfigError, match=r"ahead of this version of reactive-core: health "
                                              r"at 0099, a revision this version does not know"):
            async with upgraded_host(sqlite_url, workers=False, migrate=migrate):
                pass


async def test_restarting_an_up_to_date_host_changes_nothing(sqlite_url: str) -> None:
    async with upgraded_host(sqlite_url, workers=False):
        pass
    before = _versions(sqlite_url), _tables(sqlite_url)
    async with upgraded_host(sqlite_url, workers=False):
        pass
    assert (_versions(sqlite_url), _tables(sqlite_url)) == before


# -- plugins and their histories ----------------------------------------------------------

def _write_history(root: Path, *revisions: tuple[str, str | None, str]) -> Path:
    """A script directory with one revision file per (revision, down_revision, body)."""
    (root / "versions").mkdir(parents=True)
    for rev, down, body in revisions:
        (root / "versions" / f"r{rev}.py").write_text(
            f"import sqlalchemy as sa\nfrom alembic import op\n\nrevision = {rev!r}\n"
            f"down_revision = {down!r}\n\n\ndef upgrade():\n{body}\n", encoding="utf-8")
    return root


_GADGETS_V1 = ("    op.create_table('gadgets', sa.Column('id', sa.Integer(), "
               "primary_key=True), sa.Column('name', sa.String(50)))")
_GADGETS_V2 = "    op.add_column('gadgets', sa.Column('colour', sa.String(20)))"


def _gadgets(*, colour: bool) -> MetaData:
    md = MetaData()
    Table("gadgets", md, Column("id", Integer, primary_key=True), Column("name", String(50)),
          *([Column("colour", String(20))] if colour else []))
    return md


class GadgetPlugin:
    """A third-party plugin with (or, at first, without) a history of its own."""

    name = "gadgets"

    def __init__(self, metadata: MetaData, migrations: Any = None) -> None:
        self.metadata = metadata
        self.migrations = migrations

    @hookimpl
    def reactive_register(self, registry: Any) -> None:
        if self.migrations is None:
            registry.add_tables(self.metadata)
        else:
            registry.add_tables(self.metadata, migrations=self.migrations)


def _gadget_host(url: str, plugin: GadgetPlugin, **config: Any) -> Host:
    return Host(database_url=url, plugins=[plugin], entry_points=False,
                config={"workers": False, **config})


async def test_a_plugin_adopting_migrations_upgrades_its_create_all_tables_in_place(
        sqlite_url: str, tmp_path: Path) -> None:
    async with _gadget_host(sqlite_url, GadgetPlugin(_gadgets(colour=False))) as host:
        await host.run(lambda tx: tx.execute(text("INSERT INTO gadgets VALUES (1, 'cog')")))
    assert "alembic_version_gadgets" not in _tables(sqlite_url)

    history = _write_history(tmp_path / "gadget_migrations", ("0001", None, _GADGETS_V1),
                             ("0002", "0001", _GADGETS_V2))
    plugin = GadgetPlugin(_gadgets(colour=True), migrations=str(history))
    with pytest.raises(ConfigError, match=r"gadgets at 0001 \(head 0002; its tables were made"):
        async with _gadget_host(sqlite_url, plugin, migrate=False):
            pass
    async with _gadget_host(sqlite_url, plugin) as host:
        rows = await host.read(lambda tx: tx.execute(text("SELECT * FROM gadgets")).all())
        assert [tuple(r) for r in rows] == [(1, "cog", None)]
        hs = [h for h in host.registry.histories if h.component == "gadgets"]
        assert schema_differences(sqlite_url, hs) == []
    assert _versions(sqlite_url)["alembic_version_gadgets"] == "0002"


async def test_a_plugin_without_migrations_gets_its_tables_created(
        sqlite_url: str) -> None:
    async with _gadget_host(sqlite_url, GadgetPlugin(_gadgets(colour=True))) as host:
        assert host.registry.histories == ()
    assert "gadgets" in _tables(sqlite_url)
    assert "alembic_version_gadgets" not in _tables(sqlite_url)


async def test_migrate_false_refuses_missing_tables_of_a_plugin_without_migrations(
        sqlite_url: str) -> None:
    async with Host(database_url=sqlite_url, entry_points=False, config={"workers": False}):
        pass
    with pytest.raises(ConfigError, match="plugin tables gadgets missing"):
        async with _gadget_host(sqlite_url, GadgetPlugin(_gadgets(colour=True)),
                                migrate=False):
            pass


@pytest.mark.parametrize(("location", "expected"), [
    ("no/such/folder", "has no versions/ folder"),
    ("no_such_package_xyz:migrations", "cannot import package 'no_such_package_xyz'"),
    ("catalog_plugin:nothing_here", "has no versions/ folder"),
    (42, "migrations must be a path or 'package:folder', received 42"),
])
def test_add_tables_refuses_a_location_that_is_not_a_history(location: Any,
                                                             expected: str) -> None:
    host = _gadget_host("sqlite:///unused.db", GadgetPlugin(_gadgets(colour=True), location))
    with pytest.raises(RegistryError, match=expected) as refused:
        host.load_plugins()
    assert "plugin 'gadgets'" in str(refused.value)


def test_add_tables_refuses_a_history_with_two_heads(tmp_path: Path) -> None:
    history = _write_history(tmp_path / "forked", ("0001", None, "    pass"),
                             ("0002", "0001", "    pass"), ("0003", "0001", "    pass"))
    host = _gadget_host("sqlite:///unused.db",
                        GadgetPlugin(_gadgets(colour=True), history))
    with pytest.raises(RegistryError, match="have 2 head revisions"):
        host.load_plugins()


def test_heads_read_without_alembic_agree_with_alembic(tmp_path: Path) -> None:
    for history in histories():
        script = history.script
        assert _graph(history.directory) == (
            script.get_heads(), script.get_bases(),
            sorted(rev.revision for rev in script.walk_revisions()))
    # Revision ids that are not literals: Alembic reads them.
    computed = _write_history(tmp_path / "computed", ("0001", None, "    pass"))
    (computed / "versions" / "r0002.py").write_text(
        "revision = '00' + '02'\ndown_revision = '0001'\n\n\ndef upgrade():\n    pass\n",
        encoding="utf-8")
    history = History(component="computed", directory=computed, metadata=MetaData())
    assert _graph(computed) is None
    assert (history.head, history.base) == ("0002", "0001")


def test_the_core_s_name_and_the_version_tables() -> None:
    names = {h.component: h.version_table for h in histories()}
    assert names == {"reactive_core": "alembic_version_reactive_core",
                     "catalog": "alembic_version_catalog",
                     "health": "alembic_version_health"}
    assert next(iter(names)) == "reactive_core"  # the core's history runs first


async def test_hosts_starting_together_on_one_sqlite_file_both_come_up(
        sqlite_url: str) -> None:
    started: list[str] = []

    async def start(i: int) -> None:
        async with Host(database_url=sqlite_url, plugins=plugins(), entry_points=False,
                        config={"workers": False}, instance_id=f"h{i}"):
            started.append(f"h{i}")

    async with anyio.create_task_group() as tg:
        for i in range(2):
            tg.start_soon(functools.partial(start, i))
    assert sorted(started) == ["h0", "h1"]
    assert schema_differences(sqlite_url, histories()) == []
