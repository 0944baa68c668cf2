"""The write rule: every write a system's `health` depends on is that system's mutation.

A row that the `health` read of system S depends on (S's associations, S's runs) is
written only inside S's own `mutate_in` (or `remove_in`, when the write leaves S without
any enabled association), after `prev` was read, so the change log sees exactly what
the write did. A write that touches several systems (pausing a check, deleting it) is
one such mutation per system, in sorted id order.

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

Cache: every health write registers `after_commit(tx, invalidate)` *before* it calls
`mutate_in`, whose own after-commit callback wakes the broadcast feed and the
dispatcher; the callbacks run in that order, so no subscriber of this process is
woken by a write before the cached status is gone (invalidate before notify).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from reactive_core import Actor, EntityHandle, after_commit

from . import queries as q
from .entity import has_enabled_association, pair_statuses, read_one
from .evaluator import HealthStatus, Thresholds, evaluate_status
from .models import HealthError, HealthState

if TYPE_CHECKING:
    from reactive_core import Host, ReadThroughCache

    from .executor import CheckExecutor
    from .scheduler import CheckScheduler


class SystemWrites:
    """Writes to one system's health rows, each as that system's own health mutation."""

    def __init__(self, *, health: EntityHandle[HealthState],
                 invalidate: Callable[[str], None]) -> None:
        self._health = health
        self._invalidate = invalidate

    def lock_system(self, tx: Connection, system_id: str) -> None:
        """The system's `health` write lock (re-entrant within a transaction)."""
        self._health.lock_in(tx, system_id)

    def write_system_in(
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
        self.lock_system(tx, system_id)
        before = has_enabled_association(tx, system_id) if present is None else present
        after = before if present_after is None else present_after(tx)
        after_commit(tx, functools.partial(self._invalidate, system_id))
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

    def sync_check_state_in(
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

    def remove_pairs_in(self, tx: Connection, system_id: str, check_ids: list[str], *,
                        actor: Actor | None, reason: str | None) -> None:
        """Delete (system, check) pairs with their runs and history, as one health write."""
        gone = set(check_ids)

        def remaining(t: Connection) -> bool:
            return any(r.enabled and r.configuration_id not in gone
                       for r in t.execute(q.ASSOCS_OF_SYSTEM, {"s": system_id}))

        def write(t: Connection) -> None:
            for check_id in sorted(gone):
                for statement in q.DELETE_PAIR_ROWS:
                    t.execute(statement, {"s": system_id, "c": check_id})

        self.write_system_in(tx, system_id, write, present_after=remaining, actor=actor,
                             reason=reason)


class ServiceParts:
    """What the parts of `HealthService` (checks, associations, runs, status) share."""

    _host: Host
    _health: EntityHandle[HealthState]
    _writes: SystemWrites
    _executor: CheckExecutor
    _scheduler: CheckScheduler
    _cache: ReadThroughCache[object]
    _catalog_kind: str
