"""The SLO plugin's values: objectives, downtime events, maintenance windows, the status.

Pure values, no I/O. Inputs are frozen pydantic models that forbid unknown keys, so a
typo in a config item is an error naming its field, not a silent default. Python names
are snake_case; the camelCase spellings of the JSON/automation contract
(`windowDays`, `budgetRemainingPercent`) are aliases, accepted on input next to the
snake_case names. An invalid value is a pydantic `ValidationError` whose message names
the field, what it expects and what it received ("target must be > 0 and ≤ 100,
received 0").

Timestamps are timezone-aware UTC: a naive datetime is taken as UTC (the way the
databases hand them back), an aware one is converted.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from reactive_core import Identifier, check_id

MAX_WINDOW_DAYS = 3650
"""The longest objective window, in days (about ten years)."""


def as_utc(value: datetime) -> datetime:
    """`value` as aware UTC; a naive datetime is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _not_bool(value: Any, field: str, expected: str) -> Any:
    # pydantic's lax mode turns True into 1: a flag where a number belongs is a mistake.
    if isinstance(value, bool):
        raise ValueError(f"{field} must be {expected}, received the boolean {value}")
    return value


class DependencyExclusion(StrEnum):
    """Which downtime an objective's error budget counts.

    `strict` counts every minute the system was down; `self-only` leaves out the
    minutes attributed to an upstream system that was down at the same time.
    """

    STRICT = "strict"
    SELF_ONLY = "self-only"


_EXCLUSIONS = frozenset(member.value for member in DependencyExclusion)


class Attribution(StrEnum):
    """Whose fault a downtime event is: the system's own, or an upstream's it depends on."""

    SELF = "self"
    UPSTREAM = "upstream"


class BurnAlert(StrEnum):
    """How alarming the budget burn is; see `compute_status` for the rule."""

    NONE = "none"
    WARNING = "warning"
    CRITICAL = "critical"
    FAST_BURN = "fast_burn"


_INPUT_CONFIG = ConfigDict(
    frozen=True, alias_generator=to_camel, populate_by_name=True, extra="forbid")


class BurnRateThresholds(BaseModel):
    """When an objective's `burn_alert` is raised.

    * `warning` (default 50) and `critical` (default 80): percentages of the error
      budget consumed, each 0 < x ≤ 100, with `warning` ≤ `critical`.
    * `fast_burn_multiplier` (default 5): a finite number > 0; `fast_burn` is raised
      when the burn rate over the last hour is at least this many times the rate that
      would spend exactly the budget over the whole window.
    """

    model_config = _INPUT_CONFIG

    warning: float = 50.0
    critical: float = 80.0
    fast_burn_multiplier: float = 5.0

    @field_validator("warning", "critical", mode="before")
    @classmethod
    def _percent_not_bool(cls, value: Any, info: ValidationInfo) -> Any:
        return _not_bool(value, str(info.field_name), "a percentage > 0 and ≤ 100")

    @field_validator("warning", "critical")
    @classmethod
    def _percent(cls, value: float, info: ValidationInfo) -> float:
        if not 0 < value <= 100:
            raise ValueError(
                f"{info.field_name} must be a percentage > 0 and ≤ 100, received {value:g}")
        return value

    @field_validator("fast_burn_multiplier", mode="before")
    @classmethod
    def _multiplier_not_bool(cls, value: Any) -> Any:
        return _not_bool(value, "fast_burn_multiplier", "a finite number > 0")

    @field_validator("fast_burn_multiplier")
    @classmethod
    def _multiplier(cls, value: float) -> float:
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(
                f"fast_burn_multiplier must be a finite number > 0, received {value:g}")
        return value

    @model_validator(mode="after")
    def _warning_first(self) -> BurnRateThresholds:
        if self.warning > self.critical:
            raise ValueError(
                f"warning ({self.warning:g}) must not exceed critical ({self.critical:g}): "
                f"a warning comes before the critical alert")
        return self


class Objective(BaseModel):
    """A service-level objective: `target` % availability of a system over `window_days`.

    * `id`, `system_id`, `health_check_configuration_id`: identifiers (printable text
      of 1 to 255 characters without surrounding whitespace). With
      `health_check_configuration_id` the objective follows that one check's status
      instead of the whole system's.
    * `target`: a percentage, 0 < t ≤ 100 (100 leaves no error budget).
    * `window_days`: a whole number of days, 1 to 3650. A fractional number (1.5) is
      refused rather than truncated, and so is a boolean.
    * `dependency_exclusion`: `strict` (default) or `self-only`.
    * `excluded_dependency_ids`: upstream systems whose outages never make an event
      `upstream` (the handlers attribute them to the system itself).
    * `burn_rate_thresholds`: see `BurnRateThresholds`.
    * `exclude_maintenance`: subtract the system's maintenance windows from downtime.
    """

    model_config = _INPUT_CONFIG

    id: Identifier
    system_id: Identifier
    health_check_configuration_id: Identifier | None = None
    target: float
    window_days: int
    dependency_exclusion: DependencyExclusion = DependencyExclusion.STRICT
    excluded_dependency_ids: tuple[Identifier, ...] = ()
    burn_rate_thresholds: BurnRateThresholds = Field(default_factory=BurnRateThresholds)
    exclude_maintenance: bool = False

    @field_validator("id", "system_id", "health_check_configuration_id", mode="before")
    @classmethod
    def _identifier(cls, value: Any, info: ValidationInfo) -> Any:
        # The same rule as `Identifier`, checked first so the message names the field.
        if value is None and info.field_name == "health_check_configuration_id":
            return value
        return check_id(value, str(info.field_name))

    @field_validator("target", mode="before")
    @classmethod
    def _target_not_bool(cls, value: Any) -> Any:
        return _not_bool(value, "target", "> 0 and ≤ 100")

    @field_validator("target")
    @classmethod
    def _target(cls, value: float) -> float:
        if not 0 < value <= 100:
            raise ValueError(f"target must be > 0 and ≤ 100, received {value:g}")
        return value

    @field_validator("window_days", mode="before")
    @classmethod
    def _whole_days(cls, value: Any) -> Any:
        expected = f"a whole number of days from 1 to {MAX_WINDOW_DAYS}"
        _not_bool(value, "window_days", expected)
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"window_days must be {expected}, received {value:g}")
            return int(value)
        return value

    @field_validator("window_days")
    @classmethod
    def _window_range(cls, value: int) -> int:
        if not 1 <= value <= MAX_WINDOW_DAYS:
            raise ValueError(
                f"window_days must be a whole number of days from 1 to {MAX_WINDOW_DAYS}, "
                f"received {value}")
        return value

    @field_validator("dependency_exclusion", mode="before")
    @classmethod
    def _exclusion(cls, value: Any) -> Any:
        if isinstance(value, str) and value in _EXCLUSIONS:
            return value
        allowed = [member.value for member in DependencyExclusion]
        if value not in allowed:
            expected = " or ".join(repr(v) for v in allowed)
            raise ValueError(f"dependency_exclusion must be {expected}, received {value!r}")
        return value

    @property
    def is_strict(self) -> bool:
        """True when every downtime minute counts, upstream ones included."""
        return self.dependency_exclusion is DependencyExclusion.STRICT


class DowntimeEvent(BaseModel):
    """A stretch of time a system was down; `end` None while it is still open.

    `upstream_system_id` and `upstream_system_name` say which upstream an `upstream`
    event is blamed on (the name as the catalog spelled it when the event opened); the
    engine ignores them on `self` events.
    """

    model_config = _INPUT_CONFIG

    start: datetime
    end: datetime | None
    attribution: Attribution
    upstream_system_id: str | None = None
    upstream_system_name: str | None = None

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    @model_validator(mode="after")
    def _ordered(self) -> DowntimeEvent:
        if self.end is not None and self.end < self.start:
            raise ValueError(
                f"end ({self.end.isoformat()}) must not be before start "
                f"({self.start.isoformat()})")
        return self

    @property
    def is_open(self) -> bool:
        """True while the event has no end."""
        return self.end is None

    @property
    def duration_seconds(self) -> float | None:
        """The event's length in seconds; None while it is open."""
        return None if self.end is None else (self.end - self.start).total_seconds()


class MaintenanceWindow(BaseModel):
    """Planned work on a system, from `start` to `end` (end after start).

    A `cancelled` window is kept for the record but never excludes anything.
    """

    model_config = _INPUT_CONFIG

    start: datetime
    end: datetime
    cancelled: bool = False

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return as_utc(value)

    @model_validator(mode="after")
    def _ordered(self) -> MaintenanceWindow:
        if self.end <= self.start:
            raise ValueError(
                f"end ({self.end.isoformat()}) must be after start ({self.start.isoformat()})")
        return self


# -- the computed status --------------------------------------------------------------

_OUTPUT_CONFIG = ConfigDict(
    frozen=True, alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)


class UpstreamMinutes(BaseModel):
    """Downtime minutes blamed on one upstream system (`system_id` None when unknown)."""

    model_config = _OUTPUT_CONFIG

    system_id: str | None
    system_name: str | None
    minutes: float


class AttributionMinutes(BaseModel):
    """Downtime minutes in the window per source: the system itself and each upstream.

    Each source's events are merged on their own, so the parts add up to
    `error_budget_consumed_strict_minutes` unless events of different sources overlap
    in time (which the handlers avoid by splitting events). `upstreams` is ordered by
    minutes, largest first.
    """

    model_config = _OUTPUT_CONFIG

    self_minutes: float
    upstreams: tuple[UpstreamMinutes, ...] = ()


class BurnWindow(BaseModel):
    """One multi-window burn-rate pair of the SRE workbook (1h/5m, 6h/30m, 3d/6h).

    A burn rate is the budget spent over a window divided by the budget that window
    may spend (1 = on course to spend exactly the whole budget). The pair `fires` when
    both rates reach `threshold`. Rates are None when the objective has no budget.
    """

    model_config = _OUTPUT_CONFIG

    long_window_minutes: int
    short_window_minutes: int
    threshold: float
    long_burn_rate: float | None
    short_burn_rate: float | None
    fires: bool


class SloStatus(BaseModel):
    """An objective's error budget at one moment, as `compute_status` computes it.

    Minutes are in the objective's window. `error_budget_consumed_minutes` is what the
    objective's exclusion mode counts (self minutes only for `self-only`);
    `error_budget_consumed_strict_minutes` counts everything. Serialises by alias
    (`errorBudgetRemainingPercent`, ...), the spelling of the JSON contract.
    """

    model_config = _OUTPUT_CONFIG

    error_budget_allowed_minutes: float
    error_budget_remaining_percent: float
    error_budget_remaining_minutes: float
    error_budget_consumed_minutes: float
    error_budget_consumed_strict_minutes: float
    current_availability: float
    strict_availability: float
    burn_rate: float | None
    is_breaching: bool
    has_open_downtime: bool
    attribution: AttributionMinutes
    burn_windows: tuple[BurnWindow, ...]
    burn_alert: BurnAlert
