"""The health plugin's hooks; the `health` entry point names `HealthPlugin`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reactive_core import (
    CliCommand,
    DemoStep,
    ReadThroughCache,
    RetryPolicy,
    WorkQueue,
    hookimpl,
)

from . import hookspecs
from .actions import HealthActions
from .cleanup import SYSTEM_CLEANUP_GROUP, SystemCleanup
from .commands import (
    checks_command,
    health_change_logger,
    status_command,
    summary,
    system_runs,
)
from .config import (
    ASSOCIATIONS_ORDER,
    ASSOCIATIONS_SECTION,
    CHECKS_ORDER,
    CHECKS_SECTION,
    apply_associations,
    apply_checks,
    prune_associations,
    prune_checks,
)
from .demo import HealthDemo
from .derivers import derive_health_triggers, health_change_payload
from .entity import health_ids, read_health
from .executor import CheckExecutor
from .models import (
    CATALOG_KIND,
    HEALTH_KIND,
    AssociationDeclaration,
    CheckDeclaration,
    HealthSettings,
    HealthState,
)
from .retention import RETENTION_EVERY_SECONDS, RETENTION_JOB, Retention
from .scheduler import CHECK_TOPIC, CheckRunner, CheckScheduler
from .schema import (
    ENTITY_TABLES,
    health_check_run_aggregates,
    health_check_runs,
    health_check_state_transitions,
    metadata,
)
from .service import HealthService
from .strategies import BUILTIN_STRATEGIES, Strategy

if TYPE_CHECKING:
    from reactive_core import EntityChange, Host, Registry


class HealthPlugin:
    """Checks, their runs and the computed `health` kind; one instance per host."""

    name = "health"

    def __init__(self) -> None:
        self.service: HealthService | None = None
        self.executor: CheckExecutor | None = None
        self.runner: CheckRunner | None = None

    @hookimpl
    def reactive_register(self, registry: Registry, host: Host) -> None:
        """Declare tables, the kind, its triggers, subscribers, timers, the job and config
        sections; build the service."""
        settings = host.plugin_settings("health", HealthSettings)
        registry.add_hookspecs(hookspecs)
        registry.add_tables(metadata, migrations="health_plugin:migrations")
        registry.define_entity(HEALTH_KIND, state=HealthState, read=read_health,
                               tables=ENTITY_TABLES, ids=health_ids)
        registry.declare_non_reactive_state(
            health_check_runs.name, "raw-sample",
            "every check run is a raw sample; the reactive state derived from them is the "
            "health entity, mutated in the same transaction as each run insert")
        registry.declare_non_reactive_state(
            health_check_run_aggregates.name, "raw-sample",
            "hourly roll-ups of pruned raw runs (count, healthy, latency sum, p95)")
        registry.declare_non_reactive_state(
            health_check_state_transitions.name, "bookkeeping",
            "per-check status history; the system-level status transitions are the "
            "health entity's own transition log")
        self.executor = executor = CheckExecutor(
            settings=settings, offered=host.hook.reactive_health_strategies)
        self.service = service = HealthService(
            host=host, executor=executor,
            scheduler=CheckScheduler(timers=host.timers, settings=settings),
            cache=ReadThroughCache(ttl=settings.cache_ttl_seconds))
        HealthActions(service).register(registry)
        registry.register_change_deriver(
            HEALTH_KIND, derive_health_triggers, to_payload=health_change_payload)
        registry.on_entity_changed(HEALTH_KIND, self._invalidate)
        registry.on_entity_changed(CATALOG_KIND, self._names_changed)
        if host.config.workers:  # a serving host logs each status change
            registry.on_entity_changed(HEALTH_KIND, health_change_logger(service))
        registry.on_entity_changed(
            CATALOG_KIND, SystemCleanup(service).handle, delivery=WorkQueue(SYSTEM_CLEANUP_GROUP))
        runs_here = settings.scheduler
        if runs_here is None:
            runs_here = host.config.run_jobs
        if runs_here and host.config.workers:
            self.runner = CheckRunner(service=service, executor=executor)
            registry.on_timer(CHECK_TOPIC, self.runner.fire, concurrency=settings.max_concurrency,
                              lease_seconds=settings.lease_seconds,
                              retry=RetryPolicy(max_retries=0))
        registry.add_job(RETENTION_JOB, Retention(host=host, settings=settings).run,
                         every=RETENTION_EVERY_SECONDS)
        registry.add_config_section(
            CHECKS_SECTION, CheckDeclaration,
            lambda tx, _host, items: apply_checks(
                tx, service, items, min_interval=settings.min_interval_seconds),
            order=CHECKS_ORDER, identity=["id"],
            prune=lambda tx, _host, items: prune_checks(tx, service, items))
        registry.add_config_section(
            ASSOCIATIONS_SECTION, AssociationDeclaration,
            lambda tx, _host, items: apply_associations(tx, service, items),
            order=ASSOCIATIONS_ORDER, identity=["system", "check"],
            prune=lambda tx, _host, items: prune_associations(tx, service, items))

    async def _names_changed(self, change: EntityChange) -> None:
        """Broadcast on `catalog-system`: the cached status rows show system names."""
        if self.service is not None:
            self.service.invalidate_names()

    async def _invalidate(self, change: EntityChange) -> None:
        """Broadcast subscriber on `health`: drop the cached status on every instance."""
        if self.service is not None:
            self.service.invalidate(change.id)

    @hookimpl
    def reactive_health_strategies(self) -> list[Strategy]:
        """The built-in strategies: `http` and `tcp`."""
        return list(BUILTIN_STRATEGIES)

    @hookimpl
    async def reactive_startup(self, host: Host) -> None:
        """Check the strategies and open the HTTP client the runs share."""
        if self.executor is not None:
            await self.executor.open()

    @hookimpl
    async def reactive_shutdown(self, host: Host) -> None:
        """Close the HTTP client."""
        if self.executor is not None:
            await self.executor.close()

    @hookimpl
    def reactive_cli_commands(self) -> list[CliCommand]:
        """`reactive status` and `reactive checks`."""
        assert self.service is not None
        return [status_command(self.service), checks_command(self.service)]

    @hookimpl
    def reactive_system_runs(self, host: Host, system_id: str, check_id: str | None,
                             limit: int) -> Any:
        """A system's recent check runs, for `reactive runs --system`."""
        assert self.service is not None
        return system_runs(self.service, system_id, check_id, limit)

    @hookimpl
    def reactive_summary(self, host: Host) -> Any:
        """The systems by status, for `reactive serve`'s summary line."""
        assert self.service is not None
        return summary(self.service)

    @hookimpl
    def reactive_demo_steps(self) -> list[DemoStep]:
        """Checks against a flaky local target, told as their health changes."""
        assert self.service is not None
        return HealthDemo(self.service).steps()

    @hookimpl
    def reactive_http_routes(self, host: Host) -> list[Any]:
        """The plugin's part of the HTTP API (`health_plugin.http`)."""
        assert self.service is not None
        from .http import routes
        return routes(self.service)

    @hookimpl
    def reactive_metrics(self, host: Host) -> list[Any]:
        """The plugin's collectors on `/metrics` (`health_plugin.metrics`)."""
        assert self.service is not None
        from .metrics import collectors
        return collectors(self.service)
