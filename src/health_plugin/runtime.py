"""Per-host state of the health plugin: settings, strategies, the status cache, the scheduler.

One plugin object may serve several hosts in a process (tests do), so the plugin keeps
one `HealthRuntime` per host registry, created in `reactive_register` and bound to its
host on first use (`runtime_of(host)`).

Cache invalidation (the status read API is cached; see `HealthService.status`):

* **in the write path, after commit** — every health write registers
  `after_commit(tx, invalidate)` *before* it calls `mutate_in`, whose own after-commit
  callback wakes the broadcast feed and the work-queue dispatcher. The callbacks run
  synchronously and in that order, so no subscriber of this process is woken by the
  write before the cache entry is gone; and a load that read the old rows but
  finishes later is fenced by the cache's epochs and never stored. This is the
  race-safe path, the one that gives invalidate-before-notify. (On PostgreSQL a
  NOTIFY from the commit could in principle wake the local feed before the writing
  task resumes to run its callbacks; the feed must still read the change from the
  database through a worker thread first, and the broadcast invalidator below runs
  before any broadcast subscriber registered after the health plugin.)
* **a broadcast subscriber on `health`** — invalidates on every instance for every
  change, including changes written by *other* instances of a cluster, which the
  after-commit path cannot see. It runs when this instance's feed reaches the change,
  so on other instances the cache may serve the previous value until then (feed lag,
  normally milliseconds; the TTL bounds it in any case). Alone it would not be
  race-safe: a work-queue handler can run before the feed delivers the change.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from pydantic import ValidationError

from reactive_core import ConfigError, EntityChange, ReadThroughCache

from .evaluator import HealthStatus
from .models import CheckConfiguration, HealthError, HealthSettings
from .strategies import CheckOutcome, Strategy, StrategyContext, collect_strategies

if TYPE_CHECKING:
    from reactive_core import Host

    from .scheduler import CheckScheduler

logger = logging.getLogger("health_plugin")

ALL_KEY = "all"


def system_key(system_id: str) -> str:
    """The cache key of one system's status."""
    return f"system:{system_id}"


class HealthRuntime:
    """Everything the health plugin keeps for one host."""

    def __init__(self) -> None:
        self.host: Host | None = None
        self.settings = HealthSettings()
        self.cache: ReadThroughCache[Any] = ReadThroughCache(ttl=self.settings.cache_ttl_seconds)
        self.scheduler: CheckScheduler | None = None
        self.http: httpx.AsyncClient | None = None
        self.rng = random.Random()
        self._strategies: Mapping[str, Strategy] | None = None

    # -- binding --------------------------------------------------------------------

    def attach(self, host: Host) -> None:
        """Bind to `host` and read its settings (`config.plugins["health"]`); idempotent."""
        if self.host is host:
            return
        raw = host.config.plugins.get("health", {})
        try:
            self.settings = HealthSettings.model_validate(raw or {})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<settings>'}: {e['msg']} "
                f"(received {e.get('input')!r})" for e in exc.errors())
            raise ConfigError(
                f"health plugin settings (host config plugins.health) are invalid: {problems}; "
                f"expected keys among {', '.join(HealthSettings.model_fields)}") from exc
        self.cache = ReadThroughCache(ttl=self.settings.cache_ttl_seconds)
        self.host = host

    def require_host(self) -> Host:
        """The bound host, or a clear error when the host never started."""
        if self.host is None:
            raise HealthError("the health plugin is not bound to a host yet: expected the "
                              "host to be loaded (HealthService(host)) or started")
        return self.host

    def scheduler_enabled(self) -> bool:
        """Whether this host runs the check scheduler (see `HealthSettings.scheduler`)."""
        host = self.require_host()
        if not host.config.workers:
            return False  # a client host (CLI apply, listings) runs no background work
        if self.settings.scheduler is None:
            return host.config.run_jobs
        return self.settings.scheduler

    @property
    def strategies(self) -> Mapping[str, Strategy]:
        """Every strategy offered through `reactive_health_strategies`, by name."""
        if self._strategies is None:
            host = self.require_host()
            if host.pm is None:
                host.load_plugins()
            assert host.pm is not None
            self._strategies = collect_strategies(host.pm.hook.reactive_health_strategies())
        return self._strategies

    def strategy(self, name: str) -> Strategy | None:
        """The strategy called `name`, if any."""
        return self.strategies.get(name)

    # -- cache ----------------------------------------------------------------------

    def invalidate(self, system_id: str) -> None:
        """Drop the cached status of `system_id` and the cached list of all statuses."""
        self.cache.invalidate(system_key(system_id))
        self.cache.invalidate(ALL_KEY)

    async def on_health_changed(self, change: EntityChange) -> None:
        """Broadcast subscriber on `health`: invalidate on every instance."""
        self.invalidate(change.id)

    # -- scheduler ------------------------------------------------------------------

    def wake_scheduler(self) -> None:
        """Make the scheduler look for due checks now (after a check or association changed)."""
        if self.scheduler is not None:
            self.scheduler.wake()

    def first_run_at(self, now: datetime, interval_seconds: float) -> datetime:
        """When a new (or changed, or resumed) check first runs: now, plus some jitter."""
        spread = self.settings.jitter_ratio * interval_seconds
        return now + timedelta(seconds=self.rng.uniform(0, spread)) if spread else now

    def next_run_at(self, now: datetime, interval_seconds: float) -> datetime:
        """The slot after a run claimed at `now`: one interval later, jittered.

        Measured from the claim, not from the previous slot, so two runs of a check are
        never closer than one interval (less the jitter) even after a late claim.
        Symmetric jitter spreads checks that share an interval without drifting them.
        """
        spread = self.settings.jitter_ratio * interval_seconds
        offset = self.rng.uniform(-spread, spread) if spread else 0.0
        return now + timedelta(seconds=interval_seconds + offset)

    # -- running checks -------------------------------------------------------------

    async def execute(self, check: CheckConfiguration) -> CheckOutcome:
        """Run `check` once with its strategy; never raises for a failing check.

        A missing strategy, an invalid stored config, a strategy that raises or one that
        overruns `run_timeout_seconds` is an unhealthy outcome whose `result.error` says
        what happened.
        """
        started = time.perf_counter()

        def failed(error: str) -> CheckOutcome:
            return CheckOutcome(
                status=HealthStatus.UNHEALTHY,
                latency_ms=round((time.perf_counter() - started) * 1000.0, 3),
                result={"error": error})

        strategy = self.strategy(check.strategy)
        if strategy is None:
            return failed(f"unknown strategy {check.strategy!r}: expected one of "
                          f"{', '.join(self.strategies) or 'none'}")
        try:
            config = strategy.config_model.model_validate(check.config)
        except ValidationError as exc:
            return failed(f"stored config is not valid for strategy {check.strategy!r}: {exc}")
        try:
            with anyio.fail_after(self.settings.run_timeout_seconds):
                if self.http is not None:
                    outcome = await strategy.run(config, StrategyContext(http=self.http))
                else:
                    client_cm = httpx.AsyncClient(trust_env=self.settings.use_env_proxy)
                    async with client_cm as client:
                        outcome = await strategy.run(config, StrategyContext(http=client))
        except TimeoutError:
            return failed(f"strategy {check.strategy!r} overran the run timeout of "
                          f"{self.settings.run_timeout_seconds:g}s")
        except Exception as exc:  # noqa: BLE001 - a broken strategy is a failed run
            logger.exception("strategy %s raised while running check %s", check.strategy, check.id)
            return failed(f"strategy {check.strategy!r} raised {type(exc).__name__}: {exc}")
        if not isinstance(outcome, CheckOutcome):
            return failed(f"strategy {check.strategy!r} returned {type(outcome).__name__}, "
                          f"expected a CheckOutcome")
        if outcome.latency_ms is None:
            outcome = outcome.model_copy(update={
                "latency_ms": round((time.perf_counter() - started) * 1000.0, 3)})
        return outcome

    async def start(self, host: Host) -> None:
        """Open the shared HTTP client and start the scheduler if this host runs it."""
        self.attach(host)
        _ = self.strategies  # duplicate or malformed strategies fail the startup
        self.http = httpx.AsyncClient(trust_env=self.settings.use_env_proxy)
        if self.scheduler_enabled():
            from .scheduler import CheckScheduler
            from .service import HealthService

            self.scheduler = CheckScheduler(
                service=HealthService(host), runtime=self, owner=host.instance_id)
            await host.task_group.start(self.scheduler.run)

    async def stop(self) -> None:
        """Stop the scheduler (releasing its leases) and close the HTTP client."""
        scheduler, self.scheduler = self.scheduler, None
        try:
            if scheduler is not None:
                await scheduler.stop()
        finally:
            http, self.http = self.http, None
            if http is not None:
                await http.aclose()


def runtime_of(host: Host) -> HealthRuntime:
    """The health plugin's runtime for `host` (loading the host's plugins if needed)."""
    from .hooks import HealthPlugin

    if host.pm is None:
        host.load_plugins()
    assert host.pm is not None
    for candidate in host.pm.get_plugins():
        if isinstance(candidate, HealthPlugin):
            runtime = candidate.runtime_for(host.registry)
            if runtime is not None:
                runtime.attach(host)
                return runtime
    raise HealthError(
        "the health plugin is not loaded in this host: expected "
        "Host(plugins=[health_plugin.plugin], ...) or the installed `health` entry point")
