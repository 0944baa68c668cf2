"""The SLO plugin's subscribers: `health` changes drive downtime, catalog tombstones
remove objectives.

Each reacts in its own work-queue group (so once per cluster, in per-system order
within the group) and decides from `classify_health_change`; the groups are
independent, so the rules they call are written to hold whichever runs first (see
`downtime`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from health_plugin import classify_health_change

if TYPE_CHECKING:
    from reactive_core import EntityChange

    from .service import SloService

SYSTEM_DOWN_GROUP = "slo-system-down"
SYSTEM_UP_GROUP = "slo-system-up"
UPSTREAM_DOWN_GROUP = "slo-upstream-down"
SYSTEM_CLEANUP_GROUP = "slo-system-cleanup"


class SloHandlers:
    """Work-queue handlers over one host's `SloService`."""

    def __init__(self, service: SloService,
                 on_recovery: Callable[[str], Awaitable[None]] | None = None) -> None:
        self._service = service
        self._on_recovery = on_recovery

    async def system_down(self, change: EntityChange) -> None:
        """`slo-system-down`: a system went down ⇒ its objectives open events."""
        seen = classify_health_change(change)
        if seen.degraded:
            await self._service.system_went_down(seen.system_id, change.occurred_at)

    async def upstream_down(self, change: EntityChange) -> None:
        """`slo-upstream-down`: a system went down ⇒ the self events of the systems
        depending on it split."""
        seen = classify_health_change(change)
        if seen.degraded:
            await self._service.upstream_went_down(seen.system_id, change.occurred_at)

    async def system_up(self, change: EntityChange) -> None:
        """`slo-system-up`: a system recovered ⇒ its events close, downstream events
        blamed on it close (reopening as self where still down), achievements."""
        seen = classify_health_change(change)
        if not seen.recovered:
            return
        await self._service.system_came_up(seen.system_id, change.occurred_at)
        await self._service.upstream_came_up(seen.system_id, change.occurred_at)
        if self._on_recovery is not None:
            await self._on_recovery(seen.system_id)

    async def system_removed(self, change: EntityChange) -> None:
        """`slo-system-cleanup`: a catalog system was deleted ⇒ its objectives (their
        `slo` entities tombstoned) and achievements go."""
        if change.next is None and change.prev is not None:
            await self._service.forget_system(change.id)
