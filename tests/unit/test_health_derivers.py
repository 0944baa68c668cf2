"""Triggers, classification and payload of `health` changes (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from health_plugin import (
    HealthChangeClassification,
    HealthStatus,
    classify_health_change,
    derive_health_triggers,
    health_change_payload,
)
from reactive_core import EntityChange, diff_states

DEGRADED = "healthcheck.system_degraded"
HEALTHY = "healthcheck.system_healthy"
CHANGED = "healthcheck.system_health_changed"
WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def state(status: str, healthy: int = 1, total: int = 1) -> dict[str, Any]:
    return {"status": status, "healthyChecks": healthy, "totalChecks": total}


def change(prev: dict[str, Any] | None, nxt: dict[str, Any] | None) -> EntityChange:
    delta, changed = diff_states(prev, nxt)
    if nxt is None:
        delta, changed = {}, tuple(sorted(prev or {}))
    return EntityChange(change_id="c-1", seq=7, kind="health", id="api", prev=prev, next=nxt,
                        delta=delta, changed_fields=changed, occurred_at=WHEN)


@pytest.mark.parametrize(("prev", "nxt", "expected"), [
    (state("healthy"), state("unhealthy", 0), [DEGRADED, CHANGED]),
    (state("healthy", 2, 2), state("degraded", 1, 2), [DEGRADED, CHANGED]),
    (state("degraded", 0), state("healthy"), [HEALTHY, CHANGED]),
    (state("unhealthy", 0), state("healthy"), [HEALTHY, CHANGED]),
    (state("degraded", 1, 2), state("unhealthy", 0, 2), [CHANGED]),
    (state("unhealthy", 0, 2), state("degraded", 1, 2), [CHANGED]),
])
def test_status_changes_derive_their_triggers(
    prev: dict[str, Any], nxt: dict[str, Any], expected: list[str]
) -> None:
    assert derive_health_triggers(change(prev, nxt)) == expected


@pytest.mark.parametrize(("prev", "nxt"), [
    (None, state("healthy")),                          # create
    (None, state("unhealthy", 0)),                     # create, already failing
    (state("degraded", 0), None),                      # tombstone
    (state("healthy", 1, 1), state("healthy", 2, 2)),  # counts only
    (state("degraded", 1, 3), state("degraded", 2, 3)),
])
def test_create_tombstone_and_counts_only_derive_nothing(
    prev: dict[str, Any] | None, nxt: dict[str, Any] | None
) -> None:
    assert derive_health_triggers(change(prev, nxt)) == []


def test_classification() -> None:
    assert classify_health_change(change(state("healthy"), state("degraded", 0))) == \
        HealthChangeClassification(system_id="api", previous_status=HealthStatus.HEALTHY,
                                   new_status=HealthStatus.DEGRADED, degraded=True,
                                   recovered=False)
    recovered = classify_health_change(change(state("unhealthy", 0), state("healthy")))
    assert (recovered.degraded, recovered.recovered) == (False, True)
    worse = classify_health_change(change(state("degraded", 0), state("unhealthy", 0)))
    assert (worse.previous_status, worse.new_status) == ("degraded", "unhealthy")
    assert (worse.degraded, worse.recovered) == (False, False)
    created = classify_health_change(change(None, state("unhealthy", 0)))
    assert (created.previous_status, created.new_status) == (None, HealthStatus.UNHEALTHY)
    assert (created.degraded, created.recovered) == (False, False)
    gone = classify_health_change(change(state("degraded", 0), None))
    assert (gone.new_status, gone.degraded, gone.recovered) == (None, False, False)


def test_payload() -> None:
    assert health_change_payload(change(state("healthy", 2, 2), state("degraded", 1, 2))) == {
        "systemId": "api", "previousStatus": "healthy", "newStatus": "degraded",
        "healthyChecks": 1, "totalChecks": 2, "timestamp": "2025-01-02T03:04:05+00:00",
    }
    assert health_change_payload(change(state("degraded", 0), None)) == {
        "systemId": "api", "previousStatus": "degraded", "newStatus": None,
        "healthyChecks": None, "totalChecks": None, "timestamp": "2025-01-02T03:04:05+00:00",
    }
