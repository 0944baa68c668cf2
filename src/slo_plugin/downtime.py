"""When downtime events open, close, split and reopen.

Every rule runs inside the unit of work that mutates the objective's `slo` entity, so
it holds the entity's lock: two handlers of one objective never interleave, and
"open an event unless one is open" cannot open two.

The handlers (see `handlers`) act on what a `health` change says happened, at the
change's time; `reconcile_in` repairs what no handler saw — an orphaned open event
(closed at the moment health recovered, read from the transition log), a check the
objective follows going down without its system's status changing, an upstream that
recovered while nobody was listening.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from . import store
from .models import Attribution, DependencyExclusion, Objective
from .surroundings import Surroundings

Source = tuple[Attribution, str | None, str | None]
"""An event's attribution: self, or upstream with the upstream's id and name."""

_SELF: Source = (Attribution.SELF, None, None)


class DowntimeRules:
    """Opening, closing and splitting the downtime events of one objective at a time."""

    def __init__(self, surroundings: Surroundings) -> None:
        self._around = surroundings

    def source_in(self, tx: Connection, objective: Objective, *,
                  excluding: str | None = None) -> Source:
        """Whom to blame for downtime starting now: an upstream the system depends on
        that is down (the first by id; not for strict objectives, never an excluded
        one), else the system itself."""
        if objective.dependency_exclusion is DependencyExclusion.STRICT:
            return _SELF
        skipped = set(objective.excluded_dependency_ids)
        if excluding is not None:
            skipped.add(excluding)
        candidates = [u for u in self._around.upstreams_in(tx, objective.system_id)
                      if u not in skipped]
        down = sorted(self._around.systems_down_in(tx, candidates))
        if not down:
            return _SELF
        return Attribution.UPSTREAM, down[0], self._around.name_in(tx, down[0])

    def _start(self, tx: Connection, objective: Objective, at: datetime,
               source: Source) -> None:
        store.start_event_in(tx, objective.id, at, *source)

    def went_down_in(self, tx: Connection, objective: Objective, at: datetime) -> None:
        """What the objective follows went down at `at`."""
        if store.open_event_in(tx, objective.id) is not None:
            return
        if store.covered_in(tx, objective.id, at):
            return  # already recorded (a redelivered change)
        live = self._around.objective_in(tx, objective)
        source = self.source_in(tx, objective)
        if live.down:
            self._start(tx, objective, at, source)
        elif live.since is not None and live.since > at:
            # Handled late: it is up again already. The outage still happened.
            store.insert_closed_event_in(tx, objective.id, at, live.since, source[0])

    def came_up_in(self, tx: Connection, objective: Objective, at: datetime) -> None:
        """What the objective follows recovered at `at`."""
        event = store.open_event_in(tx, objective.id)
        if event is None or event.event.start > at:
            return
        store.end_event_in(tx, event, at)
        live = self._around.objective_in(tx, objective)
        if live.down and live.since is not None and live.since > at:
            # Down again since (handled late): that is a new outage.
            self._start(tx, objective, live.since, self.source_in(tx, objective))

    def upstream_down_in(self, tx: Connection, objective: Objective, upstream: str,
                         at: datetime) -> None:
        """Upstream `upstream` went down at `at`: a self event of a non-strict objective
        is closed and an upstream one opened (event splitting)."""
        if (objective.dependency_exclusion is DependencyExclusion.STRICT
                or upstream in objective.excluded_dependency_ids):
            return
        event = store.open_event_in(tx, objective.id)
        if (event is None or event.event.attribution is Attribution.UPSTREAM
                or event.event.start > at):
            return
        store.end_event_in(tx, event, at)
        self._start(tx, objective, at,
                    (Attribution.UPSTREAM, upstream, self._around.name_in(tx, upstream)))

    def upstream_up_in(self, tx: Connection, objective: Objective, upstream: str,
                       at: datetime) -> None:
        """Upstream `upstream` recovered at `at`: the event blamed on it is closed; if the
        system is still down a new one opens — on another upstream still down, else self."""
        event = store.open_event_in(tx, objective.id)
        if (event is None or event.event.attribution is not Attribution.UPSTREAM
                or event.event.upstream_system_id != upstream or event.event.start > at):
            return
        store.end_event_in(tx, event, at)
        if self._around.objective_in(tx, objective).down:
            self._start(tx, objective, at, self.source_in(tx, objective, excluding=upstream))

    def reconcile_in(self, tx: Connection, objective: Objective, now: datetime, *,
                     not_before: datetime | None = None) -> None:
        """Make the open event agree with live health now.

        An open event while what the objective follows is up is closed when it
        recovered; no open event while it is down opens one from when it went down
        (not before `not_before`: an objective created while its system is down counts
        from its creation); an upstream event whose upstream recovered is split.
        """
        event = store.open_event_in(tx, objective.id)
        live = self._around.objective_in(tx, objective)
        if event is not None and not live.down:
            store.end_event_in(tx, event, live.since or now)
            return
        if event is None and live.down:
            start = live.since or now
            if not_before is not None and start < not_before:
                start = not_before
            if store.covered_in(tx, objective.id, start):
                start = now
            self._start(tx, objective, min(start, now), self.source_in(tx, objective))
            return
        if event is not None and event.event.attribution is Attribution.UPSTREAM:
            upstream = event.event.upstream_system_id
            if upstream is not None and not self._around.system_in(tx, upstream).down:
                since = self._around.system_in(tx, upstream).since or now
                self.upstream_up_in(tx, objective, upstream, max(since, event.event.start))
