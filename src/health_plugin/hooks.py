"""The health plugin's hooks; `plugin` is what the `health` entry point loads."""

from __future__ import annotations

from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from reactive_core import WorkQueue, hookimpl

from . import hookspecs
from .cleanup import SYSTEM_CLEANUP_GROUP, SystemCleanup
from .config import (
    ASSOCIATIONS_ORDER,
    ASSOCIATIONS_SECTION,
    CHECKS_ORDER,
    CHECKS_SECTION,
    apply_associations,
    apply_checks,
)
from .derivers import derive_health_triggers, health_change_payload
from .entity import health_ids, read_health
from .models import HEALTH_KIND, AssociationDeclaration, CheckDeclaration, HealthState
from .retention import RETENTION_EVERY_SECONDS, RETENTION_JOB, retention_job
from .runtime import HealthRuntime
from .schema import (
    ENTITY_TABLES,
    health_check_run_aggregates,
    health_check_runs,
    health_check_schedule,
    health_check_state_transitions,
    metadata,
)
from .service import CATALOG_KIND
from .strategies import BUILTIN_STRATEGIES, Strategy

if TYPE_CHECKING:
    from reactive_core import Host, Registry


class HealthPlugin:
    """Checks, their runs and the computed `health` kind.

    One object may serve several hosts in a process (tests do): each host's registry
    gets its own `HealthRuntime`, bound to the host on first use.
    """

    name = "health"

    def __init__(self) -> None:
        self._runtimes: WeakKeyDictionary[Registry, HealthRuntime] = WeakKeyDictionary()

    def runtime_for(self, registry: Registry) -> HealthRuntime | None:
        """The runtime created for `registry`, if this plugin registered there."""
        return self._runtimes.get(registry)

    @hookimpl
    def reactive_register(self, registry: Registry) -> None:
        """Declare tables, the kind, its triggers, subscribers, the job and config sections."""
        runtime = HealthRuntime()
        self._runtimes[registry] = runtime
        registry.add_hookspecs(hookspecs)
        registry.add_tables(metadata)
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
        registry.declare_non_reactive_state(
            health_check_schedule.name, "bookkeeping",
            "when each check runs next and which instance holds its lease")
        registry.register_change_deriver(
            HEALTH_KIND, derive_health_triggers, to_payload=health_change_payload)
        registry.on_entity_changed(HEALTH_KIND, runtime.on_health_changed)
        registry.on_entity_changed(
            CATALOG_KIND, SystemCleanup(runtime).handle,
            delivery=WorkQueue(SYSTEM_CLEANUP_GROUP))
        registry.add_job(RETENTION_JOB, retention_job, every=RETENTION_EVERY_SECONDS)
        registry.add_config_section(
            CHECKS_SECTION, CheckDeclaration, apply_checks, order=CHECKS_ORDER,
            identity=["id"])
        registry.add_config_section(
            ASSOCIATIONS_SECTION, AssociationDeclaration, apply_associations,
            order=ASSOCIATIONS_ORDER, identity=["system", "check"])

    @hookimpl
    def reactive_health_strategies(self) -> list[Strategy]:
        """The built-in strategies: `http` and `tcp`."""
        return list(BUILTIN_STRATEGIES)

    @hookimpl
    async def reactive_startup(self, host: Host) -> None:
        """Bind the runtime, open the HTTP client, start the scheduler (if enabled)."""
        runtime = self._runtimes[host.registry]
        await runtime.start(host)

    @hookimpl
    async def reactive_shutdown(self, host: Host) -> None:
        """Stop the scheduler and release its leases; close the HTTP client."""
        runtime = self._runtimes.get(host.registry)
        if runtime is not None:
            await runtime.stop()


plugin = HealthPlugin()
