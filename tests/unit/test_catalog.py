"""The catalog plugin on a real SQLite database: systems, edges, triggers, config files."""

from __future__ import annotations

import importlib.metadata
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, select

import catalog_plugin
from catalog_plugin import (
    CATALOG_KIND,
    Catalog,
    CatalogPlugin,
    CatalogSystem,
    Dependency,
    Impact,
    InvalidDependency,
    UnknownSystem,
    catalog_change_payload,
    derive_catalog_triggers,
)
from catalog_plugin.schema import catalog_dependencies
from plugins_for_tests import run_twice_on_sqlite
from reactive_core import (
    CONFIG_ACTOR,
    Actor,
    ConfigError,
    Host,
    InvalidEntityState,
    apply_config_text,
    doctor,
)

pytestmark = pytest.mark.anyio

HOST_CONFIG = {"poll_interval": 0.05, "retry_base_seconds": 0.01}


def make_host(url: str) -> Host:
    return Host(database_url=url, plugins=[CatalogPlugin], entry_points=False, config=HOST_CONFIG)


@pytest.fixture
async def host(sqlite_url: str, anyio_backend: str) -> AsyncIterator[Host]:
    async with make_host(sqlite_url) as running:
        yield running


@pytest.fixture
def catalog(host: Host) -> Catalog:
    return Catalog(host)


def dep(source: str, target: str, impact: Impact = Impact.DEGRADED) -> Dependency:
    return Dependency(source_system_id=source, target_system_id=target, impact=impact)


async def three_tier(catalog: Catalog) -> None:
    """web -> api -> db, and web -> db."""
    for system_id in ("api", "db", "web"):
        await catalog.upsert_system(system_id, name=system_id.upper())
    await catalog.add_dependency("web", "api", "critical")
    await catalog.add_dependency("web", "db")
    await catalog.add_dependency("api", "db", Impact.INFORMATIONAL)


# -- package surface ------------------------------------------------------------------


def test_public_names_are_pinned_and_sorted() -> None:
    assert catalog_plugin.__all__ == sorted(catalog_plugin.__all__)
    assert set(catalog_plugin.__all__) == {
        "CATALOG_CREATED", "CATALOG_DELETED", "CATALOG_KIND", "CATALOG_UPDATED", "Catalog",
        "CatalogError", "CatalogPlugin", "CatalogSystem", "Dependency",
        "DependencyDeclaration", "DependencyWrite", "EDGE_CLEANUP_GROUP", "Impact",
        "InvalidDependency", "SystemDeclaration", "SystemWrite", "UnknownSystem",
        "catalog_change_payload", "catalog_of", "derive_catalog_triggers",
    }
    assert CATALOG_KIND == "catalog-system"
    assert [i.value for i in Impact] == ["informational", "degraded", "critical"]


def test_catalog_entry_point_loads_the_plugin_object() -> None:
    (entry_point,) = importlib.metadata.entry_points(group="reactive_core", name="catalog")
    assert entry_point.load() is CatalogPlugin


# -- systems --------------------------------------------------------------------------


async def test_upsert_creates_a_system_and_logs_one_create_change(
    host: Host, catalog: Catalog
) -> None:
    state = await catalog.upsert_system(
        "api", name="API", metadata={"team": "core"}, tags=("prod", "edge"),
        actor=Actor("user", "u1"), reason="onboarding",
    )

    assert state == CatalogSystem(name="API", metadata={"team": "core"}, tags=["prod", "edge"])
    assert await catalog.get_system("api") == state
    (change,) = await host.changes(kind=CATALOG_KIND)
    assert change.id == "api"
    assert change.prev is None
    assert change.next == {"name": "API", "description": None, "metadata": {"team": "core"},
                           "tags": ["prod", "edge"]}
    # description is None on the new side and absent on the old: not a change (SPEC §1.4).
    assert change.changed_fields == ("metadata", "name", "tags")
    assert change.delta == {"name": "API", "metadata": {"team": "core"}, "tags": ["prod", "edge"]}
    assert change.actor == Actor("user", "u1")
    assert change.reason == "onboarding"


async def test_upsert_changing_tags_logs_an_update_of_tags_only(
    host: Host, catalog: Catalog
) -> None:
    await catalog.upsert_system("api", name="API", description="public API", tags=["prod"])
    await catalog.upsert_system("api", name="API", description="public API",
                                tags=["prod", "tier-1"])

    create, update = await host.changes(kind=CATALOG_KIND)
    assert update.seq > create.seq
    assert update.changed_fields == ("tags",)
    assert update.delta == {"tags": ["prod", "tier-1"]}
    assert update.prev == {"name": "API", "description": "public API", "metadata": {},
                           "tags": ["prod"]}
    assert update.next == {"name": "API", "description": "public API", "metadata": {},
                           "tags": ["prod", "tier-1"]}


async def test_upsert_with_an_identical_state_logs_nothing(host: Host, catalog: Catalog) -> None:
    first = await catalog.upsert_system("api", name="API", metadata={"a": 1}, tags=["x"])
    again = await catalog.upsert_system("api", name="API", metadata={"a": 1}, tags=["x"])

    assert again == first
    assert len(await host.changes(kind=CATALOG_KIND)) == 1
    assert len(await host.deliveries(group=catalog_plugin.EDGE_CLEANUP_GROUP)) == 1


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "API", "tags": "prod"}, "tags"),
])
async def test_upsert_rejects_an_invalid_state_and_stores_nothing(
    host: Host, catalog: Catalog, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidEntityState) as info:
        await catalog.upsert_system("api", **kwargs)  # type: ignore[arg-type]

    assert info.value.fields[0] == field
    assert "catalog-system:api" in str(info.value)
    assert await catalog.get_system("api") is None
    assert await host.changes(kind=CATALOG_KIND) == []


async def test_delete_system_logs_a_tombstone_and_deleting_again_is_a_noop(
    host: Host, catalog: Catalog
) -> None:
    await catalog.upsert_system("api", name="API", tags=["prod"])
    await catalog.delete_system("api", actor=Actor("user", "u2"), reason="retired")
    await catalog.delete_system("api")
    await catalog.delete_system("never-existed")

    _, tombstone = await host.changes(kind=CATALOG_KIND)
    assert tombstone.is_tombstone
    assert tombstone.prev == {"name": "API", "description": None, "metadata": {},
                              "tags": ["prod"]}
    assert tombstone.next is None
    assert tombstone.delta == {}
    assert tombstone.changed_fields == ("description", "metadata", "name", "tags")
    assert tombstone.actor == Actor("user", "u2")
    assert tombstone.reason == "retired"
    assert await catalog.get_system("api") is None
    assert await catalog.systems() == {}


async def test_systems_lists_every_system_by_id(catalog: Catalog) -> None:
    await catalog.upsert_system("web", name="Web")
    await catalog.upsert_system("api", name="API", description="public")
    await catalog.upsert_system("gone", name="Gone")
    await catalog.delete_system("gone")

    systems = await catalog.systems()

    assert list(systems) == ["api", "web"]
    assert systems["api"] == CatalogSystem(name="API", description="public")


# -- triggers -------------------------------------------------------------------------


async def test_create_update_and_tombstone_derive_triggers_and_payloads(
    host: Host, catalog: Catalog
) -> None:
    await catalog.upsert_system("api", name="API")
    await catalog.upsert_system("api", name="Public API", description="v2")
    await catalog.delete_system("api")
    create, update, tombstone = await host.changes(kind=CATALOG_KIND)

    assert host.derive_triggers(create) == ["catalog.created"]
    assert host.derive_triggers(update) == ["catalog.updated"]
    assert host.derive_triggers(tombstone) == ["catalog.deleted"]
    assert host.trigger_payload(create) == {
        "systemId": "api", "systemName": "API", "changedFields": ["metadata", "name", "tags"]}
    assert host.trigger_payload(update) == {
        "systemId": "api", "systemName": "Public API",
        "changedFields": ["description", "name"]}
    assert host.trigger_payload(tombstone) == {
        "systemId": "api", "changedFields": ["description", "metadata", "name", "tags"]}
    # The exported functions are the registered ones.
    for change in (create, update, tombstone):
        assert derive_catalog_triggers(change) == host.derive_triggers(change)
        assert catalog_change_payload(change) == host.trigger_payload(change)


# -- dependencies ---------------------------------------------------------------------


async def test_upstream_and_downstream_follow_edge_direction(catalog: Catalog) -> None:
    await three_tier(catalog)

    assert await catalog.upstream_of("web") == [
        dep("web", "api", Impact.CRITICAL), dep("web", "db")]
    assert await catalog.upstream_of("db") == []
    assert await catalog.downstream_of("db") == [
        dep("api", "db", Impact.INFORMATIONAL), dep("web", "db")]
    assert await catalog.downstream_of("web") == []
    assert await catalog.downstream_of("unknown") == []
    assert await catalog.dependencies() == [
        dep("api", "db", Impact.INFORMATIONAL), dep("web", "api", Impact.CRITICAL),
        dep("web", "db")]


async def test_add_dependency_is_idempotent_and_a_new_impact_updates_it(
    host: Host, catalog: Catalog
) -> None:
    await catalog.upsert_system("web", name="Web")
    await catalog.upsert_system("api", name="API")
    changes_before = len(await host.changes())

    first = await catalog.add_dependency("web", "api")
    again = await catalog.add_dependency("web", "api", "degraded")
    raised = await catalog.add_dependency("web", "api", Impact.CRITICAL)

    assert first == again == dep("web", "api", Impact.DEGRADED)
    assert raised == dep("web", "api", Impact.CRITICAL)
    assert await catalog.dependencies() == [dep("web", "api", Impact.CRITICAL)]
    # Edges are bookkeeping: checking the systems under their locks logs no change.
    assert len(await host.changes()) == changes_before


async def test_add_dependency_names_an_unknown_system(catalog: Catalog) -> None:
    await catalog.upsert_system("web", name="Web")

    with pytest.raises(UnknownSystem, match=r"web -> ghost: unknown target system 'ghost'") as info:
        await catalog.add_dependency("web", "ghost")
    assert (info.value.system_id, info.value.role) == ("ghost", "target")
    with pytest.raises(UnknownSystem, match=r"unknown source system 'ghost'"):
        await catalog.add_dependency("ghost", "web")
    assert await catalog.dependencies() == []


@pytest.mark.parametrize(("source", "target", "impact", "message"), [
    ("api", "api", "degraded", r"api -> api: a system cannot depend on itself"),
    ("db", "web", "degraded", r"db -> web would close a cycle \(db -> web -> api -> db\)"),
    ("api", "web", "degraded", r"api -> web would close a cycle \(api -> web -> api\)"),
    ("db", "web", "fatal",
     r"impact must be one of informational, degraded, critical, received 'fatal'"),
    ("", "web", "degraded", r"source system id '' is empty: expected printable text"),
    (" web", "api", "degraded", r"source system id ' web' .*surrounding whitespace"),
    ("web", "a\u200bpi", "degraded", r"target system id .* non-printable character"),
])
async def test_add_dependency_refuses_self_edges_cycles_and_bad_input(
    catalog: Catalog, source: str, target: str, impact: str, message: str
) -> None:
    for system_id in ("web", "api", "db"):
        await catalog.upsert_system(system_id, name=system_id)
    await catalog.add_dependency("web", "api")
    await catalog.add_dependency("api", "db")

    with pytest.raises(InvalidDependency, match=message):
        await catalog.add_dependency(source, target, impact)
    assert await catalog.dependencies() == [dep("api", "db"), dep("web", "api")]


async def test_remove_dependency_tells_whether_the_edge_existed(catalog: Catalog) -> None:
    await three_tier(catalog)

    assert await catalog.remove_dependency("web", "db") is True
    assert await catalog.remove_dependency("web", "db") is False
    assert await catalog.remove_dependency("db", "web") is False
    assert await catalog.upstream_of("web") == [dep("web", "api", Impact.CRITICAL)]


async def test_in_variants_share_one_unit_of_work(host: Host, catalog: Catalog) -> None:
    def declare(tx: Connection) -> list[Dependency]:
        catalog.upsert_system_in(tx, "api", name="API")
        catalog.upsert_system_in(tx, "web", name="Web")
        catalog.add_dependency_in(tx, "web", "api")
        return catalog.upstream_of_in(tx, "web")

    assert await host.run(declare) == [dep("web", "api")]

    def half_then_fail(tx: Connection) -> None:
        catalog.upsert_system_in(tx, "db", name="DB")
        catalog.add_dependency_in(tx, "api", "missing")

    with pytest.raises(UnknownSystem):
        await host.run(half_then_fail)
    assert list(await catalog.systems()) == ["api", "web"]


# -- edge cleanup ---------------------------------------------------------------------


async def test_delete_system_removes_its_edges_in_the_same_transaction(
    catalog: Catalog
) -> None:
    await three_tier(catalog)

    await catalog.delete_system("api")

    assert await catalog.dependencies() == [dep("web", "db")]


async def test_tombstone_through_the_entity_handle_is_cleaned_up_by_the_subscriber(
    host: Host, catalog: Catalog
) -> None:
    await three_tier(catalog)

    await host.entity(CATALOG_KIND).remove("api")
    await host.drain()

    assert await catalog.dependencies() == [dep("web", "db")]
    deliveries = await host.deliveries(group="catalog-edge-cleanup")
    assert len(deliveries) == 4  # three creates and the tombstone, each handled once
    assert {d.status for d in deliveries} == {"done"}


async def test_redelivered_cleanup_keeps_edges_declared_after_recreation(
    host: Host, catalog: Catalog
) -> None:
    await three_tier(catalog)
    await host.entity(CATALOG_KIND).remove("api")
    await host.drain()
    tombstone = (await host.changes(kind=CATALOG_KIND, entity_id="api"))[-1]
    await catalog.upsert_system("api", name="API again")
    await catalog.add_dependency("web", "api")

    (subscription,) = [s for s in host.registry.subscriptions(CATALOG_KIND)
                       if getattr(s.delivery, "group", None) == "catalog-edge-cleanup"]
    await subscription.handler(tombstone)  # an at-least-once redelivery

    assert await catalog.upstream_of("web") == [dep("web", "api"), dep("web", "db")]


async def test_one_plugin_object_serves_two_hosts_each_on_its_own_database(
    tmp_path: Path, anyio_backend: str
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with make_host(f"sqlite:///{tmp_path}/a/r.db") as host_a, \
            make_host(f"sqlite:///{tmp_path}/b/r.db") as host_b:
        catalog_a, catalog_b = Catalog(host_a), Catalog(host_b)
        await three_tier(catalog_a)
        await three_tier(catalog_b)

        # host_a started first: a plugin that kept "the" host in one place would now
        # clean host_b's database for host_a's tombstone.
        await host_a.entity(CATALOG_KIND).remove("db")
        await host_a.drain()
        await host_b.drain()

        assert await catalog_a.dependencies() == [dep("web", "api", Impact.CRITICAL)]
        assert len(await catalog_b.dependencies()) == 3


# -- config files ---------------------------------------------------------------------

CONFIG = textwrap.dedent("""\
    systems:
      - id: api
        name: API
        tags: [prod]
      - id: db
        name: Database
        description: primary store
        metadata: {engine: postgres}
      - id: web
        name: Web
    dependencies:
      - source: web
        target: api
        impact: critical
      - {source: api, target: db}
""")


async def test_config_apply_declares_systems_and_edges_and_is_idempotent(
    host: Host, catalog: Catalog
) -> None:
    report = await apply_config_text(host, CONFIG)

    assert report == [
        "created system api", "created system db", "created system web",
        "added dependency web -> api (critical)", "added dependency api -> db (degraded)",
    ]
    assert await catalog.systems() == {
        "api": CatalogSystem(name="API", tags=["prod"]),
        "db": CatalogSystem(name="Database", description="primary store",
                            metadata={"engine": "postgres"}),
        "web": CatalogSystem(name="Web"),
    }
    assert await catalog.dependencies() == [dep("api", "db"),
                                            dep("web", "api", Impact.CRITICAL)]
    changes = await host.changes()
    assert {c.actor for c in changes} == {CONFIG_ACTOR}

    assert await apply_config_text(host, CONFIG) == []
    assert await host.changes() == changes


async def test_config_apply_reports_updated_fields_and_impacts(
    host: Host, catalog: Catalog
) -> None:
    await apply_config_text(host, CONFIG)
    edited = (CONFIG.replace("tags: [prod]", "tags: [prod, tier-1]")
                    .replace("impact: critical", "impact: informational"))

    report = await apply_config_text(host, edited)

    assert report == ["updated system api (tags)",
                      "updated dependency web -> api (critical -> informational)"]
    last = (await host.changes(kind=CATALOG_KIND))[-1]
    assert (last.id, last.changed_fields, last.delta) == ("api", ("tags",),
                                                           {"tags": ["prod", "tier-1"]})


async def test_config_dependency_on_an_unknown_system_names_its_line_and_stores_nothing(
    host: Host, catalog: Catalog
) -> None:
    text = CONFIG + "  - source: web\n    target: cache\n"
    assert text.splitlines()[16] == "    target: cache"  # line 17

    with pytest.raises(ConfigError) as info:
        await apply_config_text(host, text, source="catalog.yaml")

    message = str(info.value)
    assert message.startswith("catalog.yaml:17: dependencies[2]: ")
    assert "unknown target system 'cache'" in message
    assert await catalog.systems() == {}
    assert await catalog.dependencies() == []
    assert await host.changes() == []


@pytest.mark.parametrize(("text", "where", "expected"), [
    ("systems:\n  - id: api\n    nmae: API\n", "<config>:2", "systems[0].name: Field required"),
    ("systems:\n  - id: api\n    name: API\n    tag: [x]\n", "<config>:4",
     "systems[0].tag: unknown field"),
    ("systems:\n  - id: api\n    name: API\n    tags: prod\n", "<config>:4", "systems[0].tags"),
    ("systems:\n  - id: api\n    name: ''\n", "<config>:3", "systems[0].name"),
    ("systems:\n  - id: a\n    name: A\n  - id: b\n    name: B\n"
     "dependencies:\n  - {source: a, target: b, impact: fatal}\n",
     "<config>:7", "dependencies[0].impact"),
    ("systems:\n  - id: api\n    name: API\n  - id: api\n    name: Again\n",
     "<config>:4", "already declared by systems[0]"),
    ("systems:\n  - id: a\n    name: A\n  - id: b\n    name: B\n"
     "dependencies:\n  - {source: a, target: b}\n  - source: b\n    target: a\n",
     "<config>:9", "would close a cycle (b -> a -> b)"),
    ("systems:\n  - id: a\n    name: A\ndependencies:\n  - source: a\n    target: a\n",
     "<config>:6", "cannot depend on itself"),
])
async def test_config_rejects_bad_items_naming_the_line(
    host: Host, catalog: Catalog, text: str, where: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        await apply_config_text(host, text)

    assert str(info.value).startswith(f"{where}: ")
    assert expected in str(info.value)
    assert await catalog.systems() == {}
    assert await host.changes() == []


# -- doctor ---------------------------------------------------------------------------


async def test_doctor_finds_every_catalog_table_accounted_for(host: Host) -> None:
    report = await doctor(host)

    catalog_tables = {t.table: t for t in report.tables if t.plugin == "catalog"}
    assert set(catalog_tables) == {"catalog_dependencies"}
    assert catalog_tables["catalog_dependencies"].status == "declared"
    assert catalog_tables["catalog_dependencies"].detail.startswith("bookkeeping: ")
    assert report.ok
    assert "catalog_dependencies" in await host.table_names()


async def test_edge_rows_carry_their_creation_time(host: Host, catalog: Catalog) -> None:
    await three_tier(catalog)

    def rows(tx: Connection) -> list[tuple[str, str, str, object]]:
        t = catalog_dependencies
        return [tuple(r) for r in tx.execute(
            select(t.c.source_system_id, t.c.target_system_id, t.c.impact, t.c.created_at)
            .order_by(t.c.source_system_id, t.c.target_system_id))]

    stored = await host.read(rows)
    assert [r[:3] for r in stored] == [("api", "db", "informational"),
                                       ("web", "api", "critical"), ("web", "db", "degraded")]
    assert all(r[3] is not None for r in stored)


async def test_tags_given_as_a_generator_survive_a_unit_of_work_run_twice(
    host: Host, catalog: Catalog,
) -> None:
    # A unit of work may run twice (here: the next unit of its batch raises); tags handed
    # over as a one-shot iterable are read once, before the unit, not by its first run.
    system = await run_twice_on_sqlite(host, lambda: catalog.upsert_system(
        "api", name="API", tags=(tag for tag in ("edge", "public"))))
    assert system.tags == ["edge", "public"]
    stored = await catalog.get_system("api")
    assert stored is not None and stored.tags == ["edge", "public"]
