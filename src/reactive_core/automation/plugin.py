"""The automation engine as the host's built-in plugin `automation`: its tables, the
`automation-rule` kind, its timers, the `rules` config section and its commands."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection

from .._host.configfile import ConfigItemError
from ..hookspecs import hookimpl
from .engine import GROUP, HOLD_TOPIC, TICK_TOPIC, AutomationSettings, Engine
from .errors import RuleError
from .executor import STEP_TOPIC
from .loader import load_rules, parse_rules, rule_from_definition
from .model import Rule
from .runs import replace_load_errors
from .schema import metadata

if TYPE_CHECKING:
    from .._cli.commands import CliCommand
    from .._cli.demo import DemoStep
    from .._entities.changes import EntityChange
    from .._host.host import Host
    from .._host.registry import Registry

logger = logging.getLogger("reactive_core.automation")

RULE_KIND = "automation-rule"
"""The kind whose entities are the installed rules (one per rule id)."""
RULES_SECTION = "rules"
RULES_ORDER = 90
"""Rules apply after everything they may name (systems, checks, objectives)."""
CONFIG_ORIGIN = "config"


class RuleRecord(BaseModel):
    """An installed rule: where it came from and its definition as written."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    origin: str
    """`folder:<dir>` for rules from a watched folder, `config` for `reactive apply`."""
    source: str | None = None
    line: int | None = None
    digest: str
    definition: dict[str, Any]


class RuleDeclaration(BaseModel):
    """One item of a config file's `rules:` section (validated by the rule loader)."""

    model_config = ConfigDict(extra="allow")

    id: str


def record_of(rule: Rule, origin: str) -> RuleRecord:
    return RuleRecord(origin=origin, source=rule.source, line=rule.line, digest=rule.digest,
                      definition=rule.definition)


class AutomationPlugin:
    """Built into every host (disable with `REACTIVE_DISABLE_PLUGINS=automation`)."""

    name = "automation"

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.load_errors: list[RuleError] = []
        self._files: dict[str, str] = {}
        self._fingerprint: dict[str, tuple[int, int]] = {}
        self._refresh_pending = False

    @property
    def _engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("the automation plugin was not registered with a host")
        return self.engine

    @hookimpl
    def reactive_register(self, registry: Registry, host: Host) -> None:
        settings = host.plugin_settings("automation", AutomationSettings)
        self.engine = engine = Engine(host, settings)
        registry.add_tables(metadata, migrations="reactive_core.automation:migrations")
        registry.define_entity(RULE_KIND, state=RuleRecord)
        registry.on_entity_changed(RULE_KIND, self._rule_changed)
        registry.on_timer(HOLD_TOPIC, engine.on_hold)
        registry.on_timer(TICK_TOPIC, engine.on_tick, concurrency=4)
        registry.on_timer(STEP_TOPIC, engine.on_step, lease_seconds=settings.lease_seconds)
        registry.add_config_section(RULES_SECTION, RuleDeclaration, self._apply_config,
                                    order=RULES_ORDER, identity=["id"],
                                    prune=self._prune_config)
        for table in ("automation_runs", "automation_waits", "automation_window_hits",
                      "automation_window_latches", "automation_load_errors"):
            registry.declare_non_reactive_state(
                table, "bookkeeping", "the automation engine's runs, waits and window counts")

    @hookimpl
    async def reactive_startup(self, host: Host) -> None:
        if not host.config.workers:
            return
        await self.reload_from_store()
        directory = self._engine.settings.rules_dir
        if directory is not None:
            self._fingerprint = await anyio.to_thread.run_sync(_fingerprint, Path(directory))
            await self.sync_folder(directory)
            host.task_group.start_soon(self._watch, directory)

    @hookimpl
    async def reactive_shutdown(self, host: Host) -> None:
        await self._engine.executor.close()

    @hookimpl
    def reactive_cli_commands(self) -> list[CliCommand]:
        from .commands import rules_command, runs_command
        return [rules_command(self), runs_command(self)]

    @hookimpl
    def reactive_demo_steps(self) -> list[DemoStep]:
        from .demo import AutomationDemo
        return AutomationDemo(self).steps()

    async def install(self, text: str, *, origin: str) -> list[str]:
        """Validate the rules of YAML `text` and store them as `origin`'s (what a plugin's
        demo or an application uses); `RuleError` names the first bad one."""
        engine = self._engine
        rules = load_rules(text, actions=list(engine.host.registry.actions))
        for rule in rules:
            engine.check_rule(rule)
        report = await engine.host.run(
            lambda tx: self.write_rules_in(tx, rules, origin, prune=False))
        await self.reload_from_store()
        return report

    # -- rules in the store -------------------------------------------------------------

    def _rebuild(self, record: RuleRecord, rule_id: str) -> Rule:
        rule = rule_from_definition(record.definition, source=record.source, line=record.line,
                                    actions=list(self._engine.host.registry.actions))
        if rule.id != rule_id:
            raise RuleError(f"stored under id {rule_id!r} but defines {rule.id!r}",
                            path=record.source, line=record.line)
        return rule

    async def reload_from_store(self) -> dict[str, Rule]:
        """Install every stored rule in this host's engine (what another instance or
        `reactive apply` wrote included)."""
        engine = self._engine
        records: dict[str, RuleRecord] = await engine.host.entity(RULE_KIND).all()
        rules: dict[str, Rule] = {}
        for rule_id, record in records.items():
            try:
                rule = self._rebuild(record, rule_id)
                engine.check_rule(rule)
            except RuleError as exc:
                logger.error("stored rule %s is not runnable here: %s", rule_id, exc)
                continue
            rules[rule_id] = rule
        engine.install(rules)
        return rules

    async def _rule_changed(self, change: EntityChange) -> None:
        """Broadcast: some instance changed a rule; every host installs that one rule
        (the index and the routes follow once a burst of changes is over)."""
        engine = self._engine
        rule: Rule | None = None
        if change.next is not None:
            try:
                rule = self._rebuild(RuleRecord.model_validate(change.next), change.id)
                engine.check_rule(rule)
            except RuleError as exc:
                logger.error("stored rule %s is not runnable here: %s", change.id, exc)
                rule = None
        engine.replace(change.id, rule)
        if not self._refresh_pending:
            self._refresh_pending = True
            engine.host.task_group.start_soon(self._refresh_index)

    async def _refresh_index(self) -> None:
        await anyio.sleep(0.05)
        self._refresh_pending = False
        _ = self._engine.index

    def write_rules_in(self, tx: Connection, rules: Sequence[Rule], origin: str, *,
                       keep_ids: frozenset[str] = frozenset(), prune: bool) -> list[str]:
        """Store `rules` from `origin`; with `prune`, remove that origin's rules missing
        from it (except `keep_ids`). Changed or removed rules lose their holds, windows
        and active runs; unchanged ones keep everything. Returns what changed."""
        engine = self._engine
        handle = engine.host.entity(RULE_KIND)
        existing: dict[str, RuleRecord] = handle.get_many_in(tx, handle.ids_in(tx))
        report: list[str] = []
        wanted = {rule.id for rule in rules}
        for rule in rules:
            before = existing.get(rule.id)
            record = record_of(rule, origin)
            if before is not None and before.digest == rule.digest:
                if before != record:  # moved (line, file): no reset
                    handle.write_in(tx, rule.id, _put(record))
                engine.arm_ticks_in(tx, rule)
                continue
            if before is not None:
                engine.forget_in(tx, rule.id)
            handle.write_in(tx, rule.id, _put(record))
            engine.arm_ticks_in(tx, rule)
            report.append(f"rule {rule.id}: {'updated' if before else 'created'}")
        if prune:
            for rule_id, record in existing.items():
                if record.origin == origin and rule_id not in wanted and rule_id not in keep_ids:
                    engine.forget_in(tx, rule_id)
                    handle.remove_write_in(tx, rule_id)
                    report.append(f"rule {rule_id}: removed")
        return report

    # -- a folder of rule files ---------------------------------------------------------

    async def sync_folder(self, directory: str | os.PathLike[str]) -> list[str]:
        """Load the folder's rules and store what changed; rules whose file fails to load
        stay as they were. Returns what changed."""
        engine = self._engine
        host = engine.host
        folder = Path(directory).resolve()
        origin = f"folder:{folder}"
        actions = list(host.registry.actions)
        ruleset = await anyio.to_thread.run_sync(
            lambda: parse_rules(folder, actions=actions))
        good: list[Rule] = []
        errors = list(ruleset.errors)
        for rule in ruleset.rules:
            try:
                engine.check_rule(rule)
            except RuleError as exc:
                errors.append(exc)
                continue
            good.append(rule)
        broken = {str(e.path) for e in errors if e.path is not None}
        self.load_errors = errors
        self._files = dict(ruleset.files)

        def unit(tx: Connection) -> list[str]:
            handle = host.entity(RULE_KIND)
            kept = frozenset(
                rule_id for rule_id, record in handle.get_many_in(tx, handle.ids_in(tx)).items()
                if record.origin == origin and record.source in broken)
            report = self.write_rules_in(tx, good, origin, keep_ids=kept, prune=True)
            replace_load_errors(tx, origin, [
                {"path": e.path, "line": e.line, "rule_id": e.rule_id, "message": e.detail}
                for e in errors], host.clock())
            return report

        report = await host.run(unit)
        for error in errors:
            logger.error("rule not loaded: %s", error)
        for line in report:
            logger.info("%s", line)
        await self.reload_from_store()
        return report

    async def _watch(self, directory: str) -> None:
        """Re-load the folder when a file in it changes (polled)."""
        period = self._engine.settings.watch_seconds
        while True:
            await anyio.sleep(period)
            try:
                files = await anyio.to_thread.run_sync(_fingerprint, Path(directory))
                if files != self._fingerprint:
                    self._fingerprint = files
                    await self.sync_folder(directory)
            except Exception:  # the next look tries again
                logger.exception("reloading rules from %s failed", directory)

    # -- `reactive apply` ---------------------------------------------------------------

    def _apply_config(self, tx: Connection, host: Host, items: Sequence[Any]) -> list[str]:
        actions = list(host.registry.actions)
        rules: list[Rule] = []
        for index, item in enumerate(items):
            definition = item.model_dump()
            try:
                rule = rule_from_definition(definition, source=None, actions=actions)
                self._engine.check_rule(rule)
            except RuleError as exc:
                raise ConfigItemError(index, exc.detail, field=exc.where) from None
            rules.append(rule)
        return self.write_rules_in(tx, rules, CONFIG_ORIGIN, prune=False)

    def _prune_config(self, tx: Connection, host: Host, items: Sequence[Any]) -> list[str]:
        """`reactive apply --prune`: remove the rules config files stored that `items` no
        longer declare (a rules folder's rules are the folder's business)."""
        declared = frozenset(str(item.id) for item in items)
        return self.write_rules_in(tx, [], CONFIG_ORIGIN, keep_ids=declared, prune=True)


def _put(record: RuleRecord) -> Callable[[Connection, RuleRecord | None], RuleRecord]:
    """An `apply` that stores `record` as it is."""
    def apply(_tx: Connection, _prev: RuleRecord | None) -> RuleRecord:
        return record
    return apply


def _fingerprint(folder: Path) -> dict[str, tuple[int, int]]:
    """Each rule file's (mtime ns, size): what the watcher compares."""
    found: dict[str, tuple[int, int]] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.rglob("*")):
        if path.suffix in (".yaml", ".yml") and path.is_file():
            stat = path.stat()
            found[str(path)] = (stat.st_mtime_ns, stat.st_size)
    return found




def automation_of(host: Host) -> AutomationPlugin | None:
    """The host's automation plugin, or None when it is not loaded (disabled)."""
    if "automation" not in host.plugin_names:
        return None
    plugin = host.plugin("automation")
    return plugin if isinstance(plugin, AutomationPlugin) else None


__all__ = ["GROUP", "RULE_KIND", "AutomationPlugin", "RuleRecord", "automation_of"]
