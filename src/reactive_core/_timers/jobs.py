"""Scheduled jobs, built on durable timers: each job is a recurring timer of its own.

`registry.add_job(name, fn, every=... | cron=...)` becomes the timer `("job:<name>",
"schedule")`, armed by every instance that runs jobs (re-armed only when the schedule
changed, so restarts keep the pending deadline). The timer fires once per cluster per
slot; when slots were missed while no instance ran, the job runs once, at once, for
the latest of them, then continues at its next slot. A job that raises, or that a
crash or a stop cut short, runs once more for its slot (after a short backoff); if
that fails too, the failure is recorded on the timer (`last_error`) and the next slot
runs as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from .._delivery.policy import RetryPolicy
from .schedule import Cron, Every, Schedule, latest_slot
from .timers import Timer, Timers

if TYPE_CHECKING:
    from .._host.host import Host

logger = logging.getLogger("reactive_core.jobs")

JOB_KEY = "schedule"
JOB_RETRY = RetryPolicy(max_retries=1, base_seconds=5.0, max_seconds=60.0)
"""A job cut short or raising runs once more for its slot."""
JobFn = Callable[["Host", datetime], Awaitable[None]]


def job_topic(name: str) -> str:
    """The timer topic of job `name`."""
    return f"job:{name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A scheduled job: runs once per cluster per slot of its schedule."""

    name: str
    fn: JobFn
    schedule: Schedule
    plugin: str | None

    @property
    def every_seconds(self) -> float | None:
        """The interval, for an interval job."""
        return self.schedule.seconds if isinstance(self.schedule, Every) else None

    @property
    def cron(self) -> str | None:
        """The cron expression, for a cron job."""
        return self.schedule.expr if isinstance(self.schedule, Cron) else None


def arm_jobs_in(tx: Connection, timers: Timers, jobs: list[Job], now: datetime) -> None:
    """Arm each job's timer, unless it is armed already with the same schedule."""
    for job in jobs:
        current = timers.get_in(tx, job_topic(job.name), JOB_KEY)
        if (current is not None and current.every_seconds == job.every_seconds
                and current.cron == job.cron and current.status == "scheduled"):
            continue
        timers.schedule_in(tx, job_topic(job.name), JOB_KEY, at=job.schedule.next_after(now),
                           every=job.every_seconds, cron=job.cron)


def job_handler(job: Job, host: Host) -> Callable[[Timer], Awaitable[None]]:
    """The timer handler that runs `job` for the latest slot due when its timer fired."""

    async def run_job(timer: Timer) -> None:
        await job.fn(host, latest_slot(job.schedule, due=timer.due_at, now=host.clock()))

    run_job.__qualname__ = f"job {job.name}"
    return run_job

