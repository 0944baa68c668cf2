"""Cross-plugin cleanup: a tombstoned catalog system loses its health associations."""

from __future__ import annotations

from reactive_core import EntityChange

from .models import HealthError
from .runtime import HealthRuntime
from .service import HealthService

SYSTEM_CLEANUP_GROUP = "health-system-cleanup"
"""The work-queue group that removes a tombstoned catalog system's associations."""


class SystemCleanup:
    """Work-queue handler: a tombstoned catalog system loses its health associations.

    Idempotent: a repeated delivery removes nothing more, and associations made after
    the tombstone (the system was re-created meanwhile) are kept.
    """

    def __init__(self, runtime: HealthRuntime) -> None:
        self._runtime = runtime

    async def handle(self, change: EntityChange) -> None:
        """Remove the associations of the system a tombstone deleted; ignore other changes."""
        if not change.is_tombstone:
            return
        if self._runtime.host is None:
            raise HealthError(
                f"health system cleanup received change {change.change_id} of "
                f"{change.kind}:{change.id} before its host started: expected "
                f"reactive_startup to have bound the host")
        await HealthService(self._runtime.host).remove_system(
            change.id, before=change.occurred_at, reason=f"system {change.id} deleted")
