"""`reactive rules` and `reactive runs`: what is loaded, what is armed, what ran.

`reactive rules` lists the installed rules, the load errors of the last (re)load and the
armed holds with their deadlines; `reactive rules check DIR` validates a folder without
touching the database; `reactive runs [RULE]` lists runs newest first and
`reactive runs show RUN_ID` prints one run's trace. `reactive runs --system S [--check C]`
lists a system's recent check runs instead — why it is unhealthy — from the plugin that
answers the hook `reactive_system_runs` (the health plugin).
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._cli.commands import EXIT_ERROR, EXIT_OK, EXIT_PROBLEMS, CliCommand, CliContext
from .._errors import ConfigError
from .._timers.timers import Timer
from .engine import HOLD_TOPIC
from .errors import RuleError
from .loader import parse_rules, rule_from_definition
from .model import Rule
from .runs import Run, get_run, list_runs, load_errors

if TYPE_CHECKING:
    from .plugin import AutomationPlugin, RuleRecord

RUNS_SHOWN = 50


def describe_triggers(rule: Rule) -> str:
    """`entity slo, event healthcheck.system_degraded` — what starts the rule."""
    parts: list[str] = []
    for trigger in rule.triggers:
        what = trigger.what
        name = type(what).__name__.removesuffix("Trigger")
        detail = {"Entity": lambda w: f"entity {w.kind}" + (f":{w.id}" if w.id else ""),
                  "Event": lambda w: f"event {w.event}",
                  "NumericState": lambda w: f"numeric_state {w.path}",
                  "Time": lambda w: f"time {w.at.strftime('%H:%M')} {w.timezone}",
                  "Interval": lambda w: f"interval {w.seconds:g}s"}[name](what)
        if trigger.window is not None:
            detail += f" (window {trigger.window.count} in {trigger.window.minutes:g}m)"
        parts.append(detail)
    return ", ".join(parts)


def run_row(run: Run) -> dict[str, Any]:
    return {"run_id": run.id, "rule_id": run.rule_id, "status": run.status.value,
            "trigger": run.trigger.get("platform"), "entity_id": run.trigger.get("entity_id"),
            "event": run.trigger.get("event"), "created_at": run.created_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "steps": len(run.trace), "error": run.error}


def hold_row(timer: Timer) -> dict[str, Any]:
    data = timer.payload or {}
    return {"rule_id": data.get("rule"), "trigger": data.get("trigger"),
            "entity": f"{data.get('kind')}:{data.get('entity_id')}",
            "armed_at": data.get("armed_at"), "deadline": timer.due_at.isoformat()}


def rules_command(plugin: AutomationPlugin) -> CliCommand:
    async def run(ctx: CliContext) -> int:
        if ctx.args.action == "check":
            return _check(ctx, plugin)
        if ctx.args.action is not None:
            ctx.print(f"reactive rules: unknown action {ctx.args.action!r}: expected "
                      f"'check DIR' or nothing")
            return EXIT_ERROR
        return await _list(ctx)

    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("action", nargs="?", choices=["check"],
                            help="`check DIR`: validate the rule files in DIR, change nothing")
        parser.add_argument("directory", nargs="?", metavar="DIR",
                            help="the folder (or file) of rules `check` validates")

    return CliCommand(name="rules", run=run, arguments=arguments, listing=True,
                      needs_database=lambda args: args.action != "check",
                      help="list automation rules, load errors and armed holds; "
                           "`rules check DIR` validates rule files")


def _check(ctx: CliContext, plugin: AutomationPlugin) -> int:
    if not ctx.args.directory:
        ctx.print("reactive rules check: expected the folder or file to check: "
                  "reactive rules check DIR")
        return EXIT_ERROR
    engine = plugin.engine
    actions = list(ctx.host.registry.actions)
    ruleset = parse_rules(ctx.args.directory, actions=actions)
    errors = list(ruleset.errors)
    for rule in ruleset.rules:
        try:
            if engine is not None:
                engine.check_rule(rule)
        except RuleError as exc:  # reported below with the others
            errors.append(exc)
    if ctx.json:
        ctx.emit({"rules": [r.id for r in ruleset.rules],
                  "errors": [{"path": e.path, "line": e.line, "message": e.detail}
                             for e in errors]}, lambda v: "")
    else:
        for error in errors:
            ctx.print(f"error: {error}")
        bad = {e.rule_id for e in errors if e.rule_id is not None}
        valid = sum(rule.id not in bad for rule in ruleset.rules)
        ctx.print(f"{valid} rule(s) valid, {len(errors)} error(s)")
    return EXIT_PROBLEMS if errors else EXIT_OK


async def _list(ctx: CliContext) -> int:
    from .plugin import RULE_KIND

    host = ctx.host
    records: dict[str, RuleRecord] = await host.entity(RULE_KIND).all()
    errors = await host.read(load_errors)
    holds = await host.timers.list(HOLD_TOPIC, limit=1000)
    rows = []
    for rule_id, record in sorted(records.items()):
        try:
            rule = rule_from_definition(record.definition, source=record.source,
                                        line=record.line)
            triggers, mode = describe_triggers(rule), f"{rule.mode.value}"
        except RuleError as exc:  # shown as it is
            triggers, mode = f"(not loadable: {exc})", "-"
        rows.append({"rule_id": rule_id, "mode": mode, "triggers": triggers,
                     "source": (record.source or record.origin)
                     + (f":{record.line}" if record.line else "")})
    value = {"rules": rows,
             "load_errors": [{"path": e["path"], "line": e["line"], "rule_id": e["rule_id"],
                              "message": e["message"]} for e in errors],
             "holds": [hold_row(t) for t in holds]}

    def table(v: dict[str, Any]) -> str:
        out = [ctx.table(["rule", "mode", "triggers", "source"],
                         [[r["rule_id"], r["mode"], r["triggers"], r["source"]]
                          for r in v["rules"]]) if v["rules"] else "no rules installed"]
        if v["load_errors"]:
            out.append("\nload errors:")
            out.extend(f"  {e['path'] or '-'}:{e['line'] or '-'}: {e['message']}"
                       for e in v["load_errors"])
        if v["holds"]:
            out.append("\narmed holds:")
            out.append(ctx.table(["rule", "entity", "armed", ctx.utc("deadline")],
                                 [[h["rule_id"], h["entity"], h["armed_at"], h["deadline"]]
                                  for h in v["holds"]]))
        return "\n".join(out)

    ctx.emit(value, table)
    return EXIT_PROBLEMS if errors else EXIT_OK


def runs_command(plugin: AutomationPlugin) -> CliCommand:
    async def run(ctx: CliContext) -> int:
        args = ctx.args
        if args.system is not None:
            return await _system_runs(ctx)
        if args.check is not None:
            ctx.print("reactive runs: --check C needs --system S: expected "
                      "reactive runs --system S --check C")
            return EXIT_ERROR
        if args.rule == "show":
            if not args.run_id or not args.run_id.isdigit():
                ctx.print("reactive runs show: expected a run id: reactive runs show RUN_ID")
                return EXIT_ERROR
            found = await ctx.host.read(get_run, int(args.run_id))
            if found is None:
                ctx.print(f"reactive runs show: no run {args.run_id}: expected the id of a "
                          f"run `reactive runs` lists")
                return EXIT_ERROR
            ctx.emit(_trace(found), lambda v: _trace_text(ctx, v))
            return EXIT_OK
        runs = await ctx.host.read(list_runs, rule_id=args.rule, limit=args.limit)
        ctx.emit([run_row(r) for r in runs], lambda rows: ctx.table(
            ["run", "rule", "status", "trigger", "entity", ctx.utc("created"), "steps",
             "error"],
            [[r["run_id"], r["rule_id"], r["status"], r["event"] or r["trigger"],
              r["entity_id"] or "-", r["created_at"][:19].replace("T", " "), r["steps"],
              (r["error"] or "")[:60]] for r in rows]) if rows else "no runs")
        return EXIT_OK

    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("rule", nargs="?", metavar="RULE",
                            help="only this rule's runs; `show RUN_ID` prints one trace")
        parser.add_argument("run_id", nargs="?", metavar="RUN_ID",
                            help="with `show`: the run whose trace to print")
        parser.add_argument("--limit", type=int, default=RUNS_SHOWN, metavar="N",
                            help=f"how many runs (default {RUNS_SHOWN})")
        parser.add_argument("--system", metavar="S",
                            help="instead: the recent check runs of system S, newest first "
                                 "(why it is unhealthy)")
        parser.add_argument("--check", metavar="C",
                            help="with --system: only the runs of check C")

    return CliCommand(name="runs", run=run, arguments=arguments, listing=True,
                      help="automation runs newest first; `runs show RUN_ID` for a trace; "
                           "`runs --system S` for a system's check runs")


def system_run_row(run: dict[str, Any]) -> dict[str, Any]:
    """A check run as `runs --system --json` prints it (times as ISO 8601)."""
    at = run.get("at")
    return {"check_id": run.get("check_id"), "status": run.get("status"),
            "status_code": run.get("status_code"), "error": run.get("error"),
            "latency_ms": run.get("latency_ms"),
            "at": at.isoformat() if isinstance(at, datetime) else at}


async def _system_runs(ctx: CliContext) -> int:
    """`runs --system S [--check C]`: the system's check runs, newest first."""
    args = ctx.args
    if args.rule is not None:
        ctx.print("reactive runs: --system lists check runs, not a rule's: expected either "
                  "RULE or --system S")
        return EXIT_ERROR
    found = ctx.host.hook.reactive_system_runs(
        host=ctx.host, system_id=args.system, check_id=args.check, limit=args.limit)
    if found is None:
        raise ConfigError("reactive runs --system: no loaded plugin records check runs: "
                          "expected the health plugin (REACTIVE_PLUGINS, --plugin)")
    if hasattr(found, "__await__"):
        found = await found
    rows = [system_run_row(r) for r in found]
    what = f"system {args.system}" + (f", check {args.check}" if args.check else "")
    ctx.emit(rows, lambda rs: ctx.table(
        ["check", "status", "code", "error", "latency", ctx.utc("at")],
        [[r["check_id"], r["status"], r["status_code"] if r["status_code"] is not None
          else "-", r["error"] or "-",
          f"{r['latency_ms']:.0f} ms" if r["latency_ms"] is not None else "-",
          (r["at"] or "-")[:19].replace("T", " ")] for r in rs]) if rs
        else f"no check runs of {what}")
    return EXIT_OK


def _trace(run: Run) -> dict[str, Any]:
    return {**run_row(run), "trigger": run.trigger, "conditions": run.conditions,
            "trace": run.trace, "waiting": run.waiting}


def _trace_text(ctx: CliContext, value: dict[str, Any]) -> str:
    lines = [f"run {value['run_id']} of rule {value['rule_id']}: {value['status']}"
             + (f" ({value['error']})" if value["error"] else "")]
    trigger = value["trigger"]
    lines.append(f"trigger: {trigger.get('platform')} "
                 f"{trigger.get('event') or trigger.get('entity_id') or ''}".rstrip())
    for c in value["conditions"]:
        lines.append(f"condition: {c.get('condition')} -> {c.get('result')}")
    for step in value["trace"]:
        extra = {k: v for k, v in step.items() if k not in ("step", "action", "at", "ms",
                                                             "outcome")}
        lines.append(f"{step.get('step')} {step.get('action')}: {step.get('outcome')} "
                     f"({step.get('ms')} ms){' ' + str(extra) if extra else ''}")
    if value["waiting"]:
        lines.append(f"waiting: {value['waiting']}")
    return "\n".join(lines)
