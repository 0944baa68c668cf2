"""The computed `slo` kind: one entity per objective, its budget as of now.

`read(tx, ids)` assembles each objective's budget from its events in the window, its
maintenance windows and its streak, through `compute_budget` (`compute_status`'s
figures without attribution and burn-window pairs); live health is read only for the
objectives with an open event, the only ones it can change. Time moves
the budget of an objective with open downtime without any write, so the plugin
mutates the entity whenever an input moves and refreshes those with open downtime on
a timer (see `hooks`): its change log follows the budget within one refresh period.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from sqlalchemy import Connection

from . import store
from .engine import Budget, EventColumns, compute_budget, compute_status
from .models import BurnAlert, Objective, SloStatus
from .surroundings import Surroundings

R = TypeVar("R")

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
        return self._each_in(tx, ids, now, compute_status, upstreams=True)

    def budgets_in(self, tx: Connection, ids: Sequence[str], now: datetime | None = None,
                   ) -> dict[str, tuple[Objective, Budget]]:
        """Each objective of `ids` that exists, with its budget figures at `now` (what the
        `slo` entity shows: `compute_status`'s numbers without attribution and pairs)."""
        return self._each_in(tx, ids, now, compute_budget, upstreams=False)

    def _each_in(self, tx: Connection, ids: Sequence[str], now: datetime | None,
                 compute: Callable[..., R], *, upstreams: bool,
                 ) -> dict[str, tuple[Objective, R]]:
        now = now or self._clock()
        objectives = store.objectives_in(tx, ids)
        if not objectives:
            return {}
        longest = max(o.window_days for o in objectives)
        systems = sorted({o.system_id for o in objectives if o.exclude_maintenance})
        maintenance = store.maintenance_in(tx, systems, now - timedelta(days=longest))

        def one(objective: Objective, events: EventColumns, currently_down: bool) -> R:
            return compute(objective, events, now=now, currently_down=currently_down,
                           maintenance=maintenance.get(objective.system_id, ()))

        # Each objective computed as soon as its events are read (they die young). Live
        # health matters only to an objective with an open event (a closed history
        # counts the same either way): only those wait for it.
        by_id = {o.id: o for o in objectives}
        computed: dict[str, R] = {}
        waiting: list[tuple[Objective, EventColumns]] = []
        for oid, events in store.iter_window_events_in(
                tx, list(by_id), now - timedelta(days=longest), upstreams=upstreams):
            if None in events.ends:
                waiting.append((by_id[oid], events))
            else:
                computed[oid] = one(by_id[oid], events, False)
        if waiting:
            # One read for every system they follow; the few that follow one check
            # read it each.
            down = self._around.systems_down_in(tx, sorted(
                {o.system_id for o, _ in waiting if o.health_check_configuration_id is None}))
            for objective, events in waiting:
                computed[objective.id] = one(objective, events, (
                    objective.system_id in down if objective.health_check_configuration_id
                    is None else self._around.objective_in(tx, objective).down))
        return {o.id: (o, computed[o.id] if o.id in computed
                       else one(o, EventColumns([], [], [], [], []), False))
                for o in objectives}

    def read(self, tx: Connection, ids: Sequence[str]) -> dict[str, SloState]:
        """The `slo` state of each objective of `ids` that exists."""
        budgets = self.budgets_in(tx, ids)
        streaks = store.streaks_in(tx, list(budgets))
        none = store.Streak()
        states = {}
        for oid, (objective, budget) in budgets.items():
            streak = streaks.get(oid, none)
            states[oid] = SloState(
                objective_id=oid, system_id=objective.system_id, target=objective.target,
                budget_remaining_percent=budget.remaining_percent,
                current_streak=streak.current, best_streak=streak.best,
                availability=budget.availability, burn_rate=budget.burn_rate,
                is_breaching=budget.is_breaching, burn_alert=budget.burn_alert)
        return states
