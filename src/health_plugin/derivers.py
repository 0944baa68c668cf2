"""Automation triggers and payloads derived from `health` changes.

Only a status change of an entity that exists before and after fires anything:
a create (the first association) and a tombstone (the last one removed) have no
previous aggregate to react to, and a change of the counts alone is not a status
change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reactive_core import EntityChange

from .evaluator import HealthStatus

SYSTEM_HEALTHY = "healthcheck.system_healthy"
SYSTEM_DEGRADED = "healthcheck.system_degraded"
SYSTEM_HEALTH_CHANGED = "healthcheck.system_health_changed"


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthChangeClassification:
    """What a `health` change means for consumers such as the SLO plugin.

    `degraded`: the system was healthy and now is not. `recovered`: it is healthy now
    and was not. Both need the entity before and after the change.
    """

    system_id: str
    previous_status: HealthStatus | None
    new_status: HealthStatus | None
    degraded: bool
    recovered: bool


def _status(state: dict[str, Any] | None) -> HealthStatus | None:
    if state is None:
        return None
    value = state.get("status")
    try:
        return HealthStatus(value) if isinstance(value, str) else None
    except ValueError:
        return None


def classify_health_change(change: EntityChange) -> HealthChangeClassification:
    """Classify a `health` change as a degradation, a recovery, or neither."""
    previous = _status(change.prev)
    new = _status(change.next)
    both = previous is not None and new is not None
    return HealthChangeClassification(
        system_id=change.id,
        previous_status=previous,
        new_status=new,
        degraded=both and previous is HealthStatus.HEALTHY and new is not HealthStatus.HEALTHY,
        recovered=both and new is HealthStatus.HEALTHY and previous is not HealthStatus.HEALTHY,
    )


def derive_health_triggers(change: EntityChange) -> list[str]:
    """The trigger ids of a `health` change (see the module docstring for when)."""
    previous = _status(change.prev)
    new = _status(change.next)
    if previous is None or new is None or previous is new:
        return []
    if new is HealthStatus.HEALTHY:
        return [SYSTEM_HEALTHY, SYSTEM_HEALTH_CHANGED]
    if previous is HealthStatus.HEALTHY:
        return [SYSTEM_DEGRADED, SYSTEM_HEALTH_CHANGED]
    return [SYSTEM_HEALTH_CHANGED]


def health_change_payload(change: EntityChange) -> dict[str, Any]:
    """`{systemId, previousStatus, newStatus, healthyChecks, totalChecks, timestamp}`.

    The counts are those after the change (None on a tombstone); `timestamp` is when
    the change happened, ISO 8601 in UTC.
    """
    previous = _status(change.prev)
    new = _status(change.next)
    after = change.next or {}
    return {
        "systemId": change.id,
        "previousStatus": previous.value if previous is not None else None,
        "newStatus": new.value if new is not None else None,
        "healthyChecks": after.get("healthyChecks"),
        "totalChecks": after.get("totalChecks"),
        "timestamp": change.occurred_at.isoformat(),
    }
