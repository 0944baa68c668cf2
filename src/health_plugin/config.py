"""The `checks` and `associations` sections of config files (`reactive apply`).

Both run inside the one transaction of the apply, after `systems` (10) and
`dependencies` (20): `checks` at 30, `associations` at 40, so an association may name
a system and a check declared in the same file. Any bad item — an unknown strategy, a
config its strategy refuses (an invalid URL, …), an unknown system or check — raises
`ConfigItemError` for that item, reported with its line, and the whole file rolls
back. Unchanged items change nothing and report nothing.

With `reactive apply --prune`, what the files no longer declare goes too: associations
first (each detached with its runs and history), then checks (with what remains of
theirs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection

from reactive_core import CONFIG_ACTOR, CONFIG_REASON, ConfigItemError

from . import queries as q
from .models import (
    AssociationDeclaration,
    CheckDeclaration,
    InvalidCheck,
    UnknownCheck,
    UnknownSystem,
)

if TYPE_CHECKING:
    from .service import HealthService

CHECKS_SECTION = "checks"
ASSOCIATIONS_SECTION = "associations"
CHECKS_ORDER = 30
ASSOCIATIONS_ORDER = 40
PRUNE_REASON = "no longer declared in a config file"
"""The reason recorded on the changes `reactive apply --prune` causes."""


def apply_checks(tx: Connection, service: HealthService,
                 items: list[CheckDeclaration], *, min_interval: float = 1.0) -> list[str]:
    """Upsert each declared check; report created and updated ones. An interval under
    `min_interval` seconds (the health setting `min_interval_seconds`) is refused."""
    lines: list[str] = []
    for index, item in enumerate(items):
        if item.interval_seconds < min_interval:
            raise ConfigItemError(
                index, f"check {item.id!r}: interval_seconds {item.interval_seconds:g} is "
                       f"below the minimum: expected at least {min_interval:g} seconds (the "
                       f"health setting min_interval_seconds)", field="interval_seconds")
        try:
            write = service.upsert_check_in(
                tx, item.id, strategy=item.strategy, config=item.config, name=item.name,
                interval_seconds=item.interval_seconds, paused=item.paused,
                actor=CONFIG_ACTOR, reason=CONFIG_REASON)
        except InvalidCheck as exc:
            raise ConfigItemError(index, f"check {item.id!r}: {exc}", field=exc.field) from exc
        if write.prev is None:
            lines.append(f"created check {item.id} ({item.strategy} every "
                         f"{item.interval_seconds:g}s)")
        elif write.changed_fields:
            lines.append(f"updated check {item.id} ({', '.join(write.changed_fields)})")
    return lines


def apply_associations(
    tx: Connection, service: HealthService, items: list[AssociationDeclaration]
) -> list[str]:
    """Upsert each declared association; report new ones and changes."""
    lines: list[str] = []
    for index, item in enumerate(items):
        pair = f"{item.system} <- {item.check}"
        try:
            write = service.associate_in(
                tx, item.system, item.check, enabled=item.enabled, thresholds=item.thresholds,
                actor=CONFIG_ACTOR, reason=CONFIG_REASON)
        except UnknownCheck as exc:
            raise ConfigItemError(
                index, f"association {pair}: unknown check {item.check!r}, expected a check "
                       f"declared under {CHECKS_SECTION!r} in this file or already stored",
                field="check") from exc
        except UnknownSystem as exc:
            raise ConfigItemError(
                index, f"association {pair}: unknown system {item.system!r}, expected a "
                       f"system declared under 'systems' in this file or already in the "
                       f"catalog", field="system") from exc
        except InvalidCheck as exc:
            raise ConfigItemError(index, f"association {pair}: {exc}", field=exc.field) from exc
        if write.prev is None:
            state = "enabled" if write.next.enabled else "disabled"
            lines.append(f"associated check {item.check} with system {item.system} ({state})")
        elif write.changed_fields:
            lines.append(f"updated association {pair} ({', '.join(write.changed_fields)})")
    return lines


def prune_checks(tx: Connection, service: HealthService,
                 items: list[CheckDeclaration]) -> list[str]:
    """Delete every check that `items` do not declare (with its associations)."""
    declared = {item.id for item in items}
    lines: list[str] = []
    for row in tx.execute(q.ALL_CONFIGS).all():
        if row.id not in declared and service.delete_check_in(
                tx, row.id, actor=CONFIG_ACTOR, reason=PRUNE_REASON):
            lines.append(f"removed check {row.id}")
    return lines


def prune_associations(tx: Connection, service: HealthService,
                       items: list[AssociationDeclaration]) -> list[str]:
    """Detach every check from every system where `items` do not declare the pair."""
    declared = {(item.system, item.check) for item in items}
    lines: list[str] = []
    for association in q.associations_in(tx):
        pair = (association.system_id, association.configuration_id)
        if pair not in declared and service.disassociate_in(
                tx, *pair, actor=CONFIG_ACTOR, reason=PRUNE_REASON):
            lines.append(f"removed association {pair[0]} <- {pair[1]}")
    return lines
