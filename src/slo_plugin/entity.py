"""The computed `slo` kind: one entity per objective, its budget as of now.

`read(tx, ids)` assembles each objective's status from its events in the window, live
health, its maintenance windows and its streak, through `compute_status`. Time moves
the budget of an objective with open downtime without any write, so the plugin
mutates the entity whenever an input moves and refreshes those with open downtime on
a timer (see `hooks`): its change log follows the budget within one refresh period.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from sqlalchemy import Connection

from . import store
from .engine import compute_status
from .models import BurnAlert, Objective, SloStatus
from .surroundings import Surroundings

SLO_KIND = "slo"
"""The entity kind of objectives' live budgets, keyed by objective id."""


class SloState(BaseModel):
    """The state of one `slo` entity. Field names are camelCase in the entity (the
    automation contract: `state.slo['obj-1'].budgetRemainingPercent`); Python
    attributes are snake_case."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel,
                              populate_by_name=True, serialize_by_alias=True)

    objective_id: str
    system_id: str
    target: float
    budget_remaining_percent: float
    current_streak: int
    best_streak: int
    availability: float
    burn_rate: float | None
    is_breaching: bool
    burn_alert: BurnAlert


class SloReader:
    """Reads objectives' statuses (and `slo` states) as of the host's clock."""

    def __init__(self, surroundings: Surroundings, clock: Callable[[], datetime]) -> None:
        self._around = surroundings
        self._clock = clock

    def statuses_in(self, tx: Connection, ids: Sequence[str], now: datetime | None = None,
                    ) -> dict[str, tuple[Objective, SloStatus]]:
        """Each objective of `ids` that exists, with its status at `now`."""
        now = now or self._clock()
        objectives = store.objectives_in(tx, ids)
        if not objectives:
            return {}
        longest = max(o.window_days for o in objectives)
        events = store.window_events_in(tx, [o.id for o in objectives],
                                        now - timedelta(days=longest))
        systems = sorted({o.system_id for o in objectives if o.exclude_maintenance})
        maintenance = store.maintenance_in(tx, systems, now - timedelta(days=longest))
        # Live health: one read for every system the objectives follow; the few that
        # follow one check read it each.
        down = self._around.systems_down_in(tx, sorted(
            {o.system_id for o in objectives if o.health_check_configuration_id is None}))
        found: dict[str, tuple[Objective, SloStatus]] = {}
        for objective in objectives:
            if objective.health_check_configuration_id is None:
                currently_down = objective.system_id in down
            else:
                currently_down = self._around.objective_in(tx, objective).down
            status = compute_status(
                objective, events[objective.id], now=now, currently_down=currently_down,
                maintenance=maintenance.get(objective.system_id, ()))
            found[objective.id] = (objective, status)
        return found

    def read(self, tx: Connection, ids: Sequence[str]) -> dict[str, SloState]:
        """The `slo` state of each objective of `ids` that exists."""
        statuses = self.statuses_in(tx, ids)
        streaks = store.streaks_in(tx, list(statuses))
        return {oid: state_of(objective, status, streaks.get(oid, store.Streak()))
                for oid, (objective, status) in statuses.items()}


def state_of(objective: Objective, status: SloStatus, streak: store.Streak) -> SloState:
    """The `slo` entity's state from an objective's status and streak."""
    return SloState(
        objective_id=objective.id, system_id=objective.system_id, target=objective.target,
        budget_remaining_percent=status.error_budget_remaining_percent,
        current_streak=streak.current, best_streak=streak.best,
        availability=status.current_availability, burn_rate=status.burn_rate,
        is_breaching=status.is_breaching, burn_alert=status.burn_alert)
