"""The check scheduler: each enabled, unpaused check is a recurring durable timer.

A check is armed as the timer `("health.check", <check id>)` every `interval_seconds`,
first firing at once plus a jitter of up to `jitter_ratio` of the interval (which
spreads checks declared together), then keeping its cadence. The core's timers fire it
once per cluster, with a lease that outlasts the longest run and at most
`max_concurrency` runs at once per instance. A firing runs the check (unless it is
paused or no enabled association names it: then nobody would see the run) and records
the run — in one unit of work with the health mutations it causes. A failure to record
skips to the next slot (a failed *check* is a recorded unhealthy run, not a failure).
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from reactive_core import Timer, Timers

from .models import CheckConfiguration, HealthSettings, UnknownCheck
from .queries import utcnow

if TYPE_CHECKING:
    from .executor import CheckExecutor
    from .service import HealthService

logger = logging.getLogger("health_plugin.scheduler")

CHECK_TOPIC = "health.check"
"""The timer topic of check runs; the key is the check id."""


class CheckScheduler:
    """Arms and disarms the timers of checks."""

    def __init__(self, *, timers: Timers, settings: HealthSettings,
                 rng: random.Random | None = None) -> None:
        self._timers = timers
        self._settings = settings
        self._rng = rng or random.Random()

    def arm_in(self, tx: Connection, check: CheckConfiguration) -> None:
        """(Re-)arm `check`'s timer: first run now plus jitter, then every interval."""
        spread = self._settings.jitter_ratio * check.interval_seconds
        first = utcnow() + timedelta(seconds=self._rng.uniform(0, spread) if spread else 0.0)
        self._timers.schedule_in(tx, CHECK_TOPIC, check.id, at=first,
                                 every=check.interval_seconds)

    def disarm_in(self, tx: Connection, check_id: str) -> None:
        """Stop running check `check_id` (paused or deleted)."""
        self._timers.cancel_in(tx, CHECK_TOPIC, check_id)


class CheckRunner:
    """The timer handler: run the check the timer names, record the run."""

    def __init__(self, *, service: HealthService, executor: CheckExecutor) -> None:
        self._service = service
        self._executor = executor
        self.runs_recorded = 0

    async def fire(self, timer: Timer) -> None:
        """Run check `timer.key` once and record it for its enabled associations."""
        check = await self._service.runnable_check(timer.key)
        if check is None:
            # Gone, paused, or attached to no system (yet): nobody would see the run.
            logger.debug("health check %s would count nowhere; not run", timer.key)
            return
        started = utcnow()
        outcome = await self._executor.execute(check)
        try:
            ids = await self._service.record_run(check.id, outcome, timestamp=started)
        except UnknownCheck:
            logger.debug("health check %s was deleted while it ran; run dropped", check.id)
            return
        self.runs_recorded += len(ids)
