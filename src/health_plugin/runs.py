"""Check runs: recording them (each with its system's health mutation), reading them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection

from reactive_core import Actor

from . import queries as q
from .associations import AssociationOps
from .entity import parse_thresholds, system_ids
from .evaluator import Thresholds
from .models import CheckRun, CheckStateTransition, UnknownCheck
from .queries import as_utc, utcnow
from .strategies import CheckOutcome

RUN_ACTOR_TYPE = "health-check"
"""Actor type of health changes caused by a check run (the actor id is the check id)."""


class RunOps(AssociationOps):
    """The run half of `HealthService`."""

    async def run_check(self, check_id: str, *, actor: Actor | None = None) -> CheckOutcome:
        """Run a check now (outside the schedule) and record it for its systems; the
        health changes it causes name `actor` (default: the check itself)."""
        check = await self.get_check(check_id)
        if check is None:
            raise UnknownCheck(f"unknown check {check_id!r}: expected the id of a check "
                               f"configuration", check_id=check_id)
        started = utcnow()
        outcome = await self._executor.execute(check)
        await self.record_run(check_id, outcome, timestamp=started, actor=actor)
        return outcome

    async def record_run(
        self, check_id: str, outcome: CheckOutcome, *, systems: Iterable[str] | None = None,
        timestamp: datetime | None = None, actor: Actor | None = None,
    ) -> list[int]:
        """Record one run of a check for its systems; the new run ids.

        By default the run goes to every system with an *enabled* association; naming
        `systems` records it for those (a disabled association, like a paused check,
        keeps the run without counting it). Systems without an association are
        skipped. `timestamp` is when the run started (default: now).

        One unit of work: each system's run insert and its health mutation commit
        together.
        """
        if systems is not None and not isinstance(systems, str):
            # Read once, out here: the unit of work may run more than once (`Host.run`).
            systems = tuple(systems)
        return await self._host.run(lambda tx: self.record_run_in(
            tx, check_id, outcome, systems=systems, timestamp=timestamp, actor=actor))

    def record_run_in(
        self, tx: Connection, check_id: str, outcome: CheckOutcome, *,
        systems: Iterable[str] | None = None, timestamp: datetime | None = None,
        actor: Actor | None = None,
    ) -> list[int]:
        """`record_run` inside `tx`; `UnknownCheck` when the check does not exist."""
        if isinstance(systems, str):
            raise TypeError(f"systems must be a collection of system ids, received the "
                            f"string {systems!r:.80}: expected e.g. [{systems!r:.80}]")
        if tx.execute(q.CONFIG, {"id": check_id}).first() is None:
            raise UnknownCheck(f"unknown check {check_id!r}: expected the id of a check "
                               f"configuration", check_id=check_id)
        if systems is None:
            targets = system_ids(r.system_id for r in tx.execute(
                q.ASSOCS_OF_CHECK, {"c": check_id}) if r.enabled)
        else:
            targets = system_ids(systems)
        when = utcnow() if timestamp is None else as_utc(timestamp)
        actor = actor or Actor(RUN_ACTOR_TYPE, check_id)
        writes = self._writes
        ids: list[int] = []
        for system_id in targets:
            writes.lock_system(tx, system_id)
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
                writes.sync_check_state_in(t, s, check_id, th, run_id, when)

            writes.write_system_in(tx, system_id, write, actor=actor,
                                   present=True if row.enabled else None,
                                   reason=f"check {check_id} run: {outcome.status.value}")
        return ids

    async def runs(self, system_id: str, check_id: str | None = None, *,
                   limit: int = 100) -> list[CheckRun]:
        """The newest runs of a system (optionally of one check), newest first."""
        return await self._host.read(q.runs_in, system_id=system_id, check_id=check_id,
                                     limit=limit)

    async def check_transitions(self, system_id: str,
                                check_id: str | None = None) -> list[CheckStateTransition]:
        """Per-check status transitions of a system, oldest first."""
        return await self._host.read(q.check_transitions_in, system_id=system_id,
                                     check_id=check_id)
