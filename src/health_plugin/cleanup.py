"""Cross-plugin cleanup: a tombstoned catalog system loses its health associations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reactive_core import EntityChange

if TYPE_CHECKING:
    from .service import HealthService

SYSTEM_CLEANUP_GROUP = "health-system-cleanup"
"""The work-queue group that removes a tombstoned catalog system's associations."""


class SystemCleanup:
    """Work-queue handler: a tombstoned catalog system loses its health associations.

    Idempotent: a repeated delivery removes nothing more, and associations made after
    the tombstone (the system was re-created meanwhile) are kept.
    """

    def __init__(self, service: HealthService) -> None:
        self._service = service

    async def handle(self, change: EntityChange) -> None:
        """Remove the associations of the system a tombstone deleted; ignore other changes."""
        if not change.is_tombstone:
            return
        await self._service.remove_system(
            change.id, before=change.occurred_at, reason=f"system {change.id} deleted")
