"""Rows for a `reactive status` listing: every system's health and since when."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .models import HEALTH_KIND
from .service import HealthService

if TYPE_CHECKING:
    from reactive_core import Host


async def status_rows(host: Host) -> list[dict[str, Any]]:
    """One row per system with a `health` entity, by system id.

    Keys: `system_id`, `status` (str), `healthy_checks`, `total_checks`, and `since`
    (an aware UTC datetime: when the status took its current value, from the
    transition log; None when unknown). Works on a host whose plugins are only
    loaded (CLI inspection) as well as on a running one.
    """
    states = await HealthService(host).statuses()
    handle = host.entity(HEALTH_KIND)
    rows: list[dict[str, Any]] = []
    for system_id, state in states.items():
        rows.append({
            "system_id": system_id,
            "status": state.status.value,
            "healthy_checks": state.healthy_checks,
            "total_checks": state.total_checks,
            "since": await handle.in_state_since(system_id, "status"),
        })
    return rows
