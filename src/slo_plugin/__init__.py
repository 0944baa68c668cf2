"""The SLO plugin: objectives over systems' health, their error budgets, downtime
attributed to the system or to an upstream it depends on, streaks and achievements,
and the live `slo` entity (kind `slo`, keyed by objective id).

Needs the catalog plugin (systems and their dependencies) and the health plugin (what
is down). The `slo` entry point names `SloPlugin`.
"""

from __future__ import annotations

from .achievements import Achievement, AchievementContext, evaluate_achievements
from .derivers import (
    ACHIEVEMENT_KIND,
    ACHIEVEMENT_UNLOCKED,
    DIGEST_KIND,
    WEEKLY_DIGEST,
    derive_slo_triggers,
)
from .engine import compute_status
from .entity import SLO_KIND, SloState
from .handlers import (
    SYSTEM_CLEANUP_GROUP,
    SYSTEM_DOWN_GROUP,
    SYSTEM_UP_GROUP,
    UPSTREAM_DOWN_GROUP,
)
from .hooks import REFRESH_TOPIC, SloPlugin, SloSettings
from .milestones import AchievementState, DigestState
from .models import (
    Attribution,
    BurnAlert,
    BurnRateThresholds,
    DependencyExclusion,
    DowntimeEvent,
    MaintenanceWindow,
    Objective,
    SloStatus,
)
from .reads import EventView, Milestone, ObjectiveView, Snapshot
from .service import InvalidObjective, SloError, SloService, UnknownObjective, slo_service

__all__ = [
    "ACHIEVEMENT_KIND",
    "ACHIEVEMENT_UNLOCKED",
    "Achievement",
    "AchievementContext",
    "AchievementState",
    "Attribution",
    "BurnAlert",
    "BurnRateThresholds",
    "DIGEST_KIND",
    "DependencyExclusion",
    "DigestState",
    "DowntimeEvent",
    "EventView",
    "InvalidObjective",
    "MaintenanceWindow",
    "Milestone",
    "Objective",
    "ObjectiveView",
    "REFRESH_TOPIC",
    "SLO_KIND",
    "SYSTEM_CLEANUP_GROUP",
    "SYSTEM_DOWN_GROUP",
    "SYSTEM_UP_GROUP",
    "SloError",
    "SloPlugin",
    "SloService",
    "SloSettings",
    "SloState",
    "SloStatus",
    "Snapshot",
    "UPSTREAM_DOWN_GROUP",
    "UnknownObjective",
    "WEEKLY_DIGEST",
    "compute_status",
    "derive_slo_triggers",
    "evaluate_achievements",
    "slo_service",
]
