"""`SloService`: objectives, the downtime rules at work, and the cached read API.

Every write that moves an objective's budget is a mutation of its `slo` entity
(`mutate_in`), so the change log sees it and the entity lock serializes the handlers of
one objective. Each write registers `after_commit(tx, invalidate)` before it mutates:
the cache is emptied before any subscriber of this process is woken (invalidate
before notify); a broadcast subscriber empties it on the other instances.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import Connection

from reactive_core import Actor, EntityHandle, ReactiveCoreError, after_commit

from . import store
from .derivers import ACHIEVEMENT_KIND
from .downtime import DowntimeRules
from .entity import SLO_KIND, SloReader, SloState
from .models import DependencyExclusion, Objective
from .reads import SloReads
from .surroundings import Surroundings

if TYPE_CHECKING:
    from reactive_core import Host, ReadThroughCache


class SloError(ReactiveCoreError):
    """Base of the SLO plugin's errors."""


class InvalidObjective(SloError, ValueError):
    """An objective that cannot be stored; `field` names the offending field."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class UnknownObjective(SloError, LookupError):
    """No objective with that id."""


def parse_objective(value: Objective | Mapping[str, Any]) -> Objective:
    """`value` as an `Objective`, or `InvalidObjective` naming the first bad field."""
    if isinstance(value, Objective):
        return value
    try:
        return Objective.model_validate(dict(value))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<objective>'}: {e['msg']}"
            for e in exc.errors())
        first = exc.errors()[0]["loc"]
        raise InvalidObjective(f"objective is not valid: {problems}",
                               field=".".join(str(p) for p in first) or "<objective>") from None


class SloService(SloReads):
    """Objectives and their budgets on one host (started, or only loaded for the CLI)."""

    def __init__(self, *, host: Host, cache: ReadThroughCache[object],
                 clock: Callable[[], datetime]) -> None:
        self._host = host
        self._cache = cache
        self._clock = clock
        self._around = Surroundings(host)
        self._rules = DowntimeRules(self._around)
        self._reader = SloReader(self._around, clock)
        self._slo: EntityHandle[SloState] = host.entity(SLO_KIND)
        self._achievements: EntityHandle[Any] | None = (
            host.entity(ACHIEVEMENT_KIND) if ACHIEVEMENT_KIND in host.registry.kinds else None)

    @property
    def reader(self) -> SloReader:
        return self._reader

    @property
    def surroundings(self) -> Surroundings:
        return self._around

    def invalidate(self, *_: object) -> None:
        """Drop every cached read (objectives share systems, milestones, digests)."""
        self._cache.invalidate_prefix("")

    def _mutate_in(self, tx: Connection, objective_id: str,
                   write: Callable[[Connection], None], *, reason: str | None = None,
                   ) -> SloState | None:
        """Run `write` as a mutation of the objective's `slo` entity; None when the
        objective does not exist (any more)."""
        after_commit(tx, self.invalidate)
        self._slo.lock_in(tx, objective_id)
        if store.objective_in(tx, objective_id) is None:
            return None

        def apply(inner: Connection, _prev: SloState | None) -> SloState | None:
            write(inner)
            return self._reader.read(inner, [objective_id]).get(objective_id)

        return self._slo.mutate_in(tx, objective_id, apply, reason=reason)

    # -- objectives ----------------------------------------------------------------------

    async def upsert_objective(self, objective: Objective | Mapping[str, Any], *,
                               actor: Actor | None = None) -> SloState:
        """Create or update an objective; its downtime is reconciled with live health at
        once (a system already down opens an event from now)."""
        parsed = parse_objective(objective)
        return await self._host.run(lambda tx: self.upsert_objective_in(tx, parsed,
                                                                        actor=actor))

    def upsert_objective_in(self, tx: Connection, objective: Objective | Mapping[str, Any], *,
                            actor: Actor | None = None) -> SloState:
        """`upsert_objective` inside the unit of work `tx`."""
        objective = parse_objective(objective)
        after_commit(tx, self.invalidate)
        self._slo.lock_in(tx, objective.id)
        existing = store.objective_in(tx, objective.id)
        self._check_objective_in(tx, objective, existing)
        now = self._clock()

        def apply(inner: Connection, _prev: SloState | None) -> SloState | None:
            store.save_objective_in(inner, objective, now)
            self._rules.reconcile_in(inner, objective, now,
                                     not_before=now if existing is None else None)
            return self._reader.read(inner, [objective.id]).get(objective.id)

        reason = f"objective {'created' if existing is None else 'updated'}"
        written = self._slo.mutate_in(tx, objective.id, apply, actor=actor, reason=reason)
        assert written is not None
        return written

    def _check_objective_in(self, tx: Connection, objective: Objective,
                            existing: Objective | None) -> None:
        if existing is not None:
            for field in ("system_id", "health_check_configuration_id"):
                if getattr(existing, field) != getattr(objective, field):
                    raise InvalidObjective(
                        f"objective {objective.id!r}: {field} cannot change (is "
                        f"{getattr(existing, field)!r}, received "
                        f"{getattr(objective, field)!r}): expected the same value, or a "
                        "new objective", field=field)
            return
        if not self._around.system_exists_in(tx, objective.system_id):
            raise InvalidObjective(
                f"objective {objective.id!r}: system_id: unknown system "
                f"{objective.system_id!r}: expected a system of the catalog", field="system_id")
        check = objective.health_check_configuration_id
        if check is not None and not self._around.check_exists_in(tx, objective.system_id,
                                                                  check):
            raise InvalidObjective(
                f"objective {objective.id!r}: health_check_configuration_id: check {check!r} "
                f"is not associated with system {objective.system_id!r}: expected the id of "
                "a check of that system",
                field="health_check_configuration_id")

    async def delete_objective(self, objective_id: str, *,
                               actor: Actor | None = None) -> bool:
        """Delete an objective and its history; its `slo` entity is tombstoned. False
        when there was none."""
        return await self._host.run(lambda tx: self.delete_objective_in(
            tx, objective_id, actor=actor))

    def delete_objective_in(self, tx: Connection, objective_id: str, *,
                            actor: Actor | None = None, reason: str | None = None) -> bool:
        """`delete_objective` inside the unit of work `tx`."""
        after_commit(tx, self.invalidate)
        self._slo.lock_in(tx, objective_id)
        if store.objective_in(tx, objective_id) is None:
            return False
        self._slo.remove_in(tx, objective_id,
                            lambda inner, _prev: store.delete_objective_in(inner, objective_id),
                            actor=actor, reason=reason or "objective deleted")
        return True

    async def forget_system(self, system_id: str) -> int:
        """Delete a system's objectives (their `slo` entities tombstoned) and achievements
        (a catalog system was deleted); how many objectives went."""
        def unit(tx: Connection) -> int:
            objectives = store.objectives_in(tx, system_ids=[system_id])
            for objective in objectives:
                self.delete_objective_in(tx, objective.id,
                                         reason=f"system {system_id} deleted")
            if self._achievements is not None:
                for key in store.achievement_keys_in(tx, system_id):
                    def drop(inner: Connection, _prev: object, k: str = key) -> None:
                        store.delete_achievement_in(inner, k)

                    self._achievements.remove_in(tx, key, drop,
                                                 reason=f"system {system_id} deleted")
            return len(objectives)

        return await self._host.run(unit)

    # -- the downtime rules, one objective per unit of work ---------------------------------

    async def _apply_rule(self, objectives: list[Objective],
                          rule: Callable[[Connection, Objective], None], reason: str) -> None:
        """Run `rule` on each objective, each as its own mutation of its entity."""
        for objective in objectives:
            def unit(tx: Connection, o: Objective = objective) -> None:
                self._mutate_in(tx, o.id, lambda inner: rule(inner, o), reason=reason)

            await self._host.run(unit)

    async def system_went_down(self, system_id: str, at: datetime) -> None:
        """The system went down at `at`: its objectives that follow the system open
        events."""
        await self._apply_rule(await self._objectives_following(system_id),
                               lambda tx, o: self._rules.went_down_in(tx, o, at),
                               f"{system_id} down")

    async def system_came_up(self, system_id: str, at: datetime) -> None:
        """The system recovered at `at`: its objectives' events close."""
        await self._apply_rule(await self._objectives_following(system_id),
                               lambda tx, o: self._rules.came_up_in(tx, o, at),
                               f"{system_id} recovered")

    async def upstream_went_down(self, upstream: str, at: datetime) -> None:
        """`upstream` went down at `at`: self events of the systems depending on it
        split."""
        await self._apply_rule(await self._downstream_objectives(upstream, splitting=True),
                               lambda tx, o: self._rules.upstream_down_in(tx, o, upstream, at),
                               f"upstream {upstream} down")

    async def upstream_came_up(self, upstream: str, at: datetime) -> None:
        """`upstream` recovered at `at`: events blamed on it close (and reopen as self,
        or on another upstream, where the system is still down)."""
        await self._apply_rule(await self._downstream_objectives(upstream),
                               lambda tx, o: self._rules.upstream_up_in(tx, o, upstream, at),
                               f"upstream {upstream} recovered")

    async def refresh(self) -> int:
        """Reconcile and re-read every objective with open downtime or following a
        check (the refresh timer); how many were refreshed."""
        def due(tx: Connection) -> list[Objective]:
            open_ids = {e.objective_id for e in store.open_events_in(tx)}
            return [o for o in store.objectives_in(tx)
                    if o.id in open_ids or o.health_check_configuration_id is not None]

        objectives = await self._host.read(due)
        await self._apply_rule(
            objectives, lambda tx, o: self._rules.reconcile_in(tx, o, self._clock()),
            "refresh")
        return len(objectives)

    async def reconcile_all(self) -> int:
        """Reconcile every objective with live health (orphaned open events close at the
        moment health recovered); how many objectives."""
        objectives = await self._host.read(store.objectives_in)
        await self._apply_rule(
            objectives, lambda tx, o: self._rules.reconcile_in(tx, o, self._clock()),
            "reconcile")
        return len(objectives)

    async def _objectives_following(self, system_id: str) -> list[Objective]:
        def read(tx: Connection) -> list[Objective]:
            return [o for o in store.objectives_in(tx, system_ids=[system_id])
                    if o.health_check_configuration_id is None]

        return await self._host.read(read)

    async def _downstream_objectives(self, upstream: str, *,
                                     splitting: bool = False) -> list[Objective]:
        """The objectives of the systems depending on `upstream` (with `splitting`,
        only those an upstream outage can split: self-only, `upstream` not excluded)."""
        def read(tx: Connection) -> list[Objective]:
            downstream = self._around.downstreams_in(tx, upstream)
            found = store.objectives_in(tx, system_ids=downstream) if downstream else []
            if splitting:
                found = [o for o in found
                         if o.dependency_exclusion is DependencyExclusion.SELF_ONLY
                         and upstream not in o.excluded_dependency_ids]
            return found

        return await self._host.read(read)


def slo_service(host: Host) -> SloService:
    """The `SloService` of `host`'s SLO plugin (for application code and tests)."""
    from .hooks import SloPlugin

    plugin = host.plugin("slo")
    if not isinstance(plugin, SloPlugin) or plugin.service is None:
        raise SloError(f"the plugin named 'slo' in this host is a {type(plugin).__name__}, "
                       "expected slo_plugin.SloPlugin")
    return plugin.service
