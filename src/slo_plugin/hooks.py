"""The SLO plugin's hooks; the `slo` entry point names `SloPlugin`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from reactive_core import (
    CliCommand,
    DemoStep,
    ReadThroughCache,
    RetryPolicy,
    WorkQueue,
    hookimpl,
)

from . import store
from .commands import burn_alert_logger, slo_command, summary
from .config import (
    MAINTENANCE_ORDER,
    MAINTENANCE_SECTION,
    OBJECTIVES_ORDER,
    OBJECTIVES_SECTION,
    MaintenanceDeclaration,
    ObjectiveDeclaration,
    apply_maintenance,
    apply_objectives,
    prune_maintenance,
    prune_objectives,
)
from .demo import SloDemo
from .derivers import ACHIEVEMENT_KIND, DIGEST_KIND, derive_slo_triggers, slo_trigger_payload
from .entity import SLO_KIND, SloState
from .handlers import (
    SYSTEM_CLEANUP_GROUP,
    SYSTEM_DOWN_GROUP,
    SYSTEM_UP_GROUP,
    UPSTREAM_DOWN_GROUP,
    SloHandlers,
)
from .milestones import AchievementReader, AchievementState, DigestState, digest_ids, read_digests
from .schema import (
    ACHIEVEMENT_TABLES,
    DIGEST_TABLES,
    ENTITY_TABLES,
    metadata,
    slo_maintenance_windows,
    slo_snapshots,
)
from .service import SloService
from .surroundings import CATALOG_KIND, HEALTH_KIND, Surroundings

if TYPE_CHECKING:
    from reactive_core import EntityChange, Host, Registry, Timer

REFRESH_TOPIC = "slo.refresh"
"""The recurring timer that refreshes objectives with open downtime."""
REFRESH_KEY = "all"


class SloSettings(BaseModel):
    """Per-host settings: `Host(config={"plugins": {"slo": {...}}})`.

    `refresh_seconds`: how often objectives with open downtime (and those following one
    check) are reconciled with live health and their `slo` entity re-read, so a rule
    over `budgetRemainingPercent` sees a crossing within that period.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    refresh_seconds: float = Field(default=60.0, ge=1.0, le=86_400.0)
    cache_ttl_seconds: float | None = Field(default=30.0, ge=0)


class SloPlugin:
    """Objectives, downtime and the computed `slo` kind; one instance per host."""

    name = "slo"

    def __init__(self) -> None:
        self.service: SloService | None = None
        self.settings = SloSettings()
        self._host: Host | None = None

    @hookimpl
    def reactive_register(self, registry: Registry, host: Host) -> None:
        """Declare tables, kinds, triggers, subscribers and the refresh timer; build the
        service."""
        self._host = host
        self.settings = settings = host.plugin_settings("slo", SloSettings)
        registry.add_tables(metadata, migrations="slo_plugin:migrations")
        around = Surroundings(host)
        service_box: list[SloService] = []

        def read_slo(tx: object, ids: list[str]) -> dict[str, SloState]:
            return service_box[0].reader.read(tx, ids)  # type: ignore[arg-type]

        registry.define_entity(SLO_KIND, state=SloState, read=read_slo, tables=ENTITY_TABLES,
                               ids=store.objective_ids_in)
        achievements = AchievementReader(around)
        registry.define_entity(ACHIEVEMENT_KIND, state=AchievementState,
                               read=achievements.read, tables=ACHIEVEMENT_TABLES,
                               ids=achievements.ids)
        registry.define_entity(DIGEST_KIND, state=DigestState, read=read_digests,
                               tables=DIGEST_TABLES, ids=digest_ids)
        registry.declare_non_reactive_state(
            slo_snapshots.name, "bookkeeping",
            "one row per objective and UTC day, written once by the daily job")
        registry.declare_non_reactive_state(
            slo_maintenance_windows.name, "bookkeeping",
            "maintenance windows declared in config files; objectives read them")
        for kind in (SLO_KIND, ACHIEVEMENT_KIND, DIGEST_KIND):
            registry.register_change_deriver(kind, derive_slo_triggers,
                                             to_payload=slo_trigger_payload)
        self.service = service = SloService(
            host=host, cache=ReadThroughCache(ttl=settings.cache_ttl_seconds), clock=host.clock)
        service_box.append(service)
        from .jobs import DAILY_CRON, DAILY_JOB, WEEKLY_DIGEST_CRON, WEEKLY_DIGEST_JOB, SloJobs

        jobs = SloJobs(host=host, service=service)
        handlers = SloHandlers(service, on_recovery=jobs.evaluate_achievements_for)
        registry.on_entity_changed(SLO_KIND, self._invalidate)
        if host.config.workers:  # a serving host logs each burn alert change
            registry.on_entity_changed(SLO_KIND, burn_alert_logger())
        registry.on_entity_changed(HEALTH_KIND, self._invalidate)
        registry.on_entity_changed(HEALTH_KIND, handlers.system_down,
                                   delivery=WorkQueue(SYSTEM_DOWN_GROUP))
        registry.on_entity_changed(HEALTH_KIND, handlers.upstream_down,
                                   delivery=WorkQueue(UPSTREAM_DOWN_GROUP))
        registry.on_entity_changed(HEALTH_KIND, handlers.system_up,
                                   delivery=WorkQueue(SYSTEM_UP_GROUP))
        registry.on_entity_changed(CATALOG_KIND, handlers.system_removed,
                                   delivery=WorkQueue(SYSTEM_CLEANUP_GROUP))
        registry.on_timer(REFRESH_TOPIC, self._refresh, concurrency=1,
                          retry=RetryPolicy(max_retries=0))
        registry.add_job(DAILY_JOB, jobs.daily, cron=DAILY_CRON)
        registry.add_job(WEEKLY_DIGEST_JOB, jobs.weekly_digest, cron=WEEKLY_DIGEST_CRON)
        registry.add_config_section(
            MAINTENANCE_SECTION, MaintenanceDeclaration,
            lambda tx, host_, items: apply_maintenance(tx, host_, service, items),
            order=MAINTENANCE_ORDER, identity=["id"],
            prune=lambda tx, host_, items: prune_maintenance(tx, host_, service, items))
        registry.add_config_section(
            OBJECTIVES_SECTION, ObjectiveDeclaration,
            lambda tx, _host, items: apply_objectives(tx, service, items),
            order=OBJECTIVES_ORDER, identity=["id"],
            prune=lambda tx, _host, items: prune_objectives(tx, service, items))

    async def _invalidate(self, change: EntityChange) -> None:
        """Broadcast on `slo` and `health`: drop cached reads on every instance (an
        objective's status reads live health)."""
        if self.service is not None:
            self.service.invalidate()

    async def _refresh(self, timer: Timer) -> None:
        if self.service is not None:
            await self.service.refresh()

    @hookimpl
    async def reactive_startup(self, host: Host) -> None:
        """Arm the refresh timer (once per cluster; re-armed when its period changed)."""
        if not host.config.workers:
            return
        every = self.settings.refresh_seconds
        current = await host.timers.get(REFRESH_TOPIC, REFRESH_KEY)
        if current is None or current.every_seconds != every:
            await host.timers.schedule(REFRESH_TOPIC, REFRESH_KEY, every=every)

    @hookimpl
    def reactive_cli_commands(self) -> list[CliCommand]:
        """`reactive slo`."""
        assert self.service is not None
        return [slo_command(self.service)]

    @hookimpl
    def reactive_summary(self, host: Host) -> Any:
        """How many objectives are breaching, for `reactive serve`'s summary line."""
        assert self.service is not None
        return summary(self.service)

    @hookimpl
    def reactive_demo_steps(self) -> list[DemoStep]:
        """An objective on the flaky target's system, an upstream that fails first, and
        the `slo` entity's changes as they happen."""
        assert self.service is not None
        return SloDemo(self.service).steps()

    @hookimpl
    def reactive_http_routes(self, host: Host) -> list[Any]:
        """The plugin's part of the HTTP API (`slo_plugin.http`)."""
        assert self.service is not None
        from .http import routes
        return routes(self.service)

    @hookimpl
    def reactive_metrics(self, host: Host) -> list[Any]:
        """The plugin's collectors on `/metrics` (`slo_plugin.metrics`)."""
        assert self.service is not None
        from .metrics import collectors
        return collectors(self.service)
