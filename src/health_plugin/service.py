"""Health operations: checks, associations and runs — every health-affecting write through `mutate`.

Every operation comes as `async def op(...)` (its own unit of work) and, for writes,
`def op_in(tx, ...)` to join a unit of work already open (config sections).

The write rule: a row that the `health` read of system S depends on (S's
associations, S's runs) is written only inside S's own `mutate_in` (or `remove_in`,
when the write leaves S without any enabled association), after `prev` was read, so
the change log sees exactly what the write did. A write that touches several systems
(pausing a check, deleting it) is one such mutation per system, in sorted id order.

Locking (matters on PostgreSQL; SQLite's single writer serializes anyway), always in
this order: the catalog system's entity lock (associating: a concurrent tombstone
either commits first and the association is refused, or waits and its cleanup then
sees the association; it comes first because a config file's `systems` section takes
it before the `checks` section locks a configuration), the check configuration row
(`FOR UPDATE`, for writes that copy or flip its `paused` flag), then the `health`
entity's lock of each system (`lock_in`, in sorted id order), taken before deciding
whether the write keeps, creates or removes the entity and held until commit
(`mutate_in` takes it again, re-entrantly). So concurrent evaluations of one system
serialize: each reads `prev` after the other committed, and a status change is logged
exactly once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, delete, insert, update

from reactive_core import Actor, EntityHandle, after_commit

from . import queries as q
from .entity import (
    has_enabled_association,
    pair_statuses,
    parse_thresholds,
    read_all,
    read_one,
    system_ids,
)
from .evaluator import HealthStatus, Thresholds, evaluate_status
from .models import (
    HEALTH_KIND,
    MAX_ID_LENGTH,
    Association,
    CheckConfiguration,
    CheckRun,
    CheckStateTransition,
    HealthError,
    HealthState,
    InvalidCheck,
    UnknownCheck,
    UnknownSystem,
)
from .queries import as_utc, utcnow
from .runtime import ALL_KEY, runtime_of, system_key
from .schema import health_check_configurations as _cfg
from .schema import health_check_schedule as _sched
from .strategies import CheckOutcome

if TYPE_CHECKING:
    from reactive_core import Host

CATALOG_KIND = "catalog-system"
"""The catalog's kind; when a host defines it, associations must name its systems."""

RUN_ACTOR_TYPE = "health-check"
"""Actor type of health changes caused by a check run (the actor id is the check id)."""

_KEEP: Any = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckWrite:
    """What an upsert of a check did: `prev` None when created; the changed fields."""

    prev: CheckConfiguration | None
    next: CheckConfiguration
    changed_fields: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociationWrite:
    """What an upsert of an association did, and the system's health afterwards."""

    prev: Association | None
    next: Association
    changed_fields: tuple[str, ...]
    health: HealthState | None


def _valid_id(value: object, what: str, field: str) -> str:
    if (not isinstance(value, str) or not value.strip() or value != value.strip()
            or len(value) > MAX_ID_LENGTH):
        raise InvalidCheck(
            f"{what} id must be a non-blank string of at most {MAX_ID_LENGTH} characters "
            f"without surrounding spaces, received {value!r}", field=field)
    return value


def _thresholds_json(thresholds: Thresholds | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if thresholds is None:
        return None
    if not isinstance(thresholds, Thresholds):
        try:
            thresholds = Thresholds.model_validate(thresholds)
        except ValidationError as exc:
            raise InvalidCheck(f"thresholds are not valid: {exc}", field="thresholds") from exc
    return thresholds.model_dump(mode="json")


class HealthService:
    """Checks, associations, runs and the cached status API of one host.

    Works on a started host and on one whose plugins are only loaded (CLI inspection).
    """

    def __init__(self, host: Host) -> None:
        self._host = host
        self._db = host.db
        self._runtime = runtime_of(host)
        self._health: EntityHandle[HealthState] = host.entity(HEALTH_KIND)

    # -- status read API (cached) ---------------------------------------------------

    async def status(self, system_id: str) -> HealthState | None:
        """The health of `system_id` (None when absent), served from the cache.

        Invalidated before any subscriber is notified of a health change (see
        `health_plugin.runtime`); loads run once for concurrent misses.
        """
        return await self._runtime.cache.get(  # type: ignore[no-any-return]
            system_key(system_id), functools.partial(self._health.get, system_id))

    async def statuses(self) -> dict[str, HealthState]:
        """The health of every system that has one, by id (sorted), from the cache."""
        states: dict[str, HealthState] = await self._runtime.cache.get(
            ALL_KEY, functools.partial(self._db.read, read_all))
        return dict(states)

    # -- the write rule -------------------------------------------------------------

    def _lock_system(self, tx: Connection, system_id: str) -> None:
        # The entity's own write lock (re-entrant within a transaction on PostgreSQL):
        # taken before deciding between mutate_in and remove_in, held until commit.
        self._health.lock_in(tx, system_id)

    def _write_system_in(
        self, tx: Connection, system_id: str, write: Callable[[Connection], None], *,
        present_after: Callable[[Connection], bool] | None = None,
        present: bool | None = None, actor: Actor | None = None, reason: str | None = None,
    ) -> HealthState | None:
        """Run `write` — a write to `system_id`'s own rows — as that system's health write.

        `present_after(tx)`, evaluated under the system's lock before the write, says
        whether the system will still have an enabled association (None: the write
        does not change that): it picks `mutate_in` (create or update) or `remove_in`.
        `present` is what the caller already knows (under the lock) about the system
        having an enabled association now; None looks it up.
        """
        self._lock_system(tx, system_id)
        before = has_enabled_association(tx, system_id) if present is None else present
        after = before if present_after is None else present_after(tx)
        # Registered before mutate_in registers the core's wake-up: invalidate, then notify.
        after_commit(tx, functools.partial(self._runtime.invalidate, system_id))
        if after:
            def apply(inner: Connection, _prev: HealthState | None) -> HealthState:
                write(inner)
                state = read_one(inner, system_id)
                if state is None:
                    raise HealthError(
                        f"health write of system {system_id!r} left it without an enabled "
                        f"association although one was expected; nothing was written")
                return state

            return self._health.mutate_in(tx, system_id, apply, actor=actor, reason=reason)
        if before:
            self._health.remove_in(tx, system_id, lambda inner, _prev: write(inner),
                                   actor=actor, reason=reason)
            return None
        write(tx)
        return None

    def _sync_check_state_in(
        self, tx: Connection, system_id: str, check_id: str, thresholds: Thresholds | None,
        run_id: int | None, now: datetime,
    ) -> None:
        """Append a per-check transition row when the check's evaluated status moved."""
        new = evaluate_status(pair_statuses(tx, system_id, check_id), thresholds)
        last = tx.execute(q.LAST_CHECK_STATE, {"s": system_id, "c": check_id}).scalar()
        current = HealthStatus(last) if last is not None else None
        if new is not current:
            tx.execute(q.INSERT_TRANSITION, {
                "system_id": system_id, "configuration_id": check_id,
                "from_status": None if current is None else current.value,
                "to_status": new.value, "run_id": run_id, "transitioned_at": now})

    # -- checks ---------------------------------------------------------------------

    def _normalized_config(self, strategy: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
        found = self._runtime.strategy(strategy)
        if found is None:
            known = ", ".join(self._runtime.strategies) or "none"
            raise InvalidCheck(f"unknown strategy {strategy!r}: expected one of {known}",
                               field="strategy")
        try:
            model: BaseModel = found.config_model.model_validate(dict(config or {}))
        except ValidationError as exc:
            problems = "; ".join(
                f"config.{'.'.join(str(p) for p in e['loc']) or '<config>'}: {e['msg']} "
                f"(received {e.get('input')!r})" for e in exc.errors())
            first = tuple(exc.errors()[0]["loc"])
            raise InvalidCheck(f"config for strategy {strategy!r} is not valid: {problems}",
                               field=("config", *first)) from exc
        return model.model_dump(mode="json", exclude_defaults=True)

    async def upsert_check(
        self, check_id: str, *, strategy: str, config: Mapping[str, Any] | None = None,
        name: str | None = None, interval_seconds: float = 60.0, paused: bool = False,
        actor: Actor | None = None, reason: str | None = None,
    ) -> CheckWrite:
        """Create or replace check `check_id`; an identical declaration changes nothing.

        Unknown strategy, a config the strategy refuses or a non-positive interval raise
        `InvalidCheck` naming the field, and nothing is written. Changing `paused`
        pauses or resumes the check (its systems' health is recomputed).
        """
        return await self._db.run(lambda tx: self.upsert_check_in(
            tx, check_id, strategy=strategy, config=config, name=name,
            interval_seconds=interval_seconds, paused=paused, actor=actor, reason=reason))

    def upsert_check_in(
        self, tx: Connection, check_id: str, *, strategy: str,
        config: Mapping[str, Any] | None = None, name: str | None = None,
        interval_seconds: float = 60.0, paused: bool = False, actor: Actor | None = None,
        reason: str | None = None,
    ) -> CheckWrite:
        """`upsert_check` inside the unit of work `tx`."""
        check_id = _valid_id(check_id, "check", "id")
        normalized = self._normalized_config(strategy, config)
        if not isinstance(interval_seconds, (int, float)) or not interval_seconds > 0:
            raise InvalidCheck(f"interval_seconds must be a number > 0, received "
                               f"{interval_seconds!r}", field="interval_seconds")
        wanted = CheckConfiguration(
            id=check_id, name=name or check_id, strategy=strategy, config=normalized,
            interval_seconds=float(interval_seconds), paused=paused)
        row = tx.execute(q.CONFIG_FOR_UPDATE, {"id": check_id}).first()
        now = utcnow()
        if row is None:
            tx.execute(q.INSERT_CONFIG, {
                "id": check_id, "name": wanted.name, "strategy": strategy, "config": normalized,
                "interval_seconds": wanted.interval_seconds, "paused": paused,
                "created_at": now, "updated_at": now})
            tx.execute(insert(_sched), {
                "configuration_id": check_id,
                "next_run_at": self._runtime.first_run_at(now, wanted.interval_seconds)})
            after_commit(tx, self._runtime.wake_scheduler)
            return CheckWrite(prev=None, next=wanted, changed_fields=tuple(
                sorted(CheckConfiguration.model_fields)))
        prev = q.check_from_row(row)
        changed = tuple(sorted(
            f for f in CheckConfiguration.model_fields if getattr(prev, f) != getattr(wanted, f)))
        if not changed:
            return CheckWrite(prev=prev, next=prev, changed_fields=())
        tx.execute(update(_cfg).where(_cfg.c.id == check_id).values(
            name=wanted.name, strategy=strategy, config=normalized,
            interval_seconds=wanted.interval_seconds, updated_at=now))
        if {"strategy", "config", "interval_seconds"} & set(changed):
            tx.execute(update(_sched).where(_sched.c.configuration_id == check_id).values(
                next_run_at=self._runtime.first_run_at(now, wanted.interval_seconds)))
        if "paused" in changed:
            self._set_paused_in(tx, prev, paused, actor=actor, reason=reason)
        after_commit(tx, self._runtime.wake_scheduler)
        return CheckWrite(prev=prev, next=wanted, changed_fields=changed)

    async def pause_check(self, check_id: str, *, actor: Actor | None = None,
                          reason: str | None = None) -> bool:
        """Pause a check: it stops running and stops counting; True when it was running."""
        return await self._db.run(lambda tx: self.set_paused_in(
            tx, check_id, True, actor=actor, reason=reason))

    async def resume_check(self, check_id: str, *, actor: Actor | None = None,
                           reason: str | None = None) -> bool:
        """Resume a paused check: it counts again and runs soon; True when it was paused."""
        return await self._db.run(lambda tx: self.set_paused_in(
            tx, check_id, False, actor=actor, reason=reason))

    def set_paused_in(self, tx: Connection, check_id: str, paused: bool, *,
                      actor: Actor | None = None, reason: str | None = None) -> bool:
        """`pause_check` / `resume_check` inside `tx`; `UnknownCheck` if there is none."""
        check = self._require_check_in(tx, check_id)
        if check.paused == paused:
            return False
        self._set_paused_in(tx, check, paused, actor=actor, reason=reason)
        return True

    def _set_paused_in(self, tx: Connection, check: CheckConfiguration, paused: bool, *,
                       actor: Actor | None, reason: str | None) -> None:
        now = utcnow()
        tx.execute(update(_cfg).where(_cfg.c.id == check.id).values(
            paused=paused, updated_at=now))
        reason = reason or f"check {check.id} {'paused' if paused else 'resumed'}"
        for system_id in system_ids(r.system_id for r in tx.execute(
                q.ASSOCS_OF_CHECK, {"c": check.id})):
            self._write_system_in(
                tx, system_id,
                lambda t, s=system_id: t.execute(  # type: ignore[misc]
                    q.SET_CHECK_PAUSED, {"s": s, "c": check.id, "paused": paused}),
                actor=actor, reason=reason)
        if not paused:
            tx.execute(update(_sched).where(_sched.c.configuration_id == check.id).values(
                next_run_at=self._runtime.first_run_at(now, check.interval_seconds)))
            after_commit(tx, self._runtime.wake_scheduler)

    async def delete_check(self, check_id: str, *, actor: Actor | None = None,
                           reason: str | None = None) -> bool:
        """Delete a check with its associations and their history; True when it existed."""
        return await self._db.run(lambda tx: self.delete_check_in(
            tx, check_id, actor=actor, reason=reason))

    def delete_check_in(self, tx: Connection, check_id: str, *, actor: Actor | None = None,
                        reason: str | None = None) -> bool:
        """`delete_check` inside `tx`."""
        if tx.execute(q.CONFIG_FOR_UPDATE, {"id": check_id}).first() is None:
            return False
        reason = reason or f"check {check_id} deleted"
        for system_id in system_ids(r.system_id for r in tx.execute(
                q.ASSOCS_OF_CHECK, {"c": check_id})):
            self._remove_pairs_in(tx, system_id, [check_id], actor=actor, reason=reason)
        tx.execute(delete(_sched).where(_sched.c.configuration_id == check_id))
        tx.execute(delete(_cfg).where(_cfg.c.id == check_id))
        return True

    async def get_check(self, check_id: str) -> CheckConfiguration | None:
        """Check `check_id`, or None."""
        row = await self._db.read(lambda tx: tx.execute(q.CONFIG, {"id": check_id}).first())
        return None if row is None else q.check_from_row(row)

    async def checks(self) -> list[CheckConfiguration]:
        """Every check, by id."""
        rows = await self._db.read(lambda tx: tx.execute(q.ALL_CONFIGS).all())
        return [q.check_from_row(r) for r in rows]

    def _require_check_in(self, tx: Connection, check_id: str) -> CheckConfiguration:
        row = tx.execute(q.CONFIG_FOR_UPDATE, {"id": check_id}).first()
        if row is None:
            raise UnknownCheck(f"unknown check {check_id!r}: expected the id of a check "
                               f"configuration", check_id=check_id)
        return q.check_from_row(row)

    # -- associations ---------------------------------------------------------------

    def _require_system_in(self, tx: Connection, system_id: str) -> None:
        """Take the catalog system's entity lock and check it exists (when a catalog runs).

        The public API offers that lock only through `mutate`, so this is a mutation
        whose `apply` returns the state unchanged: a no-op that logs nothing.
        """
        if CATALOG_KIND not in self._host.registry.kinds:
            return

        def require(_tx: Connection, prev: Any) -> Any:
            if prev is None:
                raise UnknownSystem(f"unknown system {system_id!r}: expected the id of a "
                                    f"system in the catalog", system_id=system_id)
            return prev

        self._host.entity(CATALOG_KIND).mutate_in(tx, system_id, require)

    async def associate(
        self, system_id: str, check_id: str, *, enabled: bool = True,
        thresholds: Thresholds | Mapping[str, Any] | None = None,
        actor: Actor | None = None, reason: str | None = None,
    ) -> AssociationWrite:
        """Attach check `check_id` to system `system_id` (or set how it is attached).

        The given `enabled` and `thresholds` (None: the defaults) replace what was
        there; an identical declaration changes nothing. `UnknownCheck` /
        `UnknownSystem` (when a catalog runs) if either is missing.
        """
        return await self._db.run(lambda tx: self.associate_in(
            tx, system_id, check_id, enabled=enabled, thresholds=thresholds, actor=actor,
            reason=reason))

    def associate_in(
        self, tx: Connection, system_id: str, check_id: str, *, enabled: bool = True,
        thresholds: Thresholds | Mapping[str, Any] | None = None,
        actor: Actor | None = None, reason: str | None = None,
    ) -> AssociationWrite:
        """`associate` inside `tx`."""
        return self._upsert_association_in(
            tx, system_id, check_id, enabled=enabled, thresholds=thresholds, create=True,
            actor=actor, reason=reason)

    async def set_enabled(self, system_id: str, check_id: str, enabled: bool, *,
                          actor: Actor | None = None, reason: str | None = None,
                          ) -> AssociationWrite:
        """Enable or disable an existing association (the system's health is recomputed)."""
        return await self._db.run(lambda tx: self._upsert_association_in(
            tx, system_id, check_id, enabled=enabled, thresholds=_KEEP, create=False,
            actor=actor, reason=reason))

    async def set_thresholds(self, system_id: str, check_id: str,
                             thresholds: Thresholds | Mapping[str, Any] | None, *,
                             actor: Actor | None = None, reason: str | None = None,
                             ) -> AssociationWrite:
        """Change an existing association's thresholds (None: back to the defaults)."""
        return await self._db.run(lambda tx: self._upsert_association_in(
            tx, system_id, check_id, enabled=_KEEP, thresholds=thresholds, create=False,
            actor=actor, reason=reason))

    def _upsert_association_in(
        self, tx: Connection, system_id: str, check_id: str, *, enabled: Any,
        thresholds: Any, create: bool, actor: Actor | None, reason: str | None,
    ) -> AssociationWrite:
        system_id = _valid_id(system_id, "system", "system")
        wanted_json = None if thresholds is _KEEP else _thresholds_json(thresholds)
        self._require_system_in(tx, system_id)
        check = self._require_check_in(tx, check_id)
        self._lock_system(tx, system_id)
        row = tx.execute(q.ASSOC, {"s": system_id, "c": check_id}).first()
        if row is None and not create:
            raise UnknownCheck(f"system {system_id!r} has no association with check "
                               f"{check_id!r}: expected an existing association",
                               check_id=check_id)
        prev = None if row is None else q.association_from_row(row)
        new_enabled = (prev.enabled if prev else True) if enabled is _KEEP else bool(enabled)
        new_json = (row.thresholds if row is not None else None) if thresholds is _KEEP \
            else wanted_json
        nxt = Association(system_id=system_id, configuration_id=check_id, enabled=new_enabled,
                          thresholds=parse_thresholds(new_json))
        if prev is not None and prev == nxt:
            return AssociationWrite(prev=prev, next=prev, changed_fields=(),
                                    health=read_one(tx, system_id))
        changed = ("configuration_id", "enabled", "system_id", "thresholds") if prev is None \
            else tuple(f for f in ("enabled", "thresholds") if getattr(prev, f) != getattr(nxt, f))
        now = utcnow()

        def write(t: Connection) -> None:
            if prev is None:
                t.execute(q.INSERT_ASSOC, {
                    "system_id": system_id, "configuration_id": check_id,
                    "enabled": new_enabled, "thresholds": new_json,
                    "check_paused": check.paused, "created_at": now})
                self._sync_check_state_in(t, system_id, check_id, nxt.thresholds, None, now)
            else:
                t.execute(q.UPDATE_ASSOC.values(enabled=new_enabled, thresholds=new_json),
                          {"s": system_id, "c": check_id})
                if "thresholds" in changed:
                    self._sync_check_state_in(t, system_id, check_id, nxt.thresholds, None, now)

        default_reason = (f"check {check_id} associated" if prev is None
                          else f"association with check {check_id}: {', '.join(changed)} changed")
        health = self._write_system_in(
            tx, system_id, write,
            present_after=lambda t: new_enabled or has_enabled_association(
                t, system_id, excluding=check_id),
            actor=actor, reason=reason or default_reason)
        if new_enabled:
            after_commit(tx, self._runtime.wake_scheduler)
        return AssociationWrite(prev=prev, next=nxt, changed_fields=changed, health=health)

    async def disassociate(self, system_id: str, check_id: str, *, actor: Actor | None = None,
                           reason: str | None = None) -> bool:
        """Detach a check from a system, with the pair's runs and history; True if it was."""
        return await self._db.run(lambda tx: self.disassociate_in(
            tx, system_id, check_id, actor=actor, reason=reason))

    def disassociate_in(self, tx: Connection, system_id: str, check_id: str, *,
                        actor: Actor | None = None, reason: str | None = None) -> bool:
        """`disassociate` inside `tx`."""
        self._lock_system(tx, system_id)
        if tx.execute(q.ASSOC, {"s": system_id, "c": check_id}).first() is None:
            return False
        self._remove_pairs_in(tx, system_id, [check_id], actor=actor,
                              reason=reason or f"check {check_id} detached")
        return True

    async def remove_system(self, system_id: str, *, before: datetime | None = None,
                            actor: Actor | None = None, reason: str | None = None) -> int:
        """Remove every association of a system (created at or before `before`, if given).

        What the `health-system-cleanup` work queue does for a catalog tombstone; the
        `before` bound keeps associations declared after the system was re-created.
        Returns how many associations went.
        """
        return await self._db.run(lambda tx: self.remove_system_in(
            tx, system_id, before=before, actor=actor, reason=reason))

    def remove_system_in(self, tx: Connection, system_id: str, *, before: datetime | None = None,
                         actor: Actor | None = None, reason: str | None = None) -> int:
        """`remove_system` inside `tx`."""
        self._lock_system(tx, system_id)
        rows = tx.execute(q.ASSOCS_OF_SYSTEM, {"s": system_id}).all()
        doomed = [r.configuration_id for r in rows
                  if before is None or as_utc(r.created_at) <= as_utc(before)]
        if doomed:
            self._remove_pairs_in(tx, system_id, doomed, actor=actor,
                                  reason=reason or f"system {system_id} removed")
        return len(doomed)

    def _remove_pairs_in(self, tx: Connection, system_id: str, check_ids: list[str], *,
                         actor: Actor | None, reason: str | None) -> None:
        gone = set(check_ids)

        def remaining(t: Connection) -> bool:
            return any(r.enabled and r.configuration_id not in gone
                       for r in t.execute(q.ASSOCS_OF_SYSTEM, {"s": system_id}))

        def write(t: Connection) -> None:
            for check_id in sorted(gone):
                for statement in q.DELETE_PAIR_ROWS:
                    t.execute(statement, {"s": system_id, "c": check_id})

        self._write_system_in(tx, system_id, write, present_after=remaining, actor=actor,
                              reason=reason)

    async def associations(self, *, system_id: str | None = None,
                           check_id: str | None = None) -> list[Association]:
        """Associations, optionally of one system and/or one check, by (system, check)."""
        return await self._db.read(functools.partial(
            q.associations_in, system_id=system_id, check_id=check_id))

    # -- runs -----------------------------------------------------------------------

    async def run_check(self, check_id: str) -> CheckOutcome:
        """Run a check now (outside the schedule) and record it for its systems."""
        check = await self.get_check(check_id)
        if check is None:
            raise UnknownCheck(f"unknown check {check_id!r}: expected the id of a check "
                               f"configuration", check_id=check_id)
        started = utcnow()
        outcome = await self._runtime.execute(check)
        await self.record_run(check_id, outcome, timestamp=started)
        return outcome

    async def record_run(
        self, check_id: str, outcome: CheckOutcome, *, systems: Iterable[str] | None = None,
        timestamp: datetime | None = None,
    ) -> list[int]:
        """Record one run of a check for its systems; the new run ids.

        By default the run goes to every system with an *enabled* association; naming
        `systems` records it for those (a disabled association, like a paused check,
        keeps the run without counting it). Systems without an association are
        skipped. `timestamp` is when the run started (default: now).

        One unit of work: each system's run insert and its health mutation commit
        together.
        """
        return await self._db.run(lambda tx: self.record_run_in(
            tx, check_id, outcome, systems=systems, timestamp=timestamp))

    def record_run_in(
        self, tx: Connection, check_id: str, outcome: CheckOutcome, *,
        systems: Iterable[str] | None = None, timestamp: datetime | None = None,
    ) -> list[int]:
        """`record_run` inside `tx`; `UnknownCheck` when the check does not exist."""
        if tx.execute(q.CONFIG, {"id": check_id}).first() is None:
            raise UnknownCheck(f"unknown check {check_id!r}: expected the id of a check "
                               f"configuration", check_id=check_id)
        if systems is None:
            targets = system_ids(r.system_id for r in tx.execute(
                q.ASSOCS_OF_CHECK, {"c": check_id}) if r.enabled)
        else:
            targets = system_ids(systems)
        when = utcnow() if timestamp is None else as_utc(timestamp)
        actor = Actor(RUN_ACTOR_TYPE, check_id)
        ids: list[int] = []
        for system_id in targets:
            self._lock_system(tx, system_id)
            row = tx.execute(q.ASSOC, {"s": system_id, "c": check_id}).first()
            if row is None:
                continue
            thresholds = parse_thresholds(row.thresholds)

            def write(t: Connection, s: str = system_id,
                      th: Thresholds | None = thresholds) -> None:
                result = t.execute(q.INSERT_RUN, {
                    "system_id": s, "configuration_id": check_id,
                    "status": outcome.status.value, "latency_ms": outcome.latency_ms,
                    "result": outcome.result, "timestamp": when})
                key = result.inserted_primary_key
                assert key is not None
                run_id = int(key[0])
                ids.append(run_id)
                self._sync_check_state_in(t, s, check_id, th, run_id, when)

            self._write_system_in(tx, system_id, write, actor=actor,
                                  present=True if row.enabled else None,
                                  reason=f"check {check_id} run: {outcome.status.value}")
        return ids

    async def runs(self, system_id: str, check_id: str | None = None, *,
                   limit: int = 100) -> list[CheckRun]:
        """The newest runs of a system (optionally of one check), newest first."""
        return await self._db.read(functools.partial(
            q.runs_in, system_id=system_id, check_id=check_id, limit=limit))

    async def check_transitions(self, system_id: str,
                                check_id: str | None = None) -> list[CheckStateTransition]:
        """Per-check status transitions of a system, oldest first."""
        return await self._db.read(functools.partial(
            q.check_transitions_in, system_id=system_id, check_id=check_id))
