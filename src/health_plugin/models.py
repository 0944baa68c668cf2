"""The health plugin's values: statuses, the `health` state, checks, associations, runs.

Entity state and inputs are frozen pydantic models. JSON names that the automation
contract spells in camelCase (`healthyChecks`, `totalChecks`) are aliases; Python
names stay snake_case. Config-file items (`CheckDeclaration`, `AssociationDeclaration`)
forbid unknown keys so that a typo is an error naming its line, not a silent default.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from reactive_core import Identifier, ReactiveCoreError

from .evaluator import HealthStatus, Thresholds

HEALTH_KIND = "health"
"""The entity kind of per-system health: one entity per system, keyed by system id."""

CATALOG_KIND = "catalog-system"
"""The catalog's kind; when a host defines it, associations must name its systems."""


class HealthState(BaseModel):
    """The state of one `health` entity: `{status, healthyChecks, totalChecks}`."""

    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, extra="forbid"
    )

    status: HealthStatus
    healthy_checks: int = Field(ge=0)
    total_checks: int = Field(ge=0)

    @model_validator(mode="after")
    def _healthy_within_total(self) -> HealthState:
        if self.healthy_checks > self.total_checks:
            raise ValueError(
                f"healthyChecks ({self.healthy_checks}) must not exceed totalChecks "
                f"({self.total_checks})"
            )
        return self


class CheckConfiguration(BaseModel):
    """A stored check: what to run (`strategy` with its `config`) and how often."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    strategy: str
    config: dict[str, Any]
    interval_seconds: float
    paused: bool


class Association(BaseModel):
    """A check attached to a system; only enabled associations count towards health.

    `thresholds` None means the defaults (consecutive mode, 1 / 2 / 5).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    system_id: str
    configuration_id: str
    enabled: bool
    thresholds: Thresholds | None = None


class CheckRun(BaseModel):
    """One recorded run of a check for one system."""

    model_config = ConfigDict(frozen=True)

    id: int
    system_id: str
    configuration_id: str
    status: HealthStatus
    latency_ms: float | None
    result: dict[str, Any]
    timestamp: datetime


class CheckStateTransition(BaseModel):
    """A change of one check's evaluated status for one system (per-check history)."""

    model_config = ConfigDict(frozen=True)

    id: int
    system_id: str
    configuration_id: str
    from_status: HealthStatus | None
    to_status: HealthStatus
    run_id: int | None
    transitioned_at: datetime


# -- config-file items ----------------------------------------------------------------


MIN_INTERVAL_SECONDS = 0.01
"""The shortest interval a check may have at all (the Python API; demos and tests)."""
MAX_INTERVAL_SECONDS = 7 * 86_400.0
"""The longest interval a check may have."""


class CheckDeclaration(BaseModel):
    """One item of the `checks` config section.

    `config` is validated against the strategy's own model when the file is applied
    (strategies come from plugins), and reported with this item's line.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    id: Identifier
    name: str | None = Field(default=None, min_length=1)
    strategy: str = Field(min_length=1)
    config: dict[str, Any] = Field(default_factory=dict)
    interval_seconds: float = Field(default=60.0, gt=0, le=MAX_INTERVAL_SECONDS)
    paused: bool = False


class AssociationDeclaration(BaseModel):
    """One item of the `associations` config section: attach `check` to `system`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    system: Identifier
    check: Identifier
    enabled: bool = True
    thresholds: Thresholds | None = None


class HealthSettings(BaseModel):
    """Per-host settings: `Host(config={"plugins": {"health": {...}}})`.

    `scheduler` None (the default) runs checks exactly when the host runs scheduled
    jobs (`run_jobs`, and workers), so `reactive serve` runs checks and `reactive apply`
    does not. `use_env_proxy` (off by default) sends HTTP checks through the proxy
    named by `HTTP(S)_PROXY`: a health check is meant to reach the target directly.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    scheduler: bool | None = None
    max_concurrency: int = Field(default=16, ge=1, le=1000)
    jitter_ratio: float = Field(default=0.05, ge=0, le=0.5)
    lease_seconds: float = Field(default=300.0, gt=0)
    run_timeout_seconds: float = Field(default=120.0, gt=0)
    cache_ttl_seconds: float | None = Field(default=30.0, ge=0)
    raw_retention_days: float = Field(default=7.0, gt=0)
    transition_retention_days: float = Field(default=30.0, gt=0)
    use_env_proxy: bool = False
    min_interval_seconds: float = Field(default=1.0, ge=MIN_INTERVAL_SECONDS, le=3600)

    @model_validator(mode="after")
    def _lease_outlasts_a_run(self) -> HealthSettings:
        if self.lease_seconds <= self.run_timeout_seconds:
            raise ValueError(
                f"lease_seconds ({self.lease_seconds:g}) must exceed run_timeout_seconds "
                f"({self.run_timeout_seconds:g}): a check's lease must outlast its longest "
                f"run, or another instance may run it at the same time")
        return self


# -- errors ---------------------------------------------------------------------------


class HealthError(ReactiveCoreError):
    """Base of the health plugin's errors."""


class UnknownCheck(HealthError, LookupError):
    """A check configuration id was named that does not exist."""

    def __init__(self, message: str, *, check_id: str) -> None:
        super().__init__(message)
        self.check_id = check_id


class UnknownSystem(HealthError, LookupError):
    """An association named a system that the catalog does not hold."""

    def __init__(self, message: str, *, system_id: str) -> None:
        super().__init__(message)
        self.system_id = system_id


class InvalidCheck(HealthError, ValueError):
    """A check configuration was refused: unknown strategy, bad strategy config, bad id."""

    def __init__(self, message: str, *, field: str | tuple[str | int, ...]) -> None:
        super().__init__(message)
        self.field = field
