"""What a loaded rule is: triggers, conditions and actions as frozen values.

`load_rules` (in `loader`) builds these from YAML and validates everything that can be
checked without a running host; the engine runs them. Every part remembers the line it
came from, so an error found later (an action no plugin offers) still names the place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time
from enum import StrEnum
from typing import Any, Literal

from .templates import Template

Ref = tuple[str, str]
"""What a rule reads: `(kind, id)`, or `(kind, "*")` for any entity of the kind."""

ANY_ID = "*"


class Mode(StrEnum):
    """What a new occurrence does while runs of the same rule are active."""

    SINGLE = "single"
    """Dropped (recorded as skipped) while a run is active."""
    RESTART = "restart"
    """The active run is cancelled and a new one starts."""
    QUEUED = "queued"
    """Runs one after the other, in occurrence order (up to `max` waiting)."""
    PARALLEL = "parallel"
    """Runs side by side (up to `max` at once; more are skipped)."""


@dataclass(frozen=True)
class FieldPath:
    """`state.<kind>.<id>.<field>`: one field of one entity (id None: any entity of the
    kind, from the change that triggered)."""

    kind: str
    id: str | None
    field: str

    @property
    def ref(self) -> Ref:
        return (self.kind, self.id if self.id is not None else ANY_ID)

    def __str__(self) -> str:
        return f"{self.kind}:{self.id or ANY_ID}.{self.field}"


# -- triggers ---------------------------------------------------------------------------

@dataclass(frozen=True)
class EntityTrigger:
    """Any change of `kind` (optionally one `id`; optionally only when `field` changed)."""

    kind: str
    id: str | None = None
    field: str | None = None


@dataclass(frozen=True)
class EventTrigger:
    """A derived trigger id, e.g. `healthcheck.system_degraded`."""

    event: str


@dataclass(frozen=True)
class NumericStateTrigger:
    """Fires when `path`'s value enters the band (false -> true), after `hold` seconds in
    it when `hold` is set; never just because it is already inside."""

    path: FieldPath
    above: float | None = None
    below: float | None = None
    hold: float | None = None


@dataclass(frozen=True)
class TimeTrigger:
    """At a wall-clock time in `timezone`, on `weekdays` (0 = Monday; None: every day)."""

    at: time
    timezone: str = "UTC"
    weekdays: frozenset[int] | None = None


@dataclass(frozen=True)
class IntervalTrigger:
    """Every `seconds`."""

    seconds: float


TriggerKind = EntityTrigger | EventTrigger | NumericStateTrigger | TimeTrigger | IntervalTrigger


@dataclass(frozen=True)
class Window:
    """Let an occurrence through only when `count` happened within `minutes` (per
    partition). `every`: each occurrence at or past the count fires; `once`: the one
    reaching the count fires, then none until the partition's count falls below it."""

    count: int
    minutes: float
    refire: Literal["every", "once"] = "every"
    partition_by: Template | None = None


@dataclass(frozen=True)
class Trigger:
    """One trigger of a rule: what it listens to, plus its filter and window gate."""

    index: int
    what: TriggerKind
    filter: Template | None = None
    window: Window | None = None
    line: int | None = None

    @property
    def name(self) -> str:
        return f"t{self.index}"


# -- conditions -------------------------------------------------------------------------

@dataclass(frozen=True)
class NumericStateCondition:
    """`value` (a number or an expression, usually a state path) strictly inside the
    bounds; with `hold`, for at least that many seconds (needs `path`)."""

    value: Template | float
    path: FieldPath | None = None
    above: float | None = None
    below: float | None = None
    hold: float | None = None
    line: int | None = None


@dataclass(frozen=True)
class StateCondition:
    """Every `fields` item of entity `ref` equals its value (`hold`: for that long)."""

    ref: Ref
    fields: tuple[tuple[str, Any], ...]
    hold: float | None = None
    line: int | None = None


@dataclass(frozen=True)
class TimeCondition:
    """Now is after `after` and before `before` (overnight when after > before), on
    `weekdays`, in `timezone`."""

    after: time | None = None
    before: time | None = None
    weekdays: frozenset[int] | None = None
    timezone: str = "UTC"
    line: int | None = None


@dataclass(frozen=True)
class TemplateCondition:
    """An expression that must be true."""

    template: Template
    line: int | None = None


@dataclass(frozen=True)
class AndCondition:
    conditions: tuple[Condition, ...]
    line: int | None = None


@dataclass(frozen=True)
class OrCondition:
    conditions: tuple[Condition, ...]
    line: int | None = None


@dataclass(frozen=True)
class NotCondition:
    """True when none of `conditions` holds."""

    conditions: tuple[Condition, ...]
    line: int | None = None


Condition = (NumericStateCondition | StateCondition | TimeCondition | TemplateCondition
             | AndCondition | OrCondition | NotCondition)


# -- actions ----------------------------------------------------------------------------

@dataclass(frozen=True)
class LogAction:
    message: Template
    level: Literal["debug", "info", "warning", "error"] = "info"
    line: int | None = None


@dataclass(frozen=True)
class WebhookAction:
    """POST (or `method`) `body` to `url`; `body` is any YAML value whose strings are
    templates. Retried `retries` times with exponential backoff from `backoff` seconds
    (with jitter) on connection errors, timeouts, 429 and 5xx."""

    url: Template
    method: str = "POST"
    headers: tuple[tuple[str, Template], ...] = ()
    body: Any = None
    timeout: float = 10.0
    retries: int = 3
    backoff: float = 1.0
    line: int | None = None


@dataclass(frozen=True)
class DelayAction:
    seconds: float
    line: int | None = None


@dataclass(frozen=True)
class WaitUntilAction:
    """Wait until every condition holds (at once when it already does); after
    `timeout` seconds, continue (`continue_on_timeout`) or stop the run."""

    conditions: tuple[Condition, ...]
    timeout: float | None = None
    continue_on_timeout: bool = True
    line: int | None = None


@dataclass(frozen=True)
class ChooseOption:
    conditions: tuple[Condition, ...]
    actions: tuple[Action, ...]
    line: int | None = None


@dataclass(frozen=True)
class ChooseAction:
    """The actions of the first option whose conditions all hold, else `default`."""

    options: tuple[ChooseOption, ...]
    default: tuple[Action, ...] = ()
    line: int | None = None


@dataclass(frozen=True)
class StopAction:
    """End the run here; `error` marks it failed."""

    reason: str = ""
    error: bool = False
    line: int | None = None


@dataclass(frozen=True)
class PluginAction:
    """An action a plugin registered (`health.pause_check`); `params` strings are
    templates, rendered before the call."""

    name: str
    params: Any = None
    line: int | None = None


Action = (LogAction | WebhookAction | DelayAction | WaitUntilAction | ChooseAction
          | StopAction | PluginAction)


# -- the rule ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """One automation rule, validated."""

    id: str
    triggers: tuple[Trigger, ...]
    conditions: tuple[Condition, ...] = ()
    actions: tuple[Action, ...] = ()
    mode: Mode = Mode.SINGLE
    max: int = 10
    description: str = ""
    enabled: bool = True
    source: str | None = None
    """The file it came from (or `<text>`, `<config>`)."""
    line: int | None = None
    definition: dict[str, Any] = field(default_factory=dict, compare=False)
    """The rule as written (plain YAML data), stored and re-loaded from the database."""
    digest: str = ""
    """A hash of `definition`: equal digests mean an unchanged rule across reloads."""
