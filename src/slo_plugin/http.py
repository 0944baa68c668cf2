"""The SLO plugin's routes in the HTTP API: objectives, their budgets and burn-down.

`GET /api/objectives` lists objectives by id with their status now (camelCase keys, the
spelling of the automation contract: `budgetRemainingPercent`, `burnRate`, ...);
`GET /api/objectives/{id}` adds the downtime events (newest first), the daily snapshots
of the window, the streak and the system's achievements;
`GET /api/objectives/{id}/burndown.svg` draws the budget over the window (`burndown`).
An unknown id is a 404 problem naming it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from sqlalchemy import Connection

from reactive_core.http import ReadAccess, host_of

from . import store
from .burndown import BudgetPoint, budget_points, render_svg
from .models import AttributionMinutes, Objective, SloStatus
from .reads import EventView, ObjectiveView
from .service import SloService, UnknownObjective

MAX_LIMIT = 1000
"""The largest page a listing returns."""


class StatusOut(BaseModel):
    """An objective's error budget now; camelCase keys in JSON. `attribution` splits the
    downtime minutes between the system itself and each upstream."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True,
                              serialize_by_alias=True)

    budget_remaining_percent: float
    budget_remaining_minutes: float
    budget_allowed_minutes: float
    budget_consumed_minutes: float
    burn_rate: float | None
    availability: float
    strict_availability: float
    burn_alert: str
    is_breaching: bool
    has_open_downtime: bool
    attribution: AttributionMinutes


class ObjectiveOut(BaseModel):
    """An objective with its status now."""

    model_config = ConfigDict(frozen=True)

    id: str
    system_id: str
    system_name: str | None
    health_check_configuration_id: str | None
    target: float
    window_days: int
    dependency_exclusion: str
    excluded_dependency_ids: list[str]
    exclude_maintenance: bool
    status: StatusOut


class ObjectivesPage(BaseModel):
    """A page of objectives, by id; `next_after` is the next page's cursor."""

    model_config = ConfigDict(frozen=True)

    items: list[ObjectiveOut]
    next_after: str | None


class EventOut(BaseModel):
    """A downtime event; an open one (`end` null) has lasted `duration_seconds` so far."""

    model_config = ConfigDict(frozen=True)

    id: int
    start: datetime
    end: datetime | None
    open: bool
    attribution: str
    upstream_system_id: str | None
    upstream_system_name: str | None
    duration_seconds: float


class SnapshotOut(BaseModel):
    """The objective's status at the end of one day."""

    model_config = ConfigDict(frozen=True)

    date: date
    availability: float
    budget_remaining_percent: float
    consumed_minutes: float
    is_breaching: bool
    streak_days: int


class StreakOut(BaseModel):
    """Days in a row without breaching or open downtime: now, and the best so far."""

    model_config = ConfigDict(frozen=True)

    current: int
    best: int
    best_end: date | None


class AchievementOut(BaseModel):
    """An achievement the objective's system unlocked."""

    model_config = ConfigDict(frozen=True)

    achievement: str
    unlocked_at: datetime


class ObjectiveDetailOut(ObjectiveOut):
    """An objective with its status, events, snapshots, streak and achievements."""

    events: list[EventOut]
    snapshots: list[SnapshotOut]
    streak: StreakOut
    achievements: list[AchievementOut]


def status_out(status: SloStatus) -> StatusOut:
    """An objective's status as the API shows it."""
    return StatusOut(
        budget_remaining_percent=status.error_budget_remaining_percent,
        budget_remaining_minutes=status.error_budget_remaining_minutes,
        budget_allowed_minutes=status.error_budget_allowed_minutes,
        budget_consumed_minutes=status.error_budget_consumed_minutes,
        burn_rate=status.burn_rate, availability=status.current_availability,
        strict_availability=status.strict_availability, burn_alert=status.burn_alert.value,
        is_breaching=status.is_breaching, has_open_downtime=status.has_open_downtime,
        attribution=status.attribution)


def objective_out(view: ObjectiveView) -> ObjectiveOut:
    """An objective with its status as the API shows it."""
    objective = view.objective
    return ObjectiveOut(
        id=objective.id, system_id=objective.system_id, system_name=view.system_name,
        health_check_configuration_id=objective.health_check_configuration_id,
        target=objective.target, window_days=objective.window_days,
        dependency_exclusion=objective.dependency_exclusion.value,
        excluded_dependency_ids=list(objective.excluded_dependency_ids),
        exclude_maintenance=objective.exclude_maintenance, status=status_out(view.status))


def event_out(event: EventView, now: datetime) -> EventOut:
    """A downtime event; an open one's duration counts up to `now`."""
    duration = event.duration_seconds
    if duration is None:
        duration = max((now - event.start).total_seconds(), 0.0)
    return EventOut(id=event.id, start=event.start, end=event.end, open=event.end is None,
                    attribution=event.attribution, upstream_system_id=event.upstream_system_id,
                    upstream_system_name=event.upstream_system_name, duration_seconds=duration)


def _unknown(objective_id: str) -> UnknownObjective:
    return UnknownObjective(f"unknown objective {objective_id!r}: expected the id of an "
                            "objective (GET /api/objectives)")


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


def routes(service: SloService) -> list[APIRouter]:
    """`/api/objectives…` over `service`."""
    router = APIRouter(prefix="/api/objectives", tags=["slo"])
    shown: dict[int, tuple[ObjectiveView, ObjectiveOut]] = {}

    def out_of(view: ObjectiveView) -> ObjectiveOut:
        """`objective_out`, built once per view: the service hands out the same view
        objects while its cache holds them, so a list read again costs no rebuilding."""
        hit = shown.get(id(view))
        if hit is not None and hit[0] is view:
            return hit[1]
        if len(shown) > 20_000:
            shown.clear()
        out = shown[id(view)] = (view, objective_out(view))
        return out[1]

    @router.get("", summary="Objectives", response_model=ObjectivesPage)
    async def list_objectives(
        _access: ReadAccess, limit: Limit = 100,
        after: Annotated[str | None, Query(description="the last id of the previous page")]
        = None,
    ) -> ObjectivesPage:
        """Every objective by id, with its error budget now."""
        views = [v for v in await service.objectives() if after is None or v.objective.id > after]
        page, more = views[:limit], len(views) > limit
        return ObjectivesPage(items=[out_of(v) for v in page],
                              next_after=page[-1].objective.id if more and page else None)

    @router.get("/{objective_id}", summary="One objective", response_model=ObjectiveDetailOut)
    async def get_objective(request: Request, objective_id: str, _access: ReadAccess,
                            limit: Limit = 100) -> ObjectiveDetailOut:
        """The objective, its newest `limit` downtime events, the snapshots of its window,
        its streak and its system's achievements."""
        view = await service.objective(objective_id)
        if view is None:
            raise _unknown(objective_id)
        now = host_of(request).clock()
        first_day = (now - timedelta(days=view.objective.window_days)).date()
        events = await service.events(objective_id, limit=limit)
        snapshots = await service.snapshots(objective_id, start=first_day)
        achievements = await service.achievements(view.objective.system_id)
        return ObjectiveDetailOut(
            **objective_out(view).model_dump(),
            events=[event_out(e, now) for e in events],
            snapshots=[SnapshotOut(
                date=s.date, availability=s.availability,
                budget_remaining_percent=s.budget_remaining_percent,
                consumed_minutes=s.consumed_minutes, is_breaching=s.is_breaching,
                streak_days=s.streak_days) for s in snapshots],
            streak=StreakOut(current=view.current_streak, best=view.best_streak,
                             best_end=view.best_streak_end),
            achievements=[AchievementOut(achievement=a.achievement, unlocked_at=a.unlocked_at)
                          for a in achievements])

    @router.get("/{objective_id}/burndown.svg", summary="Burn-down chart",
                response_class=Response,
                responses={200: {"content": {"image/svg+xml": {}},
                                 "description": "the budget remaining over the window"}})
    async def burndown(request: Request, objective_id: str, _access: ReadAccess) -> Response:
        """The error budget remaining over the objective's window, as an SVG image."""
        host = host_of(request)
        now = host.clock()

        def read(tx: Connection) -> tuple[Objective, list[BudgetPoint], str | None]:
            objective = store.objective_in(tx, objective_id)
            if objective is None:
                raise _unknown(objective_id)
            since = now - timedelta(days=objective.window_days)
            events = store.window_events_in(tx, [objective.id], since)[objective.id]
            maintenance = (store.maintenance_in(tx, [objective.system_id], since)
                           [objective.system_id] if objective.exclude_maintenance else [])
            down = service.surroundings.objective_in(tx, objective).down
            points = budget_points(objective, events, now=now, currently_down=down,
                                   maintenance=maintenance)
            return objective, points, service.surroundings.name_in(tx, objective.system_id)

        objective, points, name = await host.read(read)
        svg = render_svg(objective, points, now=now, system_name=name)
        return Response(svg, media_type="image/svg+xml",
                        headers={"Cache-Control": "no-cache"})

    return [router]
