"""Real checks against real servers on 127.0.0.1, by hand and through the scheduler."""

from __future__ import annotations

import itertools
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
import pytest
from pydantic import BaseModel

from catalog_plugin import Catalog
from health_plugin import (
    CHECK_TOPIC,
    CheckOutcome,
    HealthService,
    HealthStatus,
    StrategyContext,
    Thresholds,
    health_service,
)
from health_plugin.flaky import FlakyTarget
from plugins_for_tests import make_health_host
from reactive_core import ConfigError, DuplicateRegistration, EntityChange, Host, Timer, hookimpl

pytestmark = pytest.mark.anyio

EAGER = Thresholds(degraded_min_failures=1, unhealthy_min_failures=1)


make_host = make_health_host


@pytest.fixture
async def host(sqlite_url: str, anyio_backend: str) -> AsyncIterator[Host]:
    async with make_host(sqlite_url) as running:
        yield running


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def attach(host: Host, check_id: str, strategy: str, config: dict[str, Any],
                 thresholds: Thresholds | None = None, system_id: str = "api",
                 interval: float = 60.0) -> HealthService:
    service = health_service(host)
    catalog = Catalog(host)
    if await catalog.get_system(system_id) is None:
        await catalog.upsert_system(system_id, name=system_id.upper())
    await service.upsert_check(check_id, strategy=strategy, config=config,
                               interval_seconds=interval)
    await service.associate(system_id, check_id, thresholds=thresholds)
    return service


# -- http -----------------------------------------------------------------------------


async def test_http_check_follows_a_target_that_answers_then_errors_then_hangs(
    host: Host,
) -> None:
    async with FlakyTarget([("ok", 1), ("error", 1), ("hang", 1), ("ok", 1)]) as target:
        service = await attach(host, "web", "http",
                               {"url": target.url, "timeout_seconds": 0.3})
        outcomes = [await service.run_check("web") for _ in range(4)]
    assert [o.status for o in outcomes] == ["healthy", "unhealthy", "unhealthy", "healthy"]
    assert outcomes[0].result == {"status_code": 200}
    assert outcomes[1].result["status_code"] == 500
    assert outcomes[1].result["error"] == "status 500, expected 2xx"
    assert outcomes[2].result == {"error": "timed out after 0.3s"}
    assert 250 <= (outcomes[2].latency_ms or 0) < 2000
    # Default thresholds: the 500 alone is noise, the timeout makes two failures in a
    # row (degraded), the next 200 recovers.
    changes = await host.changes(kind="health", entity_id="api")
    assert [c.next["status"] for c in changes] == ["healthy", "degraded", "healthy"]
    assert [host.derive_triggers(c)[0] for c in changes[1:]] == [
        "healthcheck.system_degraded", "healthcheck.system_healthy"]
    log = await host.transitions(kind="health", entity_id="api", field="status")
    assert [(t.from_value, t.to_value) for t in log] == [
        (None, "healthy"), ("healthy", "degraded"), ("degraded", "healthy")]
    per_check = await service.check_transitions("api", "web")
    assert [(t.from_status, t.to_status) for t in per_check] == [
        (None, "healthy"), ("healthy", "degraded"), ("degraded", "healthy")]
    runs = await service.runs("api", "web")
    assert [r.status for r in runs] == ["healthy", "unhealthy", "unhealthy", "healthy"]
    assert per_check[1].run_id == runs[1].id  # the timeout run moved the check
    assert await host.entity("health").in_state_since("api", "status") == log[-1].transitioned_at


async def test_http_status_and_body_matching(host: Host) -> None:
    async with FlakyTarget([("ok", 100)]) as target:
        cases = {
            "wants-500": ({"expected_status": [500]}, "unhealthy", "status 200, expected 500"),
            "contains": ({"body_contains": "ok"}, "healthy", None),
            "lacks": ({"body_contains": "welcome"}, "unhealthy", "body does not contain 'welcome'"),
            "regex": ({"body_regex": "^o.$"}, "healthy", None),
            "regex-miss": ({"body_regex": "^x"}, "unhealthy", "body does not match /^x/"),
            "post": ({"method": "post", "headers": {"X-Probe": "1"}, "body": "{}"},
                     "healthy", None),
        }
        service = health_service(host)
        for check_id, (extra, _, _) in cases.items():
            await service.upsert_check(check_id, strategy="http",
                                       config={"url": target.url, **extra})
        outcomes = {check_id: await service.run_check(check_id) for check_id in cases}
    for check_id, (_, status, error) in cases.items():
        assert outcomes[check_id].status == status, check_id
        assert outcomes[check_id].result.get("error") == error, check_id
    stored = await service.get_check("post")
    assert stored is not None and stored.config["method"] == "POST"


# -- tcp ------------------------------------------------------------------------------


async def test_tcp_check_open_and_closed_port(host: Host) -> None:
    port = closed_port()
    async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as listener:
        open_port = listener.extra(anyio.abc.SocketAttribute.local_port)
        service = await attach(host, "db-open", "tcp", {"host": "127.0.0.1", "port": open_port})
        await attach(host, "db-closed", "tcp", {"host": "127.0.0.1", "port": port,
                                                "timeout_seconds": 2}, thresholds=EAGER)
        opened = await service.run_check("db-open")
        refused = await service.run_check("db-closed")
    assert opened.status is HealthStatus.HEALTHY
    assert refused.status is HealthStatus.UNHEALTHY
    assert "ConnectionRefusedError" in refused.result["error"]
    health = await host.entity("health").get("api")
    assert health is not None
    assert (health.status, health.healthy_checks, health.total_checks) == ("unhealthy", 1, 2)


# -- strategies from other plugins ----------------------------------------------------


class FixedConfig(BaseModel):
    status: HealthStatus


class FixedStrategy:
    name = "fixed"
    config_model = FixedConfig

    async def run(self, config: FixedConfig, context: StrategyContext) -> CheckOutcome:
        return CheckOutcome(status=config.status, result={"fixed": True})


class FixedStrategyPlugin:
    name = "fixed-strategy"

    def __init__(self, strategy: object | None = None) -> None:
        self.strategy = strategy or FixedStrategy()

    @hookimpl
    def reactive_health_strategies(self) -> list[object]:
        return [self.strategy]


async def test_another_plugin_adds_a_strategy(sqlite_url: str, anyio_backend: str) -> None:
    async with make_host(sqlite_url, FixedStrategyPlugin()) as host:
        service = await attach(host, "fixed", "fixed", {"status": "degraded"}, thresholds=EAGER)
        outcome = await service.run_check("fixed")
        assert outcome.status is HealthStatus.DEGRADED and outcome.latency_ms is not None
        status = await service.status("api")
        assert status is not None and status.status is HealthStatus.DEGRADED
    # The stored check outlives its strategy's plugin: runs then fail clearly.
    async with make_host(sqlite_url) as host:
        outcome = await health_service(host).run_check("fixed")
        assert outcome.status is HealthStatus.UNHEALTHY
        assert outcome.result["error"] == "unknown strategy 'fixed': expected one of http, tcp"


async def test_duplicate_strategy_names_stop_the_host(sqlite_url: str, anyio_backend: str) -> None:
    class FakeHttp(FixedStrategy):
        name = "http"

    with pytest.raises(DuplicateRegistration, match="health strategy 'http' is offered twice"):
        async with make_host(sqlite_url, FixedStrategyPlugin(FakeHttp())):
            pass


async def test_bad_plugin_settings_stop_the_host(sqlite_url: str, anyio_backend: str) -> None:
    with pytest.raises(ConfigError, match=r"max_concurrency: .*received 0"):
        async with make_host(sqlite_url, max_concurrency=0):
            pass


# -- the scheduler --------------------------------------------------------------------


async def test_scheduler_runs_checks_and_drives_the_entity(
    sqlite_url: str, anyio_backend: str,
) -> None:
    unhealthy = anyio.Event()

    class Watcher:
        name = "watcher"

        @hookimpl
        def reactive_register(self, registry: Any) -> None:
            async def on_health(change: EntityChange) -> None:
                if change.next and change.next["status"] == "unhealthy":
                    unhealthy.set()
            registry.on_entity_changed("health", on_health)

    async with (
        FlakyTarget([("ok", 2), ("error", 1)]) as target,
        make_host(sqlite_url, Watcher(), scheduler=True, jitter_ratio=0) as host,
    ):
        service = await attach(host, "web", "http", {"url": target.url},
                               thresholds=EAGER, interval=0.05)
        with anyio.fail_after(10):
            await unhealthy.wait()
        runs = await service.runs("api", "web")
        assert [r.status for r in runs][-3:] == ["unhealthy", "healthy", "healthy"]
        stamps = sorted(r.timestamp for r in runs)
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
        # One run per interval (the timer keeps the check's cadence), never two at once; a
        # run that fired late may sit closer to the next slot than half an interval.
        elapsed = (stamps[-1] - stamps[0]).total_seconds()
        assert len(stamps) <= elapsed / 0.05 + 2 and min(gaps) > 0

        await service.pause_check("web")
        paused_at = target.requests
        await anyio.sleep(0.3)  # six intervals: nothing may run while paused
        assert target.requests == paused_at
        assert (await service.status("api")).total_checks == 0  # type: ignore[union-attr]


async def test_scheduler_bounds_concurrency_and_releases_leases_on_exit(
    sqlite_url: str, anyio_backend: str,
) -> None:
    async with FlakyTarget([("hang", 1)]) as target:
        async with make_host(sqlite_url, scheduler=True, jitter_ratio=0,
                             max_concurrency=2) as host:
            for n in range(5):
                await attach(host, f"slow-{n}", "http",
                             {"url": target.url, "timeout_seconds": 30}, system_id=f"s{n}")
            with anyio.fail_after(30):  # a deadline for a loaded machine, not a speed bound
                while target.requests < 2:
                    await anyio.sleep(0.01)
            await anyio.sleep(0.2)  # ten ticks: no third run may start
            assert target.requests == 2
            firing = [t for t in host.timer_runner.firing if t.topic == CHECK_TOPIC]
            assert len(firing) == 2
            assert len(await leased_checks(host)) == 2
        # The host stopped while two runs hung: they were cancelled and their leases freed.
        assert sorted(host.abandoned) == sorted(f"timer {CHECK_TOPIC}:{t.key}" for t in firing)
        async with make_host(sqlite_url) as host:
            assert await leased_checks(host) == []


async def leased_checks(host: Host) -> list[Timer]:
    return [t for t in await host.timers.list(CHECK_TOPIC) if t.lease_owner is not None]


@pytest.mark.parametrize("use_env_proxy", [False, True])
async def test_http_checks_ignore_proxy_variables_unless_told(
    sqlite_url: str, anyio_backend: str, monkeypatch: pytest.MonkeyPatch, use_env_proxy: bool,
) -> None:
    # A proxy that refuses every connection: a check sent through it fails.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with make_host(sqlite_url, use_env_proxy=use_env_proxy) as host, \
            FlakyTarget([("ok", 10)]) as target:
        service = await attach(host, "web", "http", {"url": target.url, "timeout_seconds": 1})
        outcome = await service.run_check("web")
    assert outcome.status == ("unhealthy" if use_env_proxy else "healthy")


async def test_a_check_attached_to_no_system_is_not_run(
    sqlite_url: str, anyio_backend: str,
) -> None:
    async with (
        FlakyTarget([("ok", 1)]) as target,
        make_host(sqlite_url, scheduler=True, jitter_ratio=0) as host,
    ):
        service = health_service(host)
        await service.upsert_check("web", strategy="http", config={"url": target.url},
                                   interval_seconds=0.05)
        await anyio.sleep(0.3)  # six intervals: its timer fires, but nobody would see a run
        assert target.requests == 0
        await Catalog(host).upsert_system("api", name="API")
        await service.associate("api", "web")
        with anyio.fail_after(5):
            while target.requests == 0:
                await anyio.sleep(0.02)
