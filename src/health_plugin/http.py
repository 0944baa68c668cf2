"""The health plugin's routes in the HTTP API: each system's health and why, the checks.

Reads (`ReadAccess`): `GET /api/health` (every system with a status, and for one that
is not healthy the `reason`: the newest failing run of its worst check),
`GET /api/health/{system_id}` (each check's status, last run and last failure, and the
system's recent runs), `GET /api/checks`. Writes (`WriteAccess`, a token of scope
write): `POST /api/checks/{id}/pause`, `/resume` and `/run`.

No secret leaves through these routes: check configs pass through `redact` (header
values, password/token/secret/API-key fields, credentials and secret query parameters
in URLs become `"***"`), and so does every error text of a run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, bindparam, select

from reactive_core import Actor
from reactive_core.http import ReadAccess, WriteAccess, host_of

from . import queries as q
from .entity import check_state_in
from .evaluator import HealthStatus
from .models import CATALOG_KIND, HEALTH_KIND, CheckConfiguration, CheckRun
from .queries import as_utc, utcnow
from .schema import health_check_runs as _runs
from .service import HealthService

MAX_LIMIT = 1000
"""The largest page a listing returns."""

REDACTED = "***"
"""What a secret is replaced with."""

HTTP_ACTOR_TYPE = "http"
"""Actor type of changes made through the API (the actor id is the token's name)."""

_SENSITIVE_KEY = re.compile(
    r"pass(?:word|wd|phrase)?|secret|token|authori[sz]ation|api[-_]?key|access[-_]?key|"
    r"private[-_]?key|credential|cookie", re.IGNORECASE)
_URL_USERINFO = re.compile(r"\b([a-z][a-z0-9+.\-]*://)[^/?#\s@]*@", re.IGNORECASE)
_SECRET_PARAMETER = re.compile(
    r"([?&][^=&#\s]*(?:token|secret|pass|key|auth|signature|sig)[^=&#\s]*=)[^&#\s]*",
    re.IGNORECASE)


def redact_text(text: str) -> str:
    """`text` with URL credentials (`http://***@host/`) and secret query parameters
    (`?token=***`) hidden."""
    return _SECRET_PARAMETER.sub(rf"\1{REDACTED}", _URL_USERINFO.sub(rf"\1{REDACTED}@", text))


def redact(value: Any) -> Any:
    """A copy of a check config (any JSON value) that is safe to show.

    Every value of a `headers` mapping, every field whose name says password, token,
    secret, authorization, API key, access key, private key, credential or cookie, and
    the credentials and secret query parameters of every URL in a string become `"***"`.
    """
    if isinstance(value, Mapping):
        shown: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key)
            if name.lower() == "headers" and isinstance(item, Mapping):
                shown[name] = {str(header): REDACTED for header in item}
            elif _SENSITIVE_KEY.search(name) and item is not None and not isinstance(item, bool):
                shown[name] = REDACTED
            else:
                shown[name] = redact(item)
        return shown
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


# -- response models -------------------------------------------------------------------

class RunOut(BaseModel):
    """One recorded run of a check: when, how it went and, for a failure, why."""

    model_config = ConfigDict(frozen=True)

    check_id: str
    status: HealthStatus
    at: datetime
    latency_ms: float | None
    status_code: int | None
    error: str | None


class HealthItem(BaseModel):
    """A system's health; `reason` (null when healthy) is the newest failing run of its
    worst check."""

    model_config = ConfigDict(frozen=True)

    system_id: str
    name: str | None
    status: HealthStatus
    since: datetime | None
    healthy_checks: int
    total_checks: int
    reason: RunOut | None


class HealthPage(BaseModel):
    """A page of systems' health, by id; `next_after` is the next page's cursor."""

    model_config = ConfigDict(frozen=True)

    items: list[HealthItem]
    next_after: str | None


class CheckHealthOut(BaseModel):
    """One check of a system: its evaluated status (null before any run), whether it
    counts (`enabled` and not `paused`), its last run and its last failing run."""

    model_config = ConfigDict(frozen=True)

    check_id: str
    name: str
    status: HealthStatus | None
    since: datetime | None
    enabled: bool
    paused: bool
    last_run: RunOut | None
    last_failure: RunOut | None


class SystemHealthOut(BaseModel):
    """One system's health, its checks and its recent runs (newest first)."""

    model_config = ConfigDict(frozen=True)

    system_id: str
    name: str | None
    status: HealthStatus | None
    since: datetime | None
    healthy_checks: int
    total_checks: int
    reason: RunOut | None
    checks: list[CheckHealthOut]
    runs: list[RunOut]


class CheckOut(BaseModel):
    """A check configuration; `config` with every secret replaced by `"***"`."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    strategy: str
    interval_seconds: float
    paused: bool
    config: dict[str, Any]


class ChecksPage(BaseModel):
    """A page of checks, by id; `next_after` is the next page's cursor."""

    model_config = ConfigDict(frozen=True)

    items: list[CheckOut]
    next_after: str | None


class CheckActionOut(CheckOut):
    """A check after pause or resume; `changed` false when it already was so."""

    changed: bool


class CheckRunOut(RunOut):
    """The outcome of running a check now (recorded for each system it counts for)."""


class ActionIn(BaseModel):
    """Optional body of a check action: why (kept in the change log)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str | None = Field(default=None, min_length=1, max_length=500)


# -- reading ---------------------------------------------------------------------------

_LAST_FAILURE = (
    select(_runs)
    .where(_runs.c.system_id == bindparam("s"), _runs.c.configuration_id == bindparam("c"),
           _runs.c.status != HealthStatus.HEALTHY.value)
    .order_by(_runs.c.timestamp.desc(), _runs.c.id.desc())
    .limit(1)
)


def run_out(run: CheckRun) -> RunOut:
    """A run as the API shows it (its error text redacted)."""
    code = run.result.get("status_code")
    error = run.result.get("error")
    return RunOut(check_id=run.configuration_id, status=run.status, at=run.timestamp,
                  latency_ms=run.latency_ms,
                  status_code=code if isinstance(code, int) else None,
                  error=None if error is None else redact_text(str(error)))


def _run_from_row(row: Any) -> CheckRun:
    return CheckRun(id=int(row.id), system_id=row.system_id,
                    configuration_id=row.configuration_id, status=HealthStatus(row.status),
                    latency_ms=row.latency_ms, result=row.result or {},
                    timestamp=as_utc(row.timestamp))


@dataclass(frozen=True, slots=True, kw_only=True)
class _Pair:
    """One check of one system, as read for the API."""

    check: CheckConfiguration
    enabled: bool
    status: HealthStatus | None
    since: datetime | None
    last_run: CheckRun | None
    last_failure: CheckRun | None

    @property
    def counts(self) -> bool:
        return self.enabled and not self.check.paused


def _pairs_in(tx: Connection, system_id: str) -> list[_Pair]:
    """Every check associated with `system_id`, by check id."""
    pairs = []
    for association in q.associations_in(tx, system_id=system_id):
        row = tx.execute(q.CONFIG, {"id": association.configuration_id}).first()
        if row is None:
            continue
        state = check_state_in(tx, system_id, association.configuration_id)
        last = q.runs_in(tx, system_id, association.configuration_id, limit=1)
        failed = tx.execute(_LAST_FAILURE, {"s": system_id,
                                            "c": association.configuration_id}).first()
        pairs.append(_Pair(
            check=q.check_from_row(row), enabled=association.enabled,
            status=None if state is None else state.status,
            since=None if state is None else state.since,
            last_run=last[0] if last else None,
            last_failure=None if failed is None else _run_from_row(failed)))
    return pairs


def _reason(pairs: Sequence[_Pair]) -> CheckRun | None:
    """The newest failing run of the worst check that counts and is not healthy."""
    failing = [p for p in pairs if p.counts and p.status not in (None, HealthStatus.HEALTHY)
               and p.last_failure is not None]
    if not failing:
        return None
    worst = max(failing, key=lambda p: (p.status.severity if p.status else 0,
                                        p.last_failure.timestamp if p.last_failure else None))
    return worst.last_failure


def _reasons_in(tx: Connection, system_ids: Sequence[str]) -> dict[str, CheckRun | None]:
    return {system_id: _reason(_pairs_in(tx, system_id)) for system_id in system_ids}


def check_out(check: CheckConfiguration) -> CheckOut:
    """A check as the API shows it (config redacted)."""
    return CheckOut(id=check.id, name=check.name, strategy=check.strategy,
                    interval_seconds=check.interval_seconds, paused=check.paused,
                    config=redact(check.config))


def _actor_reason(token_name: str, body: ActionIn | None, check_id: str,
                  done: str) -> tuple[Actor, str]:
    """Who acts (the token, by name) and why (the body's reason, or a default)."""
    reason = body.reason if body is not None and body.reason else (
        f"check {check_id} {done} over HTTP by token {token_name}")
    return Actor(HTTP_ACTOR_TYPE, token_name), reason


# -- routes ----------------------------------------------------------------------------

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
After = Annotated[str | None, Query(description="the last id of the previous page")]
OptionalAction = Annotated[ActionIn | None, Body()]


def routes(service: HealthService) -> list[APIRouter]:
    """`/api/health…` and `/api/checks…` over `service`."""
    health = APIRouter(prefix="/api/health", tags=["health"])
    checks = APIRouter(prefix="/api/checks", tags=["health"])

    @health.get("", summary="Every system's health", response_model=HealthPage)
    async def list_health(request: Request, _access: ReadAccess, limit: Limit = 100,
                          after: After = None) -> HealthPage:
        """Each system with a health status, by id; why a system is not healthy."""
        rows = [r for r in await service.system_statuses()
                if after is None or r.system_id > after]
        page, more = rows[:limit], len(rows) > limit
        failing = [r.system_id for r in page if r.status != HealthStatus.HEALTHY.value]
        reasons = await host_of(request).read(_reasons_in, failing) if failing else {}
        items = []
        for row in page:
            reason = reasons.get(row.system_id)
            items.append(HealthItem(
                system_id=row.system_id, name=row.name, status=HealthStatus(row.status),
                since=row.since, healthy_checks=row.healthy_checks,
                total_checks=row.total_checks,
                reason=None if reason is None else run_out(reason)))
        return HealthPage(items=items, next_after=page[-1].system_id if more and page else None)

    @health.get("/{system_id}", summary="One system's health", response_model=SystemHealthOut)
    async def get_health(request: Request, system_id: str, _access: ReadAccess,
                         limit: Limit = 100) -> SystemHealthOut:
        """The system's status, each of its checks and its newest `limit` runs."""
        host = host_of(request)
        state = await service.status(system_id)

        def read(tx: Connection) -> tuple[list[_Pair], list[CheckRun]]:
            return _pairs_in(tx, system_id), q.runs_in(tx, system_id, limit=limit)

        pairs, runs = await host.read(read)
        if state is None and not pairs:
            raise HTTPException(404, f"system {system_id!r} has no health: expected the id "
                                     "of a system with a check (GET /api/health)")
        system = (await host.entity(CATALOG_KIND).get(system_id)
                  if CATALOG_KIND in host.registry.kinds else None)
        since = (None if state is None
                 else await host.entity(HEALTH_KIND).in_state_since(system_id, "status"))
        reason = _reason(pairs)
        return SystemHealthOut(
            system_id=system_id, name=getattr(system, "name", None),
            status=None if state is None else state.status, since=since,
            healthy_checks=0 if state is None else state.healthy_checks,
            total_checks=0 if state is None else state.total_checks,
            reason=None if reason is None else run_out(reason),
            checks=[CheckHealthOut(
                check_id=p.check.id, name=p.check.name, status=p.status, since=p.since,
                enabled=p.enabled, paused=p.check.paused,
                last_run=None if p.last_run is None else run_out(p.last_run),
                last_failure=None if p.last_failure is None else run_out(p.last_failure))
                for p in pairs],
            runs=[run_out(run) for run in runs])

    @checks.get("", summary="Checks", response_model=ChecksPage)
    async def list_checks(_access: ReadAccess, limit: Limit = 100,
                          after: After = None) -> ChecksPage:
        """Every check by id, its config with secrets redacted."""
        found = [c for c in await service.checks() if after is None or c.id > after]
        page, more = found[:limit], len(found) > limit
        return ChecksPage(items=[check_out(c) for c in page],
                          next_after=page[-1].id if more and page else None)

    async def set_paused(check_id: str, token_name: str, body: ActionIn | None,
                         paused: bool) -> CheckActionOut:
        actor, reason = _actor_reason(token_name, body, check_id,
                                      "paused" if paused else "resumed")
        if paused:
            changed = await service.pause_check(check_id, actor=actor, reason=reason)
        else:
            changed = await service.resume_check(check_id, actor=actor, reason=reason)
        check = await service.get_check(check_id)
        if check is None:  # deleted meanwhile
            raise HTTPException(404, f"unknown check {check_id!r}: expected the id of a check "
                                     "(GET /api/checks)")
        return CheckActionOut(**check_out(check).model_dump(), changed=changed)

    @checks.post("/{check_id}/pause", summary="Pause a check", response_model=CheckActionOut)
    async def pause(check_id: str, access: WriteAccess,
                    body: OptionalAction = None) -> CheckActionOut:
        """Stop running the check and counting it towards its systems' health."""
        return await set_paused(check_id, access.name, body, True)

    @checks.post("/{check_id}/resume", summary="Resume a check",
                 response_model=CheckActionOut)
    async def resume(check_id: str, access: WriteAccess,
                     body: OptionalAction = None) -> CheckActionOut:
        """Run and count the check again."""
        return await set_paused(check_id, access.name, body, False)

    @checks.post("/{check_id}/run", summary="Run a check now", response_model=CheckRunOut)
    async def run_now(check_id: str, access: WriteAccess) -> CheckRunOut:
        """Run the check once, now, and record the run for the systems it counts for."""
        started = utcnow()
        outcome = await service.run_check(check_id, actor=Actor(HTTP_ACTOR_TYPE, access.name))
        code = outcome.result.get("status_code")
        error = outcome.result.get("error")
        return CheckRunOut(check_id=check_id, status=outcome.status, at=started,
                           latency_ms=outcome.latency_ms,
                           status_code=code if isinstance(code, int) else None,
                           error=None if error is None else redact_text(str(error)))

    return [health, checks]
