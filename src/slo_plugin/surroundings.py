"""What the SLO plugin reads from the other plugins: live health, the catalog's edges
and names. Looked up when used, so the plugins may register in any order; without the
health plugin no system is ever down, without the catalog no system has upstreams.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from .models import Objective

if TYPE_CHECKING:
    from reactive_core import Host

HEALTH_KIND = "health"
CATALOG_KIND = "catalog-system"


@dataclass(frozen=True, slots=True)
class Live:
    """Whether what an objective follows is down right now, and since when."""

    down: bool
    since: datetime | None


class Surroundings:
    """Live health and the catalog, read inside a unit of work."""

    def __init__(self, host: Host) -> None:
        self._host = host

    def _kind(self, kind: str) -> Any:
        return self._host.entity(kind) if kind in self._host.registry.kinds else None

    def _catalog(self) -> Any:
        if CATALOG_KIND not in self._host.registry.kinds:
            return None
        from catalog_plugin import catalog_of

        return catalog_of(self._host)

    def system_in(self, tx: Connection, system_id: str) -> Live:
        """The system's health: down when not healthy (degraded or unhealthy); since when
        its status holds (from the transition log)."""
        health = self._kind(HEALTH_KIND)
        if health is None:
            return Live(down=False, since=None)
        state = health.get_in(tx, system_id)
        if state is None:
            return Live(down=False, since=None)
        down = str(getattr(state, "status", "healthy")) != "healthy"
        return Live(down=down, since=health.in_state_since_in(tx, system_id, "status"))

    def objective_in(self, tx: Connection, objective: Objective) -> Live:
        """What `objective` follows: its one check, or else its system's health."""
        check = objective.health_check_configuration_id
        if check is None:
            return self.system_in(tx, objective.system_id)
        if HEALTH_KIND not in self._host.registry.kinds:
            return Live(down=False, since=None)
        from health_plugin import check_state_in

        state = check_state_in(tx, objective.system_id, check)
        if state is None:
            return Live(down=False, since=None)
        return Live(down=state.status.value != "healthy", since=state.since)

    def check_exists_in(self, tx: Connection, system_id: str, check_id: str) -> bool:
        """True when check `check_id` is associated with (evaluated for) the system."""
        if HEALTH_KIND not in self._host.registry.kinds:
            return False
        from health_plugin import check_state_in

        return check_state_in(tx, system_id, check_id) is not None

    def systems_down_in(self, tx: Connection, system_ids: list[str]) -> set[str]:
        """Which of `system_ids` are down right now."""
        health = self._kind(HEALTH_KIND)
        if health is None or not system_ids:
            return set()
        states = health.get_many_in(tx, system_ids)
        return {sid for sid, state in states.items()
                if str(getattr(state, "status", "healthy")) != "healthy"}

    def system_exists_in(self, tx: Connection, system_id: str) -> bool:
        """True when the catalog has the system."""
        return system_id in self.names_in(tx, [system_id])

    def upstreams_in(self, tx: Connection, system_id: str) -> list[str]:
        """The systems `system_id` depends on, by id."""
        catalog = self._catalog()
        if catalog is None:
            return []
        return sorted(d.target_system_id for d in catalog.upstream_of_in(tx, system_id))

    def downstreams_in(self, tx: Connection, system_id: str) -> list[str]:
        """The systems that depend on `system_id`, by id."""
        catalog = self._catalog()
        if catalog is None:
            return []
        return sorted(d.source_system_id for d in catalog.downstream_of_in(tx, system_id))

    def name_in(self, tx: Connection, system_id: str) -> str | None:
        """The catalog's name of the system (None when unknown)."""
        return self.names_in(tx, [system_id]).get(system_id)

    def names_in(self, tx: Connection, system_ids: list[str]) -> dict[str, str]:
        """The catalog's names of the systems it knows among `system_ids`."""
        systems = self._kind(CATALOG_KIND)
        if systems is None or not system_ids:
            return {}
        return {sid: str(s.name) for sid, s in systems.get_many_in(tx, system_ids).items()}
