"""The cached status read API, and the rows of `reactive status`."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

from .entity import read_all
from .models import HealthState
from .runs import RunOps

ALL_KEY = "all"
ROWS_KEY = "rows"
"""The cached `system_statuses` (names and since-times included)."""


def system_key(system_id: str) -> str:
    """The cache key of one system's status."""
    return f"system:{system_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemStatus:
    """One row of `reactive status`: a system's health and since when it holds."""

    system_id: str
    name: str | None
    status: str
    healthy_checks: int
    total_checks: int
    since: datetime | None


class StatusOps(RunOps):
    """The read side of `HealthService`, served from a read-through cache.

    Every health write invalidates the system's entry after commit and before any
    subscriber is woken (see `writes`); a broadcast subscriber invalidates on every
    instance, for changes other instances write. Concurrent misses load once.
    """

    def invalidate(self, system_id: str) -> None:
        """Drop the cached status of `system_id` and the cached list of all statuses."""
        self._cache.invalidate(system_key(system_id))
        self._cache.invalidate(ALL_KEY)
        self._cache.invalidate(ROWS_KEY)

    def invalidate_names(self) -> None:
        """A catalog system changed: drop the cached rows (they show its name)."""
        self._cache.invalidate(ROWS_KEY)

    async def status(self, system_id: str) -> HealthState | None:
        """The health of `system_id` (None when absent), from the cache."""
        return await self._cache.get(  # type: ignore[return-value]
            system_key(system_id), functools.partial(self._health.get, system_id))

    async def statuses(self) -> dict[str, HealthState]:
        """The health of every system that has one, by id (sorted), from the cache."""
        states: dict[str, HealthState] = await self._cache.get(  # type: ignore[assignment]
            ALL_KEY, functools.partial(self._host.read, read_all))
        return dict(states)

    async def system_statuses(self) -> list[SystemStatus]:
        """Every system with a `health` entity, by id, with its catalog name (if any) and
        since when its status holds (from the transition log), from the cache."""
        rows: list[SystemStatus] = await self._cache.get(  # type: ignore[assignment]
            ROWS_KEY, self._system_statuses)
        return list(rows)

    async def _system_statuses(self) -> list[SystemStatus]:
        states = await self.statuses()
        names: dict[str, str | None] = {}
        if states and self._catalog_kind in self._host.registry.kinds:
            systems = await self._host.entity(self._catalog_kind).get_many(states)
            names = {sid: getattr(state, "name", None) for sid, state in systems.items()}
        since = await self._host.read(self._health.in_state_since_many_in, list(states),
                                      "status")
        return [SystemStatus(
            system_id=system_id, name=names.get(system_id), status=state.status.value,
            healthy_checks=state.healthy_checks, total_checks=state.total_checks,
            since=since.get(system_id))
            for system_id, state in states.items()]
