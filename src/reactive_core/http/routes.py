"""The core's own routes: readiness, entities, the logs, deliveries, config, rules.

Listings are paged with `limit` (1 to 1000) and a cursor: the logs (`/api/changes`,
`/api/transitions`) and entities forward with `after` (`next_after` names the next page),
deliveries and runs newest first with `before` (`next_before`). Reads take `ReadAccess`,
writes `WriteAccess`; what could hold a secret (rule definitions, run traces, delivery
errors) has the credentials in its URLs and its secret-looking fields shown as `***`.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Connection, text

from .._entities.logs import read_changes, read_transitions
from .._host.configfile import apply_parsed, decode_config, parse_config
from ..automation.commands import describe_triggers, hold_row, run_row
from ..automation.errors import RuleError
from ..automation.loader import rule_from_definition
from ..automation.runs import Run, get_run, list_runs, load_errors
from . import problems
from .auth import ReadAccess, WriteAccess, host_of
from .schemas import (
    ApplyResult,
    ChangeOut,
    ChangesPage,
    DeliveriesPage,
    DeliveryOut,
    EntitiesPage,
    EntityItem,
    EntityOut,
    HoldRow,
    LoadErrorRow,
    Readiness,
    RuleRow,
    RulesOut,
    RunRow,
    RunsPage,
    RunTrace,
    TransitionOut,
    TransitionsPage,
)
from .sse import router as events_router

MAX_LIMIT = 1000
"""The largest page a listing returns."""
DEFAULT_LIMIT = 100

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="page size, 1 to 1000")]
Cursor = Annotated[int | None, Query(ge=0, description="a seq or id from a listing")]
Text = Annotated[str | None, Query(max_length=200)]

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml",
              "text/plain")

router = APIRouter()
router.include_router(events_router)


# -- redaction ------------------------------------------------------------------------

_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/?#@\s]+@")
_SECRET_KEY = re.compile(r"(?i)(authorization|password|passwd|secret|token|api[-_]?key|cookie)")
REDACTED = "***"


def redact(value: Any) -> Any:
    """`value` with credentials in URLs (`http://user:pass@host` → `http://***@host`)
    and the values of secret-looking keys (`Authorization`, `password`, `token`, …) as
    `***`, at any depth."""
    if isinstance(value, str):
        return _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", value)
    if isinstance(value, dict):
        return {k: (REDACTED if isinstance(k, str) and _SECRET_KEY.search(k)
                    and isinstance(v, (str, int, float)) and v != "" else redact(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


# -- readiness ------------------------------------------------------------------------

@router.get("/healthz", tags=["operations"], summary="Readiness", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "not ready"}})
async def healthz(request: Request) -> JSONResponse:
    """200 when the database answers and the host's workers run, else 503."""
    host = host_of(request)
    found: list[str] = []
    try:
        await host.read(lambda tx: tx.execute(text("SELECT 1")).scalar())
    except Exception as exc:  # noqa: BLE001 - reported as not ready
        found.append(f"database: {type(exc).__name__}: {exc}")
    if not host.running:
        found.append("workers: not running")
    body: dict[str, Any] = {"status": "ok" if not found else "unavailable",
                            "instance": host.instance_id, "problems": found}
    return JSONResponse(body, status_code=200 if not found else 503)


# -- entities -------------------------------------------------------------------------

@router.get("/api/entities/{kind}", tags=["entities"], summary="Entities of a kind")
async def list_entities(request: Request, kind: str, _access: ReadAccess,
                        limit: Limit = DEFAULT_LIMIT,
                        after: Annotated[str | None, Query(max_length=300)] = None,
                        ) -> EntitiesPage:
    """The entities of `kind` by id, `limit` at a time after the id `after`."""
    handle = host_of(request).entity(kind)

    def page(tx: Connection) -> tuple[list[tuple[str, Any]], bool]:
        ids = [i for i in handle.ids_in(tx) if after is None or i > after]
        chosen = ids[:limit]
        states = handle.get_many_in(tx, chosen)
        return [(i, states[i]) for i in chosen if i in states], len(ids) > limit

    rows, more = await host_of(request).read(page)
    return EntitiesPage(
        items=[EntityItem(id=i, state=s.model_dump(mode="json", by_alias=True))
               for i, s in rows],
        next_after=rows[-1][0] if more and rows else None)


@router.get("/api/entities/{kind}/{entity_id:path}", tags=["entities"], summary="One entity")
async def get_entity(request: Request, kind: str, entity_id: str,
                     _access: ReadAccess) -> EntityOut:
    """The current state of one entity; a 404 problem when it does not exist."""
    state = await host_of(request).entity(kind).get(entity_id)
    if state is None:
        raise HTTPException(404, f"no entity {entity_id!r} of kind {kind!r}: expected the id "
                            f"of one `/api/entities/{kind}` lists")
    return EntityOut(kind=kind, id=entity_id,
                     state=state.model_dump(mode="json", by_alias=True))


# -- the logs -------------------------------------------------------------------------

@router.get("/api/changes", tags=["logs"], summary="The change log")
async def list_changes(request: Request, _access: ReadAccess, kind: Text = None,
                       entity_id: Text = None, after: Cursor = None, before: Cursor = None,
                       limit: Limit = DEFAULT_LIMIT) -> ChangesPage:
    """Changes oldest first: with `after`, the `limit` that follow that seq; otherwise
    the newest `limit` (below `before`, when given)."""
    forward = after is not None and before is None

    def page(tx: Connection) -> tuple[list[Any], bool]:
        if forward:
            rows = read_changes(tx, kind=kind, entity_id=entity_id, after_seq=after or 0,
                                limit=limit + 1)
            return rows[:limit], len(rows) > limit
        rows = read_changes(tx, kind=kind, entity_id=entity_id, after_seq=after or 0,
                            before_seq=before, limit=limit, newest=True)
        more = bool(rows) and bool(read_changes(tx, kind=kind, entity_id=entity_id,
                                                after_seq=rows[-1].seq, limit=1))
        return rows, more

    rows, more = await host_of(request).read(page)
    return ChangesPage(items=[ChangeOut.of(c) for c in rows],
                       next_after=rows[-1].seq if more else None)


@router.get("/api/transitions", tags=["logs"], summary="The per-field transition log")
async def list_transitions(request: Request, _access: ReadAccess, kind: Text = None,
                           entity_id: Text = None, field: Text = None, after: Cursor = None,
                           before: Cursor = None, limit: Limit = DEFAULT_LIMIT,
                           ) -> TransitionsPage:
    """Transition rows by id: with `after`, the `limit` that follow that id; otherwise
    the newest `limit` (below `before`, when given)."""
    forward = after is not None and before is None

    def page(tx: Connection) -> tuple[list[Any], bool]:
        read = functools.partial(read_transitions, tx, kind=kind, entity_id=entity_id,
                                 field=field)
        if forward:
            rows = sorted(read(after_id=after, limit=limit + 1), key=lambda r: r.id)
            return rows[:limit], len(rows) > limit
        rows = sorted(read(before_id=before, limit=limit), key=lambda r: r.id)
        if after is not None:
            rows = [r for r in rows if r.id > after]
        more = bool(rows) and bool(read(after_id=rows[-1].id, limit=1))
        return rows, more

    rows, more = await host_of(request).read(page)
    return TransitionsPage(items=[TransitionOut.of(t) for t in rows],
                           next_after=rows[-1].id if more else None)


# -- deliveries -----------------------------------------------------------------------

@router.get("/api/deliveries", tags=["deliveries"], summary="Work-queue deliveries")
async def list_deliveries(request: Request, _access: ReadAccess, dead: bool = False,
                          status: Annotated[str | None, Query(
                              pattern="^(pending|done|dead)$")] = None,
                          group: Text = None, before: Cursor = None,
                          limit: Limit = DEFAULT_LIMIT) -> DeliveriesPage:
    """Deliveries newest first (`dead=true`: the dead letters), `limit` at a time below
    the id `before`."""
    rows = await host_of(request).deliveries(dead=dead, status=status, group=group,
                                             limit=limit + 1, before=before)
    shown = rows[:limit]
    return DeliveriesPage(
        items=[DeliveryOut.of(d, last_error=redact(d.last_error)) for d in shown],
        next_before=shown[-1].id if len(rows) > limit else None)


@router.post("/api/deliveries/{delivery_id}/replay", tags=["deliveries"],
             summary="Replay a dead letter")
async def replay_delivery(request: Request, delivery_id: int,
                          _access: WriteAccess) -> DeliveryOut:
    """Re-queue the dead-lettered delivery `delivery_id`; a 404 problem when no dead
    letter has that id."""
    row = await host_of(request).replay(delivery_id)
    return DeliveryOut.of(row, last_error=redact(row.last_error))


# -- config ---------------------------------------------------------------------------

class _DryRun(Exception):
    """Rolls a dry run's transaction back, carrying what it would have changed."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("dry run")
        self.lines = lines


@router.post("/api/apply", tags=["config"], summary="Apply a config document",
             response_model=ApplyResult,
             responses={422: {"description": "the document is not valid: the problem's "
                                             "detail names `<request>:LINE` of each fault"}},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/yaml": {"schema": {"type": "string"}},
                 "text/plain": {"schema": {"type": "string"}}}}})
async def apply_config(request: Request, _access: WriteAccess,
                       dry_run: bool = False) -> ApplyResult | Response:
    """Declare what the YAML body says (what `reactive apply -f` does), in one
    transaction; with `dry_run=true` nothing is stored and the answer lists what would
    change."""
    content_type = request.headers.get("content-type", "text/plain").split(";")[0]
    if content_type.strip().lower() not in YAML_TYPES:
        return problems.problem(
            415, "Unsupported media type", f"the body is {content_type!r}: expected a YAML "
            f"config document as {' or '.join(YAML_TYPES[:1] + YAML_TYPES[-1:])}",
            kind="unsupported-media-type")
    host = host_of(request)
    raw = await request.body()
    sections = list(host.registry.config_sections.values())
    max_bytes = host.config.config_max_bytes
    parsed = parse_config(decode_config(raw, source="<request>", max_bytes=max_bytes),
                          sections, source="<request>", max_bytes=max_bytes)
    if not dry_run:
        lines = await host.run(apply_parsed, host, parsed, sections)
        return ApplyResult(changes=lines, dry_run=False)

    def rehearse(tx: Connection) -> None:
        raise _DryRun(apply_parsed(tx, host, parsed, sections))

    try:
        await host.run(rehearse)
    except _DryRun as done:
        return ApplyResult(changes=done.lines, dry_run=True)
    raise AssertionError("unreachable")  # pragma: no cover


# -- automation -----------------------------------------------------------------------

def _automation(request: Request) -> None:
    if "automation" not in host_of(request).plugin_names:
        raise HTTPException(404, "the automation plugin is not loaded in this server: "
                            "expected it enabled to list rules and runs")


@router.get("/api/rules", tags=["automation"], summary="Rules, load errors, armed holds")
async def list_rules(request: Request, _access: ReadAccess) -> RulesOut:
    """The installed rules (definitions with credentials redacted), the errors of the
    last load and the armed `for:` holds with their deadlines."""
    from ..automation.engine import HOLD_TOPIC
    from ..automation.plugin import RULE_KIND

    _automation(request)
    host = host_of(request)
    records = await host.entity(RULE_KIND).all()
    errors = await host.read(load_errors)
    holds = await host.timers.list(HOLD_TOPIC, limit=MAX_LIMIT)
    rules = []
    for rule_id, record in sorted(records.items()):
        try:
            rule = rule_from_definition(record.definition, source=record.source,
                                        line=record.line)
            triggers, mode = describe_triggers(rule), rule.mode.value
        except RuleError as exc:  # shown as it is
            triggers, mode = f"(not loadable: {exc})", "-"
        rules.append(RuleRow(
            rule_id=rule_id, mode=mode, triggers=redact(triggers),
            source=(record.source or record.origin) + (f":{record.line}" if record.line
                                                       else ""),
            definition=redact(record.definition)))
    return RulesOut(
        rules=rules,
        load_errors=[LoadErrorRow(path=e["path"], line=e["line"], rule_id=e["rule_id"],
                                  message=redact(e["message"])) for e in errors],
        holds=[HoldRow.model_validate(hold_row(t)) for t in holds])


@router.get("/api/runs", tags=["automation"], summary="Runs of the rules")
async def list_rule_runs(request: Request, _access: ReadAccess, rule: Text = None,
                         before: Cursor = None, limit: Limit = DEFAULT_LIMIT) -> RunsPage:
    """Runs newest first (of one rule with `rule`), `limit` at a time below the run id
    `before`."""
    _automation(request)
    runs = await host_of(request).read(list_runs, rule_id=rule, limit=limit + 1,
                                       before=before)
    shown = runs[:limit]
    return RunsPage(items=[RunRow.model_validate(redact(run_row(r))) for r in shown],
                    next_before=shown[-1].id if len(runs) > limit else None)


@router.get("/api/runs/{run_id}", tags=["automation"], summary="One run with its trace")
async def get_rule_run(request: Request, run_id: int, _access: ReadAccess) -> RunTrace:
    """One run: its trigger payload, its conditions' results and every step."""
    _automation(request)
    run: Run | None = await host_of(request).read(get_run, run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id}: expected the id of a run `/api/runs` "
                            f"lists")
    return RunTrace.model_validate(redact({
        **run_row(run), "trigger": run.trigger, "conditions": run.conditions,
        "trace": run.trace, "waiting": run.waiting}))
