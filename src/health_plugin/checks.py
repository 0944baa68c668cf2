"""Check configurations: declare, pause, resume, delete, read.

A check is armed as a recurring durable timer (`scheduler.CheckScheduler`) in the same
transaction as its declaration: created, resumed or changed (strategy, config,
interval) ⇒ (re-)armed; paused or deleted ⇒ cancelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, delete, update

from reactive_core import Actor, InvalidIdentifier, check_id

from . import queries as q
from .entity import system_ids
from .models import (
    MAX_INTERVAL_SECONDS,
    MIN_INTERVAL_SECONDS,
    CheckConfiguration,
    InvalidCheck,
    UnknownCheck,
)
from .queries import utcnow
from .schema import health_check_configurations as _cfg
from .writes import ServiceParts


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckWrite:
    """What an upsert of a check did: `prev` None when created; the changed fields."""

    prev: CheckConfiguration | None
    next: CheckConfiguration
    changed_fields: tuple[str, ...]


def valid_id(value: object, what: str, field: str) -> str:
    """`value` when it follows the identifier rule, else `InvalidCheck` naming `field`."""
    try:
        return check_id(value, f"{what} id")
    except InvalidIdentifier as exc:
        raise InvalidCheck(str(exc), field=field) from None


class CheckOps(ServiceParts):
    """The check half of `HealthService`."""

    def _normalized_config(self, strategy: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
        found = self._executor.strategy(strategy)
        if found is None:
            known = ", ".join(self._executor.strategies) or "none"
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
        return await self._host.run(lambda tx: self.upsert_check_in(
            tx, check_id, strategy=strategy, config=config, name=name,
            interval_seconds=interval_seconds, paused=paused, actor=actor, reason=reason))

    def upsert_check_in(
        self, tx: Connection, check_id: str, *, strategy: str,
        config: Mapping[str, Any] | None = None, name: str | None = None,
        interval_seconds: float = 60.0, paused: bool = False, actor: Actor | None = None,
        reason: str | None = None,
    ) -> CheckWrite:
        """`upsert_check` inside the unit of work `tx`."""
        check_id = valid_id(check_id, "check", "id")
        normalized = self._normalized_config(strategy, config)
        if (isinstance(interval_seconds, bool) or not isinstance(interval_seconds, (int, float))
                or not MIN_INTERVAL_SECONDS <= interval_seconds <= MAX_INTERVAL_SECONDS):
            raise InvalidCheck(
                f"interval_seconds must be a number of seconds from {MIN_INTERVAL_SECONDS:g} "
                f"to {MAX_INTERVAL_SECONDS:g}, received {interval_seconds!r}",
                field="interval_seconds")
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
            if not paused:
                self._scheduler.arm_in(tx, wanted)
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
        if "paused" in changed:
            self._set_paused_in(tx, prev, paused, actor=actor, reason=reason, check=wanted)
        elif not paused and {"strategy", "config", "interval_seconds"} & set(changed):
            self._scheduler.arm_in(tx, wanted)
        return CheckWrite(prev=prev, next=wanted, changed_fields=changed)

    async def pause_check(self, check_id: str, *, actor: Actor | None = None,
                          reason: str | None = None) -> bool:
        """Pause a check: it stops running and stops counting; True when it was running."""
        return await self._host.run(lambda tx: self.set_paused_in(
            tx, check_id, True, actor=actor, reason=reason))

    async def resume_check(self, check_id: str, *, actor: Actor | None = None,
                           reason: str | None = None) -> bool:
        """Resume a paused check: it counts again and runs soon; True when it was paused."""
        return await self._host.run(lambda tx: self.set_paused_in(
            tx, check_id, False, actor=actor, reason=reason))

    def set_paused_in(self, tx: Connection, check_id: str, paused: bool, *,
                      actor: Actor | None = None, reason: str | None = None) -> bool:
        """`pause_check` / `resume_check` inside `tx`; `UnknownCheck` if there is none."""
        check = self._require_check_in(tx, check_id)
        if check.paused == paused:
            return False
        self._set_paused_in(tx, check, paused, actor=actor, reason=reason)
        return True

    def _set_paused_in(self, tx: Connection, prev: CheckConfiguration, paused: bool, *,
                       actor: Actor | None, reason: str | None,
                       check: CheckConfiguration | None = None) -> None:
        tx.execute(update(_cfg).where(_cfg.c.id == prev.id).values(
            paused=paused, updated_at=utcnow()))
        reason = reason or f"check {prev.id} {'paused' if paused else 'resumed'}"
        for system_id in system_ids(r.system_id for r in tx.execute(
                q.ASSOCS_OF_CHECK, {"c": prev.id})):
            self._writes.write_system_in(
                tx, system_id,
                lambda t, s=system_id: t.execute(  # type: ignore[misc]
                    q.SET_CHECK_PAUSED, {"s": s, "c": prev.id, "paused": paused}),
                actor=actor, reason=reason)
        if paused:
            self._scheduler.disarm_in(tx, prev.id)
        else:
            self._scheduler.arm_in(tx, check or prev.model_copy(update={"paused": False}))

    async def delete_check(self, check_id: str, *, actor: Actor | None = None,
                           reason: str | None = None) -> bool:
        """Delete a check with its associations and their history; True when it existed."""
        return await self._host.run(lambda tx: self.delete_check_in(
            tx, check_id, actor=actor, reason=reason))

    def delete_check_in(self, tx: Connection, check_id: str, *, actor: Actor | None = None,
                        reason: str | None = None) -> bool:
        """`delete_check` inside `tx`."""
        if tx.execute(q.CONFIG_FOR_UPDATE, {"id": check_id}).first() is None:
            return False
        reason = reason or f"check {check_id} deleted"
        for system_id in system_ids(r.system_id for r in tx.execute(
                q.ASSOCS_OF_CHECK, {"c": check_id})):
            self._writes.remove_pairs_in(tx, system_id, [check_id], actor=actor, reason=reason)
        self._scheduler.disarm_in(tx, check_id)
        tx.execute(delete(_cfg).where(_cfg.c.id == check_id))
        return True

    async def get_check(self, check_id: str) -> CheckConfiguration | None:
        """Check `check_id`, or None."""
        return await self._host.read(self.get_check_in, check_id)

    def get_check_in(self, tx: Connection, check_id: str) -> CheckConfiguration | None:
        """`get_check` inside `tx`."""
        row = tx.execute(q.CONFIG, {"id": check_id}).first()
        return None if row is None else q.check_from_row(row)

    async def runnable_check(self, check_id: str) -> CheckConfiguration | None:
        """Check `check_id` when a run of it would count somewhere: it exists, is not
        paused, and some enabled association names it; else None."""
        def read(tx: Connection) -> CheckConfiguration | None:
            check = self.get_check_in(tx, check_id)
            if check is None or check.paused:
                return None
            enabled = any(r.enabled for r in tx.execute(q.ASSOCS_OF_CHECK, {"c": check_id}))
            return check if enabled else None

        return await self._host.read(read)

    async def checks(self) -> list[CheckConfiguration]:
        """Every check, by id."""
        rows = await self._host.read(lambda tx: tx.execute(q.ALL_CONFIGS).all())
        return [q.check_from_row(r) for r in rows]

    def _require_check_in(self, tx: Connection, check_id: str) -> CheckConfiguration:
        row = tx.execute(q.CONFIG_FOR_UPDATE, {"id": check_id}).first()
        if row is None:
            raise UnknownCheck(f"unknown check {check_id!r}: expected the id of a check "
                               f"configuration", check_id=check_id)
        return q.check_from_row(row)
