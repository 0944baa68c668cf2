"""The shapes of the core's API responses (what `/openapi.json` describes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .._delivery.queue import DeliveryRow
from .._entities.changes import EntityChange
from .._entities.logs import Transition

_FROZEN = ConfigDict(frozen=True)


class Readiness(BaseModel):
    """`GET /healthz`: `ok` (200) when the database answers and the workers run, else
    `unavailable` (503) with what is wrong."""

    model_config = _FROZEN

    status: Literal["ok", "unavailable"]
    instance: str
    problems: list[str]


class EntityOut(BaseModel):
    """One entity: its kind, id and current state (JSON form, aliases applied)."""

    model_config = _FROZEN

    kind: str
    id: str
    state: dict[str, Any]


class EntityItem(BaseModel):
    """One entity of a listing of its kind."""

    model_config = _FROZEN

    id: str
    state: dict[str, Any]


class EntitiesPage(BaseModel):
    """Entities of one kind by id; `next_after` is the cursor of the next page (or null)."""

    model_config = _FROZEN

    items: list[EntityItem]
    next_after: str | None


class ActorOut(BaseModel):
    """Who caused a change: `type` ("user", "system", "automation", "config", …) and id."""

    model_config = _FROZEN

    type: str
    id: str


class ChangeOut(BaseModel):
    """One logged change: the states before and after, what changed, who and why."""

    model_config = _FROZEN

    seq: int
    change_id: str
    kind: str
    entity_id: str
    prev: dict[str, Any] | None
    next: dict[str, Any] | None
    delta: dict[str, Any]
    changed_fields: list[str]
    actor: ActorOut
    occurred_at: datetime
    reason: str | None

    @classmethod
    def of(cls, change: EntityChange) -> ChangeOut:
        """`change` as the API shows it."""
        return cls(seq=change.seq, change_id=change.change_id, kind=change.kind,
                   entity_id=change.id, prev=change.prev, next=change.next,
                   delta=change.delta, changed_fields=list(change.changed_fields),
                   actor=ActorOut(type=change.actor.type, id=change.actor.id),
                   occurred_at=change.occurred_at, reason=change.reason)


class ChangesPage(BaseModel):
    """Changes oldest first; `next_after` is the seq to ask `after` for the changes that
    follow this page, null when none follows yet."""

    model_config = _FROZEN

    items: list[ChangeOut]
    next_after: int | None


class TransitionOut(BaseModel):
    """One row of the per-field transition log (values in their text form)."""

    model_config = _FROZEN

    id: int
    change_seq: int
    kind: str
    entity_id: str
    field: str
    from_value: str | None
    to_value: str | None
    transitioned_at: datetime

    @classmethod
    def of(cls, row: Transition) -> TransitionOut:
        """`row` as the API shows it."""
        return cls(id=row.id, change_seq=row.change_seq, kind=row.kind,
                   entity_id=row.entity_id, field=row.field, from_value=row.from_value,
                   to_value=row.to_value, transitioned_at=row.transitioned_at)


class TransitionsPage(BaseModel):
    """Transitions oldest first; `next_after` is the id to ask `after` for the rows that
    follow this page, null when none follows yet."""

    model_config = _FROZEN

    items: list[TransitionOut]
    next_after: int | None


class DeliveryOut(BaseModel):
    """One work-queue delivery of a change to a group."""

    model_config = _FROZEN

    id: int
    change_seq: int
    group: str
    kind: str
    entity_id: str
    status: str
    attempts: int
    available_at: datetime | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    created_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, row: DeliveryRow, *, last_error: str | None) -> DeliveryOut:
        """`row` as the API shows it (`last_error` already made safe to show)."""
        return cls(id=row.id, change_seq=row.change_seq, group=row.group, kind=row.kind,
                   entity_id=row.entity_id, status=str(row.status), attempts=row.attempts,
                   available_at=row.available_at, lease_owner=row.lease_owner,
                   lease_expires_at=row.lease_expires_at, last_error=last_error,
                   created_at=row.created_at, finished_at=row.finished_at)


class DeliveriesPage(BaseModel):
    """Deliveries newest first; `next_before` is the id to ask `before` for the older
    ones, null when this page is the oldest."""

    model_config = _FROZEN

    items: list[DeliveryOut]
    next_before: int | None


class ApplyResult(BaseModel):
    """What an applied config changed (or, with `dry_run`, would change), one line each;
    `dry_run` says whether anything was stored."""

    model_config = _FROZEN

    changes: list[str]
    dry_run: bool


class RuleRow(BaseModel):
    """An installed rule: its triggers in words, where it came from, its definition
    (credentials in URLs shown as `***`)."""

    model_config = _FROZEN

    rule_id: str
    mode: str
    triggers: str
    source: str
    definition: dict[str, Any]


class LoadErrorRow(BaseModel):
    """A problem of the last load of the rules, with its file and line."""

    model_config = _FROZEN

    path: str | None
    line: int | None
    rule_id: str | None
    message: str


class HoldRow(BaseModel):
    """An armed `for:` hold of a rule and when it fires."""

    model_config = _FROZEN

    rule_id: str | None
    trigger: Any
    entity: str
    armed_at: str | None
    deadline: datetime


class RulesOut(BaseModel):
    """`GET /api/rules`: the installed rules, the load errors and the armed holds."""

    model_config = _FROZEN

    rules: list[RuleRow]
    load_errors: list[LoadErrorRow]
    holds: list[HoldRow]


class RunRow(BaseModel):
    """One run of a rule, as `reactive runs --json` lists it."""

    model_config = _FROZEN

    run_id: int
    rule_id: str
    status: str
    trigger: str | None
    entity_id: str | None
    event: str | None
    created_at: datetime
    finished_at: datetime | None
    steps: int
    error: str | None


class RunsPage(BaseModel):
    """Runs newest first; `next_before` is the id to ask `before` for older runs, null
    when this page is the oldest."""

    model_config = _FROZEN

    items: list[RunRow]
    next_before: int | None


class RunTrace(BaseModel):
    """One run with its trigger payload, its conditions' results and each step."""

    model_config = _FROZEN

    run_id: int
    rule_id: str
    status: str
    trigger: dict[str, Any]
    entity_id: str | None
    event: str | None
    created_at: datetime
    finished_at: datetime | None
    steps: int
    error: str | None
    conditions: list[dict[str, Any]]
    trace: list[dict[str, Any]]
    waiting: dict[str, Any] | None
