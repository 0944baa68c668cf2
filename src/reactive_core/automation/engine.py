"""The engine: rules in memory with their wake index, occurrences routed through the
`automation` work-queue group (once per cluster), numeric-state holds and time triggers
on durable timers, runs started per the rule's mode."""

from __future__ import annotations

import logging
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, select

from .._delivery.policy import WorkQueue
from .._entities.changes import EntityChange
from .._store.schema import timers as timer_table
from .._timers.timers import Timer
from .errors import RuleError
from .executor import STEP_TOPIC, Executor
from .index import RuleIndex, condition_refs, rule_refs, wait_refs
from .model import (
    ANY_ID,
    EntityTrigger,
    IntervalTrigger,
    Mode,
    NumericStateTrigger,
    PluginAction,
    Ref,
    Rule,
    TimeTrigger,
    Trigger,
)
from .numeric import numeric_state_matches
from .runs import (
    Run,
    RunStatus,
    active_runs,
    cancel_runs,
    find_run,
    forget_rule_state,
    get_run,
    insert_run,
    jsonable,
    start_status,
    trim_runs,
    waiting_on,
    window_passes,
)
from .scope import Scope

if TYPE_CHECKING:
    from .._host.host import Host

logger = logging.getLogger("reactive_core.automation")

GROUP = "automation"
"""The work-queue group every trigger occurrence is routed through."""
HOLD_TOPIC = "automation.hold"
TICK_TOPIC = "automation.tick"


class AutomationSettings(BaseModel):
    """Per-host settings: `Host(config={"plugins": {"automation": {...}}})`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rules_dir: str | None = None
    """A folder of rule files to load (and watch); `reactive serve --rules DIR`."""
    watch_seconds: float = Field(default=2.0, gt=0, le=3600)
    """How often the folder is checked for changed files."""
    keep_runs: int = Field(default=100, ge=1, le=100_000)
    """Finished runs kept per rule."""
    lease_seconds: float = Field(default=60.0, gt=0)
    max_backoff_seconds: float = Field(default=60.0, ge=0)


def partition_default(payload: Mapping[str, Any], fallback: str) -> str:
    """The trigger's context key: the system for health and SLO triggers, else the
    entity."""
    for key in ("systemId", "system_id"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value
    return fallback


class Engine:
    """One per host: rules, wake index, occurrences, holds and runs."""

    def __init__(self, host: Host, settings: AutomationSettings) -> None:
        self.host = host
        self.settings = settings
        self.rules: dict[str, Rule] = {}
        self._index = RuleIndex()
        self._stale = False
        self._refs: dict[str, frozenset[Ref]] = {}
        self._routes: dict[str, Callable[[], None]] = {}
        self.executor = Executor(self)
        self.installed = False
        """Set once the stored rules are installed: until then handlers wait, so a timer
        or a delivery arriving at start-up is never judged against no rules."""

    async def until_installed(self) -> None:
        while not self.installed:
            await anyio.sleep(0.01)

    # -- rules ------------------------------------------------------------------------

    def refs_of(self, rule: Rule) -> frozenset[Ref]:
        refs = self._refs.get(rule.id)
        if refs is None or self.rules.get(rule.id) is not rule:
            refs = frozenset(rule_refs(rule) | wait_refs(rule))
            self._refs[rule.id] = refs
        return refs

    def check_rule(self, rule: Rule) -> None:
        """Refuse a rule naming a kind no loaded plugin defines or an action none
        offers (what only a host knows)."""
        self._check_kinds(rule)
        self._check_actions(rule)

    def _check_kinds(self, rule: Rule) -> None:
        kinds = self.host.registry.kinds

        def refuse(kind: str, line: int | None, where: tuple[str | int, ...]) -> None:
            if kind != ANY_ID and kind not in kinds:
                raise RuleError(f"unknown entity kind {kind!r}: expected one of the kinds "
                                f"the loaded plugins define ({', '.join(sorted(kinds))})",
                                path=rule.source, line=line, rule_id=rule.id, where=where)

        for trigger in rule.triggers:
            what = trigger.what
            if isinstance(what, EntityTrigger):
                refuse(what.kind, trigger.line, ("triggers", trigger.index))
            elif isinstance(what, NumericStateTrigger):
                refuse(what.path.kind, trigger.line, ("triggers", trigger.index))
        for index, condition in enumerate(rule.conditions):
            for kind, _ in condition_refs([condition]):
                refuse(kind, getattr(condition, "line", None), ("conditions", index))

    def _check_actions(self, rule: Rule) -> None:
        """Refuse a rule naming an action no loaded plugin offers."""
        offered = self.host.registry.actions

        def walk(actions: Iterable[Any], where: tuple[str | int, ...]) -> None:
            for index, action in enumerate(actions):
                if isinstance(action, PluginAction) and action.name not in offered:
                    raise RuleError(
                        f"unknown action {action.name!r}: expected log, webhook, delay, "
                        f"wait_until, choose, stop or one plugins offer "
                        f"({', '.join(sorted(offered)) or 'none loaded'})",
                        path=rule.source, line=action.line, rule_id=rule.id,
                        where=(*where, index, action.name))
                for n, option in enumerate(getattr(action, "options", ())):
                    walk(option.actions, (*where, index, "choose", n, "actions"))
                walk(getattr(action, "default", ()), (*where, index, "default"))

        walk(rule.actions, ("actions",))

    @property
    def index(self) -> RuleIndex:
        """The wake index of the installed rules (rebuilt once after changes)."""
        if self._stale:
            self._stale = False
            self._index = RuleIndex.build(self.rules)
            self._route()
        return self._index

    def install(self, rules: Mapping[str, Rule]) -> None:
        """Make `rules` the ones this host runs: rebuild the index and the routes."""
        self.rules = dict(rules)
        self.installed = True
        self._refs.clear()
        self._stale = True
        _ = self.index

    def replace(self, rule_id: str, rule: Rule | None) -> None:
        """Install, change or (None) drop one rule; the index follows on next use."""
        if rule is None:
            self.rules.pop(rule_id, None)
        else:
            self.rules[rule_id] = rule
        self._refs.pop(rule_id, None)
        self._stale = True

    def _route(self) -> None:
        """Subscribe the work-queue group to exactly the kinds the rules read."""
        registry = self.host.registry
        wanted = self._index.kinds(registry.deriver_kinds, registry.kinds)
        for kind in list(self._routes):
            if kind not in wanted:
                self._routes.pop(kind)()
        for kind in sorted(wanted - set(self._routes)):
            self._routes[kind] = registry.on_entity_changed(
                kind, self.on_change, delivery=WorkQueue(GROUP))

    # -- occurrences --------------------------------------------------------------------

    async def on_change(self, change: EntityChange) -> None:
        """A change of a kind some rule reads (work queue `automation`, once per cluster)."""
        await self.until_installed()
        payload: dict[str, Any] | None = None
        work: list[tuple[Rule, Trigger, dict[str, Any], str]] = []
        for rule, trigger in self.index.entity_matches(change):
            what = trigger.what
            if isinstance(what, EntityTrigger):
                if what.field is not None and what.field not in change.changed_fields:
                    continue
                payload = payload or self.host.trigger_payload(change)
                work.append((rule, trigger, self._context(payload, change, "entity"),
                             f"{change.change_id}:{trigger.name}"))
            elif isinstance(what, NumericStateTrigger):
                payload = payload or self.host.trigger_payload(change)
                await self._numeric(rule, trigger, what, change, payload)
        if self.index.by_event:
            events = self.host.derive_triggers(change)
            for rule, trigger, event in self.index.event_matches(events):
                payload = payload or self.host.trigger_payload(change)
                context = {**self._context(payload, change, "event"), "event": event}
                work.append((rule, trigger, context, f"{change.change_id}:{trigger.name}"))
        for rule, trigger, context, occurrence in work:
            fallback = str(context.get("entity_id") or "")
            await self.occur(rule, trigger, context, occurrence,
                             partition_default(context, fallback))
        if self.index.waits_on(change.kind):
            await self._wake_waiting(change)

    @staticmethod
    def _context(payload: Mapping[str, Any], change: EntityChange,
                 platform: str) -> dict[str, Any]:
        return {"id": change.id, **payload, "platform": platform, "kind": change.kind,
                "entity_id": change.id, "change_id": str(change.change_id),
                "seq": change.seq, "occurred_at": change.occurred_at.isoformat()}

    async def occur(self, rule: Rule, trigger: Trigger, context: dict[str, Any],
                    occurrence: str, partition: str) -> int | None:
        """One occurrence of a rule's trigger: filter, window, conditions, mode; then
        drive the new run here. Returns the run id (None when nothing was recorded)."""
        started = await self.host.run(self._occur_in, rule, trigger, context, occurrence,
                                      partition)
        if started is None:
            return None
        run_id, run = started
        if run is not None:
            await self.executor.drive(run_id, claimed=run if run.owner else None)
        return run_id

    def _occur_in(self, tx: Connection, rule: Rule, trigger: Trigger, context: dict[str, Any],
                  occurrence: str, partition: str) -> tuple[int, Run | None] | None:
        """The run the occurrence makes (with the run itself when it is to be driven
        now), or None when the filter or the window let nothing through."""
        host = self.host
        existing = find_run(tx, rule.id, occurrence)
        if existing is not None:  # redelivered: go on with the run it made (claimed anew)
            if existing.status in (RunStatus.RUNNING, RunStatus.WAITING):
                return existing.id, replace(existing, owner=None)
            return existing.id, None
        now = host.clock()
        scope = Scope(host, tx, trigger=context, refs=self.refs_of(rule), now=now)
        if trigger.filter is not None and not trigger.filter.truthy(scope.variables):
            return None
        host.lock_in(tx, "automation", rule.id)
        if trigger.window is not None:
            window = trigger.window
            if window.partition_by is not None:
                partition = window.partition_by.render(scope.variables) or partition
            passes, _count = window_passes(tx, rule.id, trigger.index, partition[:255],
                                           window, now)
            if not passes:
                return None
        held, results = scope.check_all(rule.conditions)
        if not held:
            run_id = insert_run(tx, rule=rule, occurrence=occurrence, status=RunStatus.NOT_MET,
                                trigger=context, conditions=results, now=now)
            trim_runs(tx, rule.id, self.settings.keep_runs)
            return run_id, None
        active = active_runs(tx, rule.id)
        if rule.mode is Mode.RESTART and active:
            for run_id in cancel_runs(tx, [r.id for r in active], now,
                                      "cancelled: restarted by a newer occurrence"):
                host.timers.cancel_in(tx, STEP_TOPIC, str(run_id))
            active = []
        status, reason = start_status(rule, active)
        running = status is RunStatus.RUNNING
        run_id = insert_run(tx, rule=rule, occurrence=occurrence, status=status,
                            trigger=context, conditions=results, now=now, error=reason,
                            owner=host.instance_id if running else None,
                            lease=self.settings.lease_seconds)
        # No timer for a run that starts now: the occurrence it comes from (a delivery,
        # a timer) is retried if this instance dies before the run ends or suspends, and
        # the retry finds the run by its occurrence and drives it on.
        if status is RunStatus.SKIPPED:
            trim_runs(tx, rule.id, self.settings.keep_runs)
        return run_id, get_run(tx, run_id) if running else None

    # -- numeric-state triggers and holds ------------------------------------------------

    async def _numeric(self, rule: Rule, trigger: Trigger, what: NumericStateTrigger,
                       change: EntityChange, payload: dict[str, Any]) -> None:
        field = what.path.field
        before = (change.prev or {}).get(field)
        after = (change.next or {}).get(field)
        was = numeric_state_matches(before, above=what.above, below=what.below)
        now_in = numeric_state_matches(after, above=what.above, below=what.below)
        key = f"{rule.id}|{trigger.index}|{change.id}"
        context = {**self._context(payload, change, "numeric_state"),
                   "value": after, "from_value": before}
        if was == now_in:
            return
        if not now_in:
            await self.host.timers.cancel(HOLD_TOPIC, key)
            return
        if what.hold:
            await self.host.timers.schedule(
                HOLD_TOPIC, key, after=what.hold,
                payload={"rule": rule.id, "digest": rule.digest, "trigger": trigger.index,
                         "kind": change.kind, "entity_id": change.id,
                         "armed_at": self.host.clock().isoformat(),
                         "refs": [f"{change.kind}:{change.id}"],
                         "context": jsonable(context)})
            return
        await self.occur(rule, trigger, context, f"{change.change_id}:{trigger.name}",
                         partition_default(context, change.id))

    async def on_hold(self, timer: Timer) -> None:
        """A hold's deadline: fire if the value is still in the band (re-read now)."""
        await self.until_installed()
        data = timer.payload or {}
        rule = self.rules.get(data.get("rule", ""))
        if rule is None or rule.digest != data.get("digest") or not rule.enabled:
            return
        trigger = rule.triggers[int(data["trigger"])]
        what = trigger.what
        if not isinstance(what, NumericStateTrigger):
            return
        kind, entity_id = data["kind"], data["entity_id"]

        def current(tx: Connection) -> Any:
            return Scope(self.host, tx, trigger={}).field(kind, entity_id, what.path.field)

        value = await self.host.read(current)
        if not numeric_state_matches(value, above=what.above, below=what.below):
            return
        context = {**data.get("context", {}), "value": value, "platform": "numeric_state",
                   "for_seconds": what.hold}
        await self.occur(rule, trigger, context, f"hold:{timer.key}:{data.get('armed_at')}",
                         partition_default(context, entity_id))

    # -- time triggers --------------------------------------------------------------------

    def arm_ticks_in(self, tx: Connection, rule: Rule) -> None:
        """Arm (or keep) the timers of the rule's time and interval triggers (a disabled
        rule's are cancelled)."""
        for trigger in rule.triggers:
            what = trigger.what
            key = f"{rule.id}|{trigger.index}"
            payload = {"rule": rule.id, "digest": rule.digest, "trigger": trigger.index}
            if not rule.enabled:
                self.host.timers.cancel_in(tx, TICK_TOPIC, key)
                continue
            existing = self.host.timers.get_in(tx, TICK_TOPIC, key)
            if existing is not None and existing.payload == payload:
                continue
            if isinstance(what, IntervalTrigger):
                self.host.timers.schedule_in(tx, TICK_TOPIC, key, every=what.seconds,
                                             payload=payload)
            elif isinstance(what, TimeTrigger):
                self.host.timers.schedule_in(tx, TICK_TOPIC, key,
                                             at=next_time(what, self.host.clock()),
                                             payload=payload)

    async def on_tick(self, timer: Timer) -> None:
        await self.until_installed()
        data = timer.payload or {}
        rule = self.rules.get(data.get("rule", ""))
        if rule is None or rule.digest != data.get("digest") or not rule.enabled:
            await self.host.timers.cancel(TICK_TOPIC, timer.key)
            return
        trigger = rule.triggers[int(data["trigger"])]
        what = trigger.what
        fired = self.host.clock()
        context = {"platform": "time" if isinstance(what, TimeTrigger) else "interval",
                   "at": fired.isoformat()}
        await self.occur(rule, trigger, context,
                         f"tick:{timer.key}:{timer.due_at.isoformat()}", rule.id)
        if isinstance(what, TimeTrigger):
            await self.host.timers.schedule(TICK_TOPIC, timer.key,
                                            at=next_time(what, fired + timedelta(seconds=1)),
                                            payload=data)

    # -- waiting runs -----------------------------------------------------------------

    async def _wake_waiting(self, change: EntityChange) -> None:
        def unit(tx: Connection) -> list[int]:
            ids = waiting_on(tx, change.kind, change.id)
            for run_id in ids:
                self.host.timers.schedule_in(tx, STEP_TOPIC, str(run_id), after=0)
            return ids

        await self.host.run(unit)

    async def on_step(self, timer: Timer) -> None:
        await self.until_installed()
        await self.executor.drive(int(timer.key))

    # -- reloads ----------------------------------------------------------------------

    def forget_in(self, tx: Connection, rule_id: str) -> None:
        """A rule changed or went away: cancel its runs, holds, windows and ticks."""
        now = self.host.clock()
        timers = self.host.timers
        for run_id in cancel_runs(tx, [r.id for r in active_runs(tx, rule_id)], now,
                                  "cancelled: the rule changed or was removed"):
            timers.cancel_in(tx, STEP_TOPIC, str(run_id))
        forget_rule_state(tx, rule_id)
        for topic in (HOLD_TOPIC, TICK_TOPIC):
            for timer in timers_of(tx, topic, rule_id):
                timers.cancel_in(tx, topic, timer)


def timers_of(tx: Connection, topic: str, rule_id: str) -> list[str]:
    """Keys of `topic`'s timers belonging to `rule_id` (keys start `rule|`)."""
    prefix = f"{rule_id}|"
    rows = tx.execute(select(timer_table.c.key).where(timer_table.c.topic == topic,
                                                      timer_table.c.key.startswith(
                                                          prefix, autoescape=True)))
    return [str(k) for k in rows.scalars()]


def next_time(trigger: TimeTrigger, after: datetime) -> datetime:
    """The next wall-clock `trigger.at` in its timezone strictly after `after`."""
    zone = zoneinfo.ZoneInfo(trigger.timezone)
    local = after.astimezone(zone)
    day = local.date()
    for offset in range(0, 15):
        candidate = datetime.combine(day + timedelta(days=offset), trigger.at, tzinfo=zone)
        if candidate <= local:
            continue
        if trigger.weekdays is not None and candidate.weekday() not in trigger.weekdays:
            continue
        return candidate
    raise RuleError(f"time trigger at {trigger.at} has no day to fire on")
