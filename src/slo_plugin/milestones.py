"""The kinds that announce milestones: `slo-achievement` (one entity per unlock) and
`slo-digest` (one per ISO week). Creating one is what fires its trigger (see
`derivers`); both are computed from their tables.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from sqlalchemy import Connection, select

from reactive_core import EntityHandle

from . import store
from .schema import slo_digests
from .surroundings import Surroundings

_CAMEL = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel,
                    populate_by_name=True, serialize_by_alias=True)


class AchievementState(BaseModel):
    """An unlocked achievement: `{systemId, systemName, achievement, unlockedAt}`."""

    model_config = _CAMEL

    system_id: str
    system_name: str | None
    achievement: str
    unlocked_at: datetime


class DigestEntry(BaseModel):
    """One objective in a digest's top or worst three."""

    model_config = _CAMEL

    objective_id: str
    system_id: str
    system_name: str | None
    budget_remaining_percent: float
    availability: float


class DigestState(BaseModel):
    """A weekly digest: counts of objectives by state, and the top and worst three."""

    model_config = _CAMEL

    week: str
    objectives: int
    breaching: int
    at_risk: int
    healthy: int
    top: tuple[DigestEntry, ...]
    worst: tuple[DigestEntry, ...]


class AchievementReader:
    """`read` of the `slo-achievement` kind."""

    def __init__(self, surroundings: Surroundings) -> None:
        self._around = surroundings

    def read(self, tx: Connection, ids: Sequence[str]) -> dict[str, AchievementState]:
        rows = store.achievement_rows_in(tx, ids)
        names = self._around.names_in(tx, sorted({r.system_id for r in rows}))
        return {r.key: AchievementState(
            system_id=r.system_id, system_name=names.get(r.system_id),
            achievement=r.achievement, unlocked_at=store.utc(r.unlocked_at)) for r in rows}

    @staticmethod
    def ids(tx: Connection) -> list[str]:
        return sorted(r.key for r in store.achievements_in(tx))


def read_digests(tx: Connection, ids: Sequence[str]) -> dict[str, DigestState]:
    """`read` of the `slo-digest` kind."""
    if not ids:
        return {}
    rows = tx.execute(select(slo_digests).where(slo_digests.c.week.in_(list(ids))))
    return {r.week: DigestState.model_validate(r.digest) for r in rows}


def digest_ids(tx: Connection) -> list[str]:
    return list(tx.execute(select(slo_digests.c.week).order_by(slo_digests.c.week)).scalars())


def achievement_key(system_id: str, achievement: str) -> str:
    """The `slo-achievement` entity id of one unlock: `<system id>:<achievement>` (with
    the system id hashed when that would exceed the identifier length)."""
    key = f"{system_id}:{achievement}"
    if len(key) <= 255:
        return key
    return f"{hashlib.sha256(system_id.encode()).hexdigest()}:{achievement}"


def unlock_in(tx: Connection, handle: EntityHandle[Any], system_id: str, achievement: str,
              now: datetime) -> bool:
    """Record `achievement` for the system unless it has it; True when newly unlocked
    (its entity is created, which fires `slo.achievement_unlocked`)."""
    key = achievement_key(system_id, achievement)
    handle.lock_in(tx, key)
    if achievement in store.unlocked_in(tx, system_id):
        return False

    def apply(inner: Connection, _prev: Any) -> Any:
        store.insert_achievement_in(inner, key, system_id, achievement, now)
        return handle.get_in(inner, key)

    handle.mutate_in(tx, key, apply, reason=f"{system_id} unlocked {achievement}")
    return True
