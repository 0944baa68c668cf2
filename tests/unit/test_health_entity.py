"""The computed `health` kind on a real SQLite database, written only through `mutate`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

import health_plugin
from catalog_plugin import Catalog
from health_plugin import (
    CheckOutcome,
    HealthService,
    HealthState,
    HealthStatus,
    Thresholds,
    UnknownCheck,
    UnknownSystem,
    health_service,
)
from plugins_for_tests import SubscriberPlugin, make_health_host, run_twice_on_sqlite
from reactive_core import EntityChange, Host, WorkQueue, doctor

pytestmark = pytest.mark.anyio

OK = CheckOutcome(status=HealthStatus.HEALTHY, latency_ms=1.0)
FAIL = CheckOutcome(status=HealthStatus.UNHEALTHY, latency_ms=2.0, result={"error": "boom"})
EAGER = Thresholds(degraded_min_failures=1, unhealthy_min_failures=1)
TCP = {"host": "127.0.0.1", "port": 9}


make_host = make_health_host


@pytest.fixture
async def host(sqlite_url: str, anyio_backend: str) -> AsyncIterator[Host]:
    async with make_host(sqlite_url) as running:
        yield running


@pytest.fixture
def service(host: Host) -> HealthService:
    return health_service(host)


async def setup_system(host: Host, service: HealthService, system_id: str = "api",
                       checks: tuple[str, ...] = ("ping",),
                       thresholds: Thresholds | None = None) -> None:
    await Catalog(host).upsert_system(system_id, name=system_id.upper())
    for check_id in checks:
        if await service.get_check(check_id) is None:
            await service.upsert_check(check_id, strategy="tcp", config=TCP)
        await service.associate(system_id, check_id, thresholds=thresholds)


def st(status: str, healthy: int, total: int) -> dict[str, Any]:
    return {"status": status, "healthyChecks": healthy, "totalChecks": total}


async def health_changes(host: Host, system_id: str = "api") -> list[EntityChange]:
    return await host.changes(kind="health", entity_id=system_id)


# -- presence -------------------------------------------------------------------------


async def test_absent_without_an_enabled_association(host: Host, service: HealthService) -> None:
    await Catalog(host).upsert_system("api", name="API")
    await service.upsert_check("ping", strategy="tcp", config=TCP)
    health = host.entity("health")
    assert await health.get("api") is None

    await service.associate("api", "ping", enabled=False)
    assert await service.record_run("ping", FAIL) == []  # runs go to enabled associations
    assert len(await service.record_run("ping", FAIL, systems=["api"])) == 1
    assert await health.get("api") is None  # recorded when asked, never counted
    assert await health_changes(host) == []
    assert len(await service.runs("api")) == 1

    await service.set_enabled("api", "ping", True)
    assert await health.get("api") == HealthState(
        status=HealthStatus.HEALTHY, healthy_checks=1, total_checks=1)

    await service.set_enabled("api", "ping", False)
    assert await health.get("api") is None
    changes = await health_changes(host)
    assert [(c.prev, c.next) for c in changes] == [
        (None, st("healthy", 1, 1)), (st("healthy", 1, 1), None)]
    assert [host.derive_triggers(c) for c in changes] == [[], []]
    assert await service.statuses() == {}


async def test_first_failing_run_is_a_change_from_the_no_runs_healthy_state(
    host: Host, service: HealthService,
) -> None:
    # With the default thresholds one failure is noise (see the next test); with
    # thresholds where one failure is unhealthy, the first failing run is a real
    # healthy -> unhealthy change of the entity created by the association.
    await setup_system(host, service, thresholds=EAGER)
    await service.record_run("ping", FAIL)
    create, first_run = await health_changes(host)
    assert (create.prev, create.next) == (None, st("healthy", 1, 1))
    assert first_run.prev == st("healthy", 1, 1)
    assert first_run.next == st("unhealthy", 0, 1)
    assert first_run.actor.type == "health-check" and first_run.actor.id == "ping"
    assert host.derive_triggers(first_run) == [
        "healthcheck.system_degraded", "healthcheck.system_health_changed"]
    assert host.trigger_payload(first_run)["previousStatus"] == "healthy"
    statuses = [(t.from_value, t.to_value) for t in
                await host.transitions(kind="health", entity_id="api", field="status")]
    assert statuses == [(None, "healthy"), ("healthy", "unhealthy")]


async def test_default_thresholds_through_the_entity(host: Host, service: HealthService) -> None:
    await setup_system(host, service)
    await service.record_run("ping", FAIL)
    assert len(await health_changes(host)) == 1  # only the create: one failure is noise
    for _ in range(3):
        await service.record_run("ping", FAIL)
    await service.record_run("ping", FAIL)
    await service.record_run("ping", OK)
    assert [c.next["status"] for c in await health_changes(host)] == [
        "healthy", "degraded", "unhealthy", "healthy"]


async def test_worst_check_wins_and_counts_only_changes_trigger_nothing(
    host: Host, service: HealthService,
) -> None:
    await setup_system(host, service, checks=("a", "b"), thresholds=EAGER)
    await service.record_run("a", FAIL)
    assert await host.entity("health").get("api") == HealthState(
        status=HealthStatus.UNHEALTHY, healthy_checks=1, total_checks=2)
    await service.upsert_check("c", strategy="tcp", config=TCP)
    await service.associate("api", "c")
    last = (await health_changes(host))[-1]
    assert (last.prev, last.next) == (st("unhealthy", 1, 2), st("unhealthy", 2, 3))
    assert host.derive_triggers(last) == []
    await service.record_run("a", OK)
    last = (await health_changes(host))[-1]
    assert last.next == st("healthy", 3, 3)
    assert host.derive_triggers(last) == [
        "healthcheck.system_healthy", "healthcheck.system_health_changed"]


# -- recomputation on configuration changes -------------------------------------------


async def test_pausing_and_resuming_a_check_recomputes_health(
    host: Host, service: HealthService,
) -> None:
    await setup_system(host, service, checks=("bad", "good"), thresholds=EAGER)
    await service.record_run("bad", FAIL)
    assert await service.pause_check("bad", reason="maintenance") is True
    assert await service.pause_check("bad") is False
    after_pause = (await health_changes(host))[-1]
    assert (after_pause.prev, after_pause.next) == (st("unhealthy", 1, 2), st("healthy", 1, 1))
    assert after_pause.reason == "maintenance"
    assert host.derive_triggers(after_pause)[0] == "healthcheck.system_healthy"

    await service.record_run("bad", FAIL)  # a paused check's run does not count
    assert (await host.entity("health").get("api")) == HealthState(
        status=HealthStatus.HEALTHY, healthy_checks=1, total_checks=1)

    assert await service.resume_check("bad") is True
    assert (await health_changes(host))[-1].next == st("unhealthy", 1, 2)

    await service.pause_check("good")
    await service.pause_check("bad")
    assert (await health_changes(host))[-1].next == st("healthy", 0, 0)


async def test_disabling_an_association_and_changing_thresholds_recompute(
    host: Host, service: HealthService,
) -> None:
    await setup_system(host, service, checks=("bad", "good"))
    await service.record_run("bad", FAIL)
    await service.record_run("bad", FAIL)
    assert (await host.entity("health").get("api")).status is HealthStatus.DEGRADED
    await service.set_thresholds("api", "bad", {"unhealthy_min_failures": 2})
    assert (await health_changes(host))[-1].next == st("unhealthy", 1, 2)
    await service.set_enabled("api", "bad", False)
    assert (await health_changes(host))[-1].next == st("healthy", 1, 1)
    await service.upsert_check("other", strategy="tcp", config=TCP)
    with pytest.raises(UnknownCheck, match="has no association"):
        await service.set_enabled("api", "other", True)


async def test_deleting_a_check_removes_its_associations(
    host: Host, service: HealthService,
) -> None:
    await setup_system(host, service, checks=("only",), thresholds=EAGER)
    await setup_system(host, service, "web", checks=("only", "other"))
    await service.record_run("only", FAIL)
    assert await service.delete_check("only") is True
    assert await service.delete_check("only") is False
    assert await host.entity("health").get("api") is None
    assert await host.entity("health").get("web") == HealthState(
        status=HealthStatus.HEALTHY, healthy_checks=1, total_checks=1)
    assert await service.runs("api") == []
    assert [a.configuration_id for a in await service.associations()] == ["other"]


async def test_unknown_system_or_check_is_refused(host: Host, service: HealthService) -> None:
    await service.upsert_check("ping", strategy="tcp", config=TCP)
    with pytest.raises(UnknownSystem, match="unknown system 'ghost'"):
        await service.associate("ghost", "ping")
    await Catalog(host).upsert_system("api", name="API")
    with pytest.raises(UnknownCheck, match="unknown check 'nope'"):
        await service.associate("api", "nope")
    assert await service.associations() == []


# -- concurrency ----------------------------------------------------------------------


async def test_concurrent_evaluations_of_one_system_emit_one_change(
    host: Host, service: HealthService,
) -> None:
    await setup_system(host, service, thresholds=EAGER)
    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(service.record_run, "ping", FAIL)
    changes = await health_changes(host)
    assert [c.next["status"] for c in changes] == ["healthy", "unhealthy"]
    assert len(await service.runs("api")) == 8


# -- catalog tombstones ---------------------------------------------------------------


async def test_catalog_tombstone_removes_the_systems_associations(
    host: Host, service: HealthService,
) -> None:
    await setup_system(host, service, checks=("a", "b"), thresholds=EAGER)
    await setup_system(host, service, "web", checks=("a",))
    await service.record_run("a", FAIL)
    await Catalog(host).delete_system("api")
    await host.drain()
    assert await service.associations(system_id="api") == []
    assert await service.runs("api") == []
    assert await host.entity("health").get("api") is None
    tombstone = (await health_changes(host))[-1]
    assert (tombstone.prev, tombstone.next) == (st("unhealthy", 1, 2), None)
    assert tombstone.reason == "system api deleted"
    assert host.derive_triggers(tombstone) == []
    cleanup = await host.deliveries(group=health_plugin.SYSTEM_CLEANUP_GROUP)
    assert {d.status for d in cleanup} == {"done"}
    assert await service.remove_system("api") == 0  # a repeated delivery does nothing
    assert [a.system_id for a in await service.associations()] == ["web"]


# -- the cached status API ------------------------------------------------------------


async def test_status_cache_is_invalidated_before_subscribers_are_notified(
    sqlite_url: str, anyio_backend: str,
) -> None:
    seen: dict[str, list[str | None]] = {"broadcast": [], "queue": []}
    holder: dict[str, HealthService] = {}

    def reader(where: str) -> Any:
        async def handle(change: EntityChange) -> None:
            state = await holder["service"].status(change.id)
            seen[where].append(None if state is None else state.status.value)
        return handle

    async with make_host(
        sqlite_url,
        SubscriberPlugin("health", reader("broadcast"), name="b-reader"),
        SubscriberPlugin("health", reader("queue"), WorkQueue("q-reader"), name="q-reader"),
    ) as host:
        service = holder["service"] = health_service(host)
        await setup_system(host, service, thresholds=EAGER)
        await host.drain()
        for outcome in (FAIL, OK, FAIL):
            assert (await service.status("api")) is not None  # cached before the write
            await service.record_run("ping", outcome)
            await host.drain()
        assert seen["broadcast"] == ["healthy", "unhealthy", "healthy", "unhealthy"]
        assert seen["queue"] == seen["broadcast"]
        assert (await service.statuses())["api"].status is HealthStatus.UNHEALTHY


async def test_status_rows_say_since_when(host: Host, service: HealthService) -> None:
    await setup_system(host, service, thresholds=EAGER)
    await setup_system(host, service, "web")
    await service.record_run("ping", FAIL)
    rows = await service.system_statuses()
    assert [(r.system_id, r.status, r.healthy_checks, r.total_checks)
            for r in rows] == [("api", "unhealthy", 0, 1), ("web", "healthy", 1, 1)]
    changes = await health_changes(host)
    assert rows[0].since == changes[-1].occurred_at


async def test_doctor_finds_every_health_table_accounted_for(host: Host) -> None:
    report = await doctor(host)
    health_tables = {t.table: t.status for t in report.tables if t.plugin == "health"}
    assert health_tables == {
        "health_check_configurations": "entity",
        "health_system_associations": "entity",
        "health_check_runs": "declared",
        "health_check_run_aggregates": "declared",
        "health_check_state_transitions": "declared",
    }
    assert report.ok


async def test_public_names_are_pinned_and_sorted() -> None:
    assert health_plugin.__all__ == sorted(health_plugin.__all__)
    assert set(health_plugin.__all__) == {
        "Association", "AssociationDeclaration", "AssociationWrite", "CheckConfiguration",
        "CHECK_TOPIC", "CheckDeclaration", "CheckOutcome", "CheckRun", "CheckState",
        "CheckStateTransition", "CheckWrite",
        "HEALTH_KIND", "HealthChangeClassification", "HealthError", "HealthPlugin",
        "HealthService", "HealthSettings", "HealthState", "HealthStatus", "InvalidCheck",
        "SYSTEM_CLEANUP_GROUP", "SYSTEM_DEGRADED", "SYSTEM_HEALTHY", "SYSTEM_HEALTH_CHANGED",
        "Strategy", "StrategyContext", "SystemStatus", "ThresholdMode", "Thresholds", "UnknownCheck",
        "UnknownSystem", "check_state_in", "classify_health_change", "derive_health_triggers",
        "evaluate_status", "health_change_payload", "health_service",
    }
    assert health_plugin.HEALTH_KIND == "health"
    assert HealthState(status="healthy", healthy_checks=1, total_checks=2).model_dump(
        by_alias=True) == {"status": "healthy", "healthyChecks": 1, "totalChecks": 2}


async def test_systems_given_as_a_generator_survive_a_unit_of_work_run_twice(
    host: Host, service: HealthService,
) -> None:
    # A unit of work may run twice (here: the next unit of its batch raises); the systems
    # of a run handed over as a one-shot iterable are read once, before the unit.
    await setup_system(host, service)
    ids = await run_twice_on_sqlite(host, lambda: service.record_run(
        "ping", FAIL, systems=(system for system in ("api",))))
    assert len(ids) == 1
    assert [run.id for run in await service.runs("api")] == ids


async def test_a_run_for_a_bare_string_of_systems_is_refused(
    host: Host, service: HealthService,
) -> None:
    # "api" is one system, not the systems "a", "p" and "i": refused, nothing recorded.
    await setup_system(host, service)
    with pytest.raises(TypeError, match="systems must be a collection of system ids"):
        await service.record_run("ping", FAIL, systems="api")
    assert await service.runs("api") == []
