"""Automation triggers and payloads derived from `catalog-system` changes."""

from __future__ import annotations

from typing import Any

from reactive_core import EntityChange

CATALOG_CREATED = "catalog.created"
CATALOG_UPDATED = "catalog.updated"
CATALOG_DELETED = "catalog.deleted"


def derive_catalog_triggers(change: EntityChange) -> list[str]:
    """`catalog.created` on create, `catalog.deleted` on tombstone, else `catalog.updated`."""
    if change.is_tombstone:
        return [CATALOG_DELETED]
    if change.is_create:
        return [CATALOG_CREATED]
    return [CATALOG_UPDATED]


def catalog_change_payload(change: EntityChange) -> dict[str, Any]:
    """`{systemId, systemName, changedFields}`; `systemName` is absent on a tombstone."""
    payload: dict[str, Any] = {"systemId": change.id}
    if change.next is not None:
        payload["systemName"] = change.next["name"]
    payload["changedFields"] = list(change.changed_fields)
    return payload
