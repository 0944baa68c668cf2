"""Driving a run: each step in order, recorded as it goes, suspended on `delay` and
`wait_until` with its deadline in a durable timer, resumed from the stored cursor."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from pydantic import ValidationError
from sqlalchemy import Connection

from .._clock import as_utc
from .index import condition_refs
from .model import (
    Action,
    ChooseAction,
    DelayAction,
    LogAction,
    PluginAction,
    Rule,
    StopAction,
    WaitUntilAction,
    WebhookAction,
)
from .registration import ActionCall
from .runs import (
    Run,
    RunStatus,
    add_waits,
    claim_run,
    clear_waits,
    get_run,
    next_queued,
    save_progress,
    trim_runs,
)
from .scope import Scope
from .steps import advance, step_at, step_name
from .templates import Template

if TYPE_CHECKING:
    from .engine import Engine

logger = logging.getLogger("reactive_core.automation")

STEP_TOPIC = "automation.step"
"""Durable timer per active run: its next deadline (a delay, a wait's timeout), or a
watchdog while it runs, so a run whose instance died is taken over."""

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


@dataclass
class _Outcome:
    """What a step did: go on, enter a branch, suspend, or end the run."""

    record: dict[str, Any]
    enter: int | None = None
    suspend: dict[str, Any] | None = None
    until: datetime | None = None
    refs: frozenset[tuple[str, str]] = frozenset()
    end: RunStatus | None = None
    error: str | None = None


def render_value(value: Any, variables: Mapping[str, Any]) -> Any:
    """A YAML value with its templates rendered (strings in dicts and lists too)."""
    if isinstance(value, Template):
        return value.render(variables)
    if isinstance(value, Mapping):
        return {str(k): render_value(v, variables) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [render_value(v, variables) for v in value]
    return value


class Executor:
    """Runs the steps of runs; one per engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.host = engine.host
        self.client: httpx.AsyncClient | None = None

    @property
    def _lease(self) -> float:
        return self.engine.settings.lease_seconds

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    # -- the loop ---------------------------------------------------------------------

    async def drive(self, run_id: int, claimed: Run | None = None) -> None:
        """Run `run_id` from its cursor until it ends or suspends (if it is ours to run);
        `claimed`: the run as this instance just started it (no need to claim it)."""
        host, owner = self.host, self.host.instance_id
        run = claimed or await host.run(claim_run, run_id, owner, host.clock(), self._lease)
        if run is None:
            await self._rearm_if_leased(run_id)
            return
        rule = self.engine.rules.get(run.rule_id)
        if rule is None or rule.digest != run.rule_digest:
            reason = "the rule was removed" if rule is None else "the rule changed"
            await self._finish(run, rule, list(run.cursor), list(run.trace),
                               RunStatus.CANCELLED, f"cancelled: {reason}")
            return
        cursor, trace = list(run.cursor), list(run.trace)
        while True:
            action = step_at(rule.actions, cursor)
            if action is None:
                await self._finish(run, rule, cursor, trace, RunStatus.SUCCEEDED, None)
                return
            name = step_name(rule.actions, cursor)
            started = time.perf_counter()
            waiting = run.waiting if (run.waiting or {}).get("cursor") == cursor else None
            try:
                outcome = await self._step(run, rule, action, name, waiting)
            except Exception as exc:  # noqa: BLE001 - a step's failure is the run's, recorded
                outcome = _Outcome(record={"outcome": "error", "error": _error(exc)},
                                   end=RunStatus.FAILED, error=f"{name}: {_error(exc)}")
            outcome.record = {"step": name, "action": _kind(action),
                              "at": host.clock().isoformat(),
                              "ms": round((time.perf_counter() - started) * 1000, 1),
                              **outcome.record}
            if outcome.suspend is not None:
                run = await self._suspend(run, cursor, trace, outcome)
                return
            trace.append(outcome.record)
            if outcome.end is not None:
                await self._finish(run, rule, cursor, trace, outcome.end, outcome.error)
                return
            if outcome.enter is not None:
                cursor = [*cursor, outcome.enter, 0]
                if step_at(rule.actions, cursor) is None:
                    cursor = advance(rule.actions, cursor)
            else:
                cursor = advance(rule.actions, cursor)
            if step_at(rule.actions, cursor) is None:  # that was the last step
                await self._finish(run, rule, cursor, trace, RunStatus.SUCCEEDED, None)
                return
            saved = await host.run(save_progress, run, owner, host.clock(), self._lease,
                                   cursor=cursor, trace=trace)
            if not saved:  # cancelled (restart mode, rule changed) or taken over
                return
            run = replace(run, cursor=cursor, trace=trace, waiting=None)

    async def _rearm_if_leased(self, run_id: int) -> None:
        """Another instance drives it: look again when its lease ends."""
        run = await self.host.read(get_run, run_id)
        if run is not None and run.active and run.lease_expires_at is not None:
            await self.host.timers.schedule(STEP_TOPIC, str(run_id), at=run.lease_expires_at)

    async def _suspend(self, run: Run, cursor: list[int], trace: list[dict[str, Any]],
                       outcome: _Outcome) -> Run:
        host, owner = self.host, self.host.instance_id
        waiting = {**(outcome.suspend or {}), "cursor": cursor,
                   "until": outcome.until.isoformat() if outcome.until else None}
        first = run.waiting is None or run.waiting.get("cursor") != cursor
        record = [*trace, outcome.record] if first else trace

        def unit(tx: Connection) -> bool:
            if not save_progress(tx, run, owner, host.clock(), self._lease, cursor=cursor,
                                 trace=record, status=RunStatus.WAITING, waiting=waiting,
                                 release=True):
                return False
            add_waits(tx, run.id, outcome.refs)
            if outcome.until is not None:
                host.timers.schedule_in(tx, STEP_TOPIC, str(run.id), at=outcome.until)
            else:
                host.timers.cancel_in(tx, STEP_TOPIC, str(run.id))
            return True

        await host.run(unit)
        return replace(run, cursor=cursor, trace=record, waiting=waiting)

    async def _finish(self, run: Run, rule: Rule | None, cursor: list[int],
                      trace: list[dict[str, Any]], status: RunStatus, error: str | None) -> None:
        host, owner = self.host, self.host.instance_id
        keep = self.engine.settings.keep_runs

        def unit(tx: Connection) -> int | None:
            now = host.clock()
            if not save_progress(tx, run, owner, now, self._lease, cursor=cursor, trace=trace,
                                 status=status, error=error):
                return None
            clear_waits(tx, [run.id])
            host.timers.cancel_in(tx, STEP_TOPIC, str(run.id))
            host.lock_in(tx, "automation", run.rule_id)
            following = next_queued(tx, run.rule_id, now)
            if following is not None:
                host.timers.schedule_in(tx, STEP_TOPIC, str(following), at=now)
            trim_runs(tx, run.rule_id, keep)
            return following

        await host.run(unit)
        level = logging.WARNING if status is RunStatus.FAILED else logging.INFO
        logger.log(level, "rule %s run %d %s%s", run.rule_id, run.id, status.value,
                   f": {error}" if error else "")

    # -- steps ------------------------------------------------------------------------

    async def _evaluate(self, run: Run, rule: Rule, fn: Any) -> Any:
        """`fn(scope)` inside a read unit of work, with the run's trigger and state."""
        host = self.host
        refs = self.engine.refs_of(rule)

        def unit(tx: Connection) -> Any:
            scope = Scope(host, tx, trigger=run.trigger, refs=refs,
                          run={"id": run.id, "rule": run.rule_id})
            return fn(scope)

        return await host.read(unit)

    async def _step(self, run: Run, rule: Rule, action: Action, name: str,
                    waiting: dict[str, Any] | None) -> _Outcome:
        if isinstance(action, LogAction):
            message = await self._evaluate(run, rule,
                                           lambda s: action.message.render(s.variables))
            logger.log(_LEVELS[action.level], "rule %s: %s", rule.id, message)
            return _Outcome(record={"outcome": "ok", "message": message[:2000]})
        if isinstance(action, DelayAction):
            return self._delay(action, waiting)
        if isinstance(action, WaitUntilAction):
            return await self._wait(run, rule, action, waiting)
        if isinstance(action, ChooseAction):
            def choose(scope: Scope) -> int | None:
                for index, option in enumerate(action.options):
                    if scope.check_all(option.conditions)[0]:
                        return index
                return len(action.options) if action.default else None
            chosen = await self._evaluate(run, rule, choose)
            if chosen is None:
                return _Outcome(record={"outcome": "no option held"})
            label = "default" if chosen == len(action.options) else f"option {chosen}"
            return _Outcome(record={"outcome": label}, enter=chosen)
        if isinstance(action, StopAction):
            status = RunStatus.FAILED if action.error else RunStatus.STOPPED
            return _Outcome(record={"outcome": "stopped", "reason": action.reason}, end=status,
                            error=action.reason or None)
        if isinstance(action, WebhookAction):
            return await self._webhook(run, rule, action, name)
        if isinstance(action, PluginAction):
            return await self._plugin(run, rule, action, name)
        raise TypeError(f"not an action: {action!r}")

    def _delay(self, action: DelayAction, waiting: dict[str, Any] | None) -> _Outcome:
        now = self.host.clock()
        if waiting is not None and waiting.get("until"):
            until = as_utc(datetime.fromisoformat(waiting["until"]))
            if now >= until:
                return _Outcome(record={"outcome": "ok", "until": until.isoformat()})
            return _Outcome(record={}, suspend={"type": "delay"}, until=until)
        if action.seconds <= 0:
            return _Outcome(record={"outcome": "ok"})
        until = now + timedelta(seconds=action.seconds)
        return _Outcome(record={"outcome": "waiting", "until": until.isoformat()},
                        suspend={"type": "delay"}, until=until)

    async def _wait(self, run: Run, rule: Rule, action: WaitUntilAction,
                    waiting: dict[str, Any] | None) -> _Outcome:
        held, results = await self._evaluate(run, rule,
                                             lambda s: s.check_all(action.conditions))
        now = self.host.clock()
        if held:
            return _Outcome(record={"outcome": "ok", "conditions": results})
        until: datetime | None
        if waiting is not None:
            until = as_utc(datetime.fromisoformat(waiting["until"])) if waiting.get(
                "until") else None
        else:
            until = now + timedelta(seconds=action.timeout) if action.timeout else None
        if until is not None and now >= until:
            if action.continue_on_timeout:
                return _Outcome(record={"outcome": "timed out, continuing"})
            return _Outcome(record={"outcome": "timed out"}, end=RunStatus.STOPPED,
                            error="wait_until timed out")
        refs = frozenset(condition_refs(action.conditions))
        return _Outcome(record={"outcome": "waiting", "conditions": results,
                                "until": until.isoformat() if until else None},
                        suspend={"type": "wait"}, until=until, refs=refs)

    async def _webhook(self, run: Run, rule: Rule, action: WebhookAction,
                       name: str) -> _Outcome:
        def render(scope: Scope) -> tuple[str, dict[str, str], Any]:
            v = scope.variables
            headers = {k: t.render(v) for k, t in action.headers}
            return action.url.render(v), headers, render_value(action.body, v)

        url, headers, body = await self._evaluate(run, rule, render)
        if not any(k.lower() == "idempotency-key" for k in headers):
            headers["Idempotency-Key"] = f"run-{run.id}-{name}"
        if self.client is None:
            self.client = httpx.AsyncClient(follow_redirects=False)
        attempts: list[str] = []
        for attempt in range(action.retries + 1):
            if attempt:
                delay = action.backoff * (2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
                await anyio.sleep(min(delay, self.engine.settings.max_backoff_seconds))
            try:
                response = await self.client.request(
                    action.method, url, headers=headers,
                    json=body if action.method != "GET" and body is not None else None,
                    timeout=action.timeout)
            except httpx.HTTPError as exc:
                attempts.append(_error(exc))
                continue
            attempts.append(str(response.status_code))
            if 200 <= response.status_code < 300:
                return _Outcome(record={"outcome": "ok", "status": response.status_code,
                                        "attempts": attempts})
            if response.status_code != 429 and response.status_code < 500:
                break  # refused (4xx) or redirected (3xx, not followed): retrying won't help
        return _Outcome(record={"outcome": "error", "attempts": attempts},
                        end=RunStatus.FAILED,
                        error=f"{name}: webhook {action.method} failed: {', '.join(attempts)}")

    async def _plugin(self, run: Run, rule: Rule, action: PluginAction, name: str) -> _Outcome:
        spec = self.host.registry.actions.get(action.name)
        if spec is None:
            return _Outcome(record={"outcome": "error", "error": "no plugin offers it"},
                            end=RunStatus.FAILED,
                            error=f"{name}: no loaded plugin offers action {action.name!r}")
        params = await self._evaluate(run, rule,
                                      lambda s: render_value(action.params, s.variables))
        if spec.params is not None:
            try:
                params = spec.params.model_validate(params or {})
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(params)'}: "
                                     f"{e['msg']}" for e in exc.errors())
                return _Outcome(record={"outcome": "error", "error": problems},
                                end=RunStatus.FAILED,
                                error=f"{name}: {action.name} parameters: {problems}")
        result = await spec.fn(ActionCall(host=self.host, params=params, rule_id=rule.id,
                                          run_id=run.id, step=name, trigger=run.trigger))
        record: dict[str, Any] = {"outcome": "ok"}
        if result is not None:
            record["result"] = str(result)[:2000]
        return _Outcome(record=record)


def _kind(action: Action) -> str:
    if isinstance(action, PluginAction):
        return action.name
    return {LogAction: "log", WebhookAction: "webhook", DelayAction: "delay",
            WaitUntilAction: "wait_until", ChooseAction: "choose",
            StopAction: "stop"}[type(action)]


def _error(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:1000] if text else type(exc).__name__
