"""Associations: which checks count for which system, and with what thresholds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection

from reactive_core import Actor

from . import queries as q
from .checks import CheckOps, valid_id
from .entity import has_enabled_association, parse_thresholds, read_one
from .evaluator import Thresholds
from .models import Association, HealthState, InvalidCheck, UnknownCheck, UnknownSystem
from .queries import as_utc, utcnow

_KEEP: Any = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociationWrite:
    """What an upsert of an association did, and the system's health afterwards."""

    prev: Association | None
    next: Association
    changed_fields: tuple[str, ...]
    health: HealthState | None


def _thresholds_json(thresholds: Thresholds | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if thresholds is None:
        return None
    if not isinstance(thresholds, Thresholds):
        try:
            thresholds = Thresholds.model_validate(thresholds)
        except ValidationError as exc:
            raise InvalidCheck(f"thresholds are not valid: {exc}", field="thresholds") from exc
    return thresholds.model_dump(mode="json")


class AssociationOps(CheckOps):
    """The association half of `HealthService`."""

    def _require_system_in(self, tx: Connection, system_id: str) -> None:
        """Take the catalog system's entity lock and check it exists (when a catalog runs)."""
        if self._catalog_kind not in self._host.registry.kinds:
            return
        systems = self._host.entity(self._catalog_kind)
        systems.lock_in(tx, system_id)
        if systems.get_in(tx, system_id) is None:
            raise UnknownSystem(f"unknown system {system_id!r}: expected the id of a "
                                f"system in the catalog", system_id=system_id)

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
        return await self._host.run(lambda tx: self.associate_in(
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
        return await self._host.run(lambda tx: self._upsert_association_in(
            tx, system_id, check_id, enabled=enabled, thresholds=_KEEP, create=False,
            actor=actor, reason=reason))

    async def set_thresholds(self, system_id: str, check_id: str,
                             thresholds: Thresholds | Mapping[str, Any] | None, *,
                             actor: Actor | None = None, reason: str | None = None,
                             ) -> AssociationWrite:
        """Change an existing association's thresholds (None: back to the defaults)."""
        return await self._host.run(lambda tx: self._upsert_association_in(
            tx, system_id, check_id, enabled=_KEEP, thresholds=thresholds, create=False,
            actor=actor, reason=reason))

    def _upsert_association_in(
        self, tx: Connection, system_id: str, check_id: str, *, enabled: Any,
        thresholds: Any, create: bool, actor: Actor | None, reason: str | None,
    ) -> AssociationWrite:
        system_id = valid_id(system_id, "system", "system")
        wanted_json = None if thresholds is _KEEP else _thresholds_json(thresholds)
        self._require_system_in(tx, system_id)
        check = self._require_check_in(tx, check_id)
        self._writes.lock_system(tx, system_id)
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
        writes = self._writes

        def write(t: Connection) -> None:
            if prev is None:
                t.execute(q.INSERT_ASSOC, {
                    "system_id": system_id, "configuration_id": check_id,
                    "enabled": new_enabled, "thresholds": new_json,
                    "check_paused": check.paused, "created_at": now})
                writes.sync_check_state_in(t, system_id, check_id, nxt.thresholds, None, now)
            else:
                t.execute(q.UPDATE_ASSOC.values(enabled=new_enabled, thresholds=new_json),
                          {"s": system_id, "c": check_id})
                if "thresholds" in changed:
                    writes.sync_check_state_in(t, system_id, check_id, nxt.thresholds, None, now)

        default_reason = (f"check {check_id} associated" if prev is None
                          else f"association with check {check_id}: {', '.join(changed)} changed")
        health = writes.write_system_in(
            tx, system_id, write,
            present_after=lambda t: new_enabled or has_enabled_association(
                t, system_id, excluding=check_id),
            actor=actor, reason=reason or default_reason)
        return AssociationWrite(prev=prev, next=nxt, changed_fields=changed, health=health)

    async def disassociate(self, system_id: str, check_id: str, *, actor: Actor | None = None,
                           reason: str | None = None) -> bool:
        """Detach a check from a system, with the pair's runs and history; True if it was."""
        return await self._host.run(lambda tx: self.disassociate_in(
            tx, system_id, check_id, actor=actor, reason=reason))

    def disassociate_in(self, tx: Connection, system_id: str, check_id: str, *,
                        actor: Actor | None = None, reason: str | None = None) -> bool:
        """`disassociate` inside `tx`."""
        self._writes.lock_system(tx, system_id)
        if tx.execute(q.ASSOC, {"s": system_id, "c": check_id}).first() is None:
            return False
        self._writes.remove_pairs_in(tx, system_id, [check_id], actor=actor,
                                     reason=reason or f"check {check_id} detached")
        return True

    async def remove_system(self, system_id: str, *, before: datetime | None = None,
                            actor: Actor | None = None, reason: str | None = None) -> int:
        """Remove every association of a system (created at or before `before`, if given).

        What the `health-system-cleanup` work queue does for a catalog tombstone; the
        `before` bound keeps associations declared after the system was re-created.
        Returns how many associations went.
        """
        return await self._host.run(lambda tx: self.remove_system_in(
            tx, system_id, before=before, actor=actor, reason=reason))

    def remove_system_in(self, tx: Connection, system_id: str, *, before: datetime | None = None,
                         actor: Actor | None = None, reason: str | None = None) -> int:
        """`remove_system` inside `tx`."""
        self._writes.lock_system(tx, system_id)
        rows = tx.execute(q.ASSOCS_OF_SYSTEM, {"s": system_id}).all()
        doomed = [r.configuration_id for r in rows
                  if before is None or as_utc(r.created_at) <= as_utc(before)]
        if doomed:
            self._writes.remove_pairs_in(tx, system_id, doomed, actor=actor,
                                         reason=reason or f"system {system_id} removed")
        return len(doomed)

    async def associations(self, *, system_id: str | None = None,
                           check_id: str | None = None) -> list[Association]:
        """Associations, optionally of one system and/or one check, by (system, check)."""
        return await self._host.read(q.associations_in, system_id=system_id, check_id=check_id)
