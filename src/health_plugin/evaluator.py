"""Turning runs into a status: per-check thresholds and the worst-wins system rule.

Pure functions, no I/O. A check is evaluated on its newest `MAX_RUNS` runs (newest
first). A run counts as a *failure* unless it is healthy.

* **consecutive** (default): the newest streak decides. A failure streak of at least
  `unhealthy_min_failures` (5) is unhealthy, of at least `degraded_min_failures` (2)
  degraded, shorter ones stay healthy (one failure is noise). A success streak of at
  least `healthy_min_successes` (1) is healthy; a shorter one (possible only when that
  threshold is above 1) is not enough to recover, so the failure streak just before it
  still decides.
* **window**: the failures among the newest `window_size` runs are compared with the
  same two failure thresholds.

In both modes the result is never worse than the worst run that was counted: five
*degraded* runs make a degraded check, not an unhealthy one. No runs at all is
healthy. A system is as bad as its worst check (unhealthy > degraded > healthy).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_RUNS = 100
"""How many of a check's newest runs its evaluation looks at."""


class HealthStatus(StrEnum):
    """Status of a run, a check or a system."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"

    @property
    def severity(self) -> int:
        """0 healthy, 1 degraded, 2 unhealthy: larger is worse."""
        return _SEVERITY[self]


_SEVERITY = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.UNHEALTHY: 2}


class ThresholdMode(StrEnum):
    """How failures are counted: the newest streak, or within the newest N runs."""

    CONSECUTIVE = "consecutive"
    WINDOW = "window"


class Thresholds(BaseModel):
    """When a check turns degraded or unhealthy (and, in consecutive mode, recovers)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: ThresholdMode = ThresholdMode.CONSECUTIVE
    healthy_min_successes: int = Field(default=1, ge=1, le=MAX_RUNS)
    degraded_min_failures: int = Field(default=2, ge=1, le=MAX_RUNS)
    unhealthy_min_failures: int = Field(default=5, ge=1, le=MAX_RUNS)
    window_size: int = Field(default=10, ge=1, le=MAX_RUNS)

    @model_validator(mode="after")
    def _reachable(self) -> Thresholds:
        if self.degraded_min_failures > self.unhealthy_min_failures:
            raise ValueError(
                f"degraded_min_failures ({self.degraded_min_failures}) must not exceed "
                f"unhealthy_min_failures ({self.unhealthy_min_failures})"
            )
        if self.mode is ThresholdMode.WINDOW and self.unhealthy_min_failures > self.window_size:
            raise ValueError(
                f"in window mode unhealthy_min_failures ({self.unhealthy_min_failures}) "
                f"must not exceed window_size ({self.window_size}), or the check could "
                f"never turn unhealthy"
            )
        return self


DEFAULT_THRESHOLDS = Thresholds()


def _as_status(value: HealthStatus | str) -> HealthStatus:
    try:
        return HealthStatus(value)
    except ValueError:
        expected = ", ".join(s.value for s in HealthStatus)
        raise ValueError(f"run status must be one of {expected}, received {value!r}") from None


def worst_status(statuses: Iterable[HealthStatus | str]) -> HealthStatus:
    """The worst of `statuses` (unhealthy > degraded > healthy); healthy when empty."""
    worst = HealthStatus.HEALTHY
    for value in statuses:
        status = _as_status(value)
        if status.severity > worst.severity:
            worst = status
            if worst is HealthStatus.UNHEALTHY:
                break
    return worst


def _by_failures(failures: int, thresholds: Thresholds) -> HealthStatus:
    if failures >= thresholds.unhealthy_min_failures:
        return HealthStatus.UNHEALTHY
    if failures >= thresholds.degraded_min_failures:
        return HealthStatus.DEGRADED
    return HealthStatus.HEALTHY


def _capped(level: HealthStatus, counted: Sequence[HealthStatus]) -> HealthStatus:
    cap = worst_status(counted)
    return level if level.severity <= cap.severity else cap


def _streak(runs: Sequence[HealthStatus], start: int, healthy: bool) -> int:
    end = start
    while end < len(runs) and (runs[end] is HealthStatus.HEALTHY) == healthy:
        end += 1
    return end - start


def evaluate_status(
    statuses_newest_first: Iterable[HealthStatus | str],
    thresholds: Thresholds | None = None,
) -> HealthStatus:
    """The status of one check from its runs' statuses, newest first.

    Only the newest `MAX_RUNS` runs count. `thresholds` None means the defaults:
    consecutive mode, healthy after 1 success, degraded at 2 and unhealthy at 5
    consecutive failures.
    """
    rules = DEFAULT_THRESHOLDS if thresholds is None else thresholds
    runs: list[HealthStatus] = []
    for value in statuses_newest_first:
        runs.append(_as_status(value))
        if len(runs) >= MAX_RUNS:
            break
    if not runs:
        return HealthStatus.HEALTHY
    if rules.mode is ThresholdMode.WINDOW:
        failed = [r for r in runs[: rules.window_size] if r is not HealthStatus.HEALTHY]
        return _capped(_by_failures(len(failed), rules), failed)
    successes = _streak(runs, 0, healthy=True)
    if successes >= rules.healthy_min_successes:
        return HealthStatus.HEALTHY
    failures = _streak(runs, successes, healthy=False)
    return _capped(_by_failures(failures, rules), runs[successes: successes + failures])


def aggregate_checks(check_statuses: Iterable[HealthStatus | str]) -> tuple[HealthStatus, int, int]:
    """`(worst status, healthy checks, total checks)` of a system's per-check statuses."""
    total = healthy = 0
    worst = HealthStatus.HEALTHY
    for value in check_statuses:
        status = _as_status(value)
        total += 1
        if status is HealthStatus.HEALTHY:
            healthy += 1
        elif status.severity > worst.severity:
            worst = status
    return worst, healthy, total
