"""The health plugin: checks that run, and per-system health (kind `health`) computed from them.

Checks (`http`, `tcp`, or strategies from other plugins) are attached to catalog
systems; each enabled, unpaused check is a durable timer that runs it at its interval,
once per cluster, and records every run in the same transaction as the `health` mutation it
causes. A system's health is the worst of its checks, each evaluated on its newest
100 runs with consecutive or window thresholds.
"""

from __future__ import annotations

from .associations import AssociationWrite
from .checks import CheckWrite
from .cleanup import SYSTEM_CLEANUP_GROUP
from .derivers import (
    SYSTEM_DEGRADED,
    SYSTEM_HEALTH_CHANGED,
    SYSTEM_HEALTHY,
    HealthChangeClassification,
    classify_health_change,
    derive_health_triggers,
    health_change_payload,
)
from .entity import CheckState, check_state_in
from .evaluator import HealthStatus, ThresholdMode, Thresholds, evaluate_status
from .hooks import HealthPlugin
from .models import (
    HEALTH_KIND,
    Association,
    AssociationDeclaration,
    CheckConfiguration,
    CheckDeclaration,
    CheckRun,
    CheckStateTransition,
    HealthError,
    HealthSettings,
    HealthState,
    InvalidCheck,
    UnknownCheck,
    UnknownSystem,
)
from .scheduler import CHECK_TOPIC
from .service import HealthService, health_service
from .status import SystemStatus
from .strategies import CheckOutcome, Strategy, StrategyContext

__all__ = [
    "Association",
    "AssociationDeclaration",
    "AssociationWrite",
    "CHECK_TOPIC",
    "CheckConfiguration",
    "CheckDeclaration",
    "CheckOutcome",
    "CheckRun",
    "CheckState",
    "CheckStateTransition",
    "CheckWrite",
    "HEALTH_KIND",
    "HealthChangeClassification",
    "HealthError",
    "HealthPlugin",
    "HealthService",
    "HealthSettings",
    "HealthState",
    "HealthStatus",
    "InvalidCheck",
    "SYSTEM_CLEANUP_GROUP",
    "SYSTEM_DEGRADED",
    "SYSTEM_HEALTHY",
    "SYSTEM_HEALTH_CHANGED",
    "Strategy",
    "StrategyContext",
    "SystemStatus",
    "ThresholdMode",
    "Thresholds",
    "UnknownCheck",
    "UnknownSystem",
    "check_state_in",
    "classify_health_change",
    "derive_health_triggers",
    "evaluate_status",
    "health_change_payload",
    "health_service",
]
