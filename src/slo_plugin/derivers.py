"""Trigger ids of the SLO plugin's kinds.

The `slo` kind derives none: rules react to its changes directly (`entity: slo`,
`numeric_state` over `budgetRemainingPercent`). An achievement unlocked creates its
`slo-achievement` entity, which derives `slo.achievement_unlocked`; a weekly digest
creates its `slo-digest` entity, which derives `slo.weekly_digest`.
"""

from __future__ import annotations

from typing import Any

from reactive_core import EntityChange

ACHIEVEMENT_KIND = "slo-achievement"
"""Unlocked achievements, keyed by their row id."""
DIGEST_KIND = "slo-digest"
"""Weekly digests, keyed by ISO week (`2026-W48`)."""
ACHIEVEMENT_UNLOCKED = "slo.achievement_unlocked"
WEEKLY_DIGEST = "slo.weekly_digest"


def derive_slo_triggers(change: EntityChange) -> list[str]:
    """`slo.achievement_unlocked` when an achievement entity is created,
    `slo.weekly_digest` when a digest is; nothing for `slo` changes."""
    if change.prev is not None or change.next is None:
        return []
    if change.kind == ACHIEVEMENT_KIND:
        return [ACHIEVEMENT_UNLOCKED]
    if change.kind == DIGEST_KIND:
        return [WEEKLY_DIGEST]
    return []


def slo_trigger_payload(change: EntityChange) -> dict[str, Any]:
    """The trigger's payload: the created entity's state (camelCase fields)."""
    return dict(change.next or {})
