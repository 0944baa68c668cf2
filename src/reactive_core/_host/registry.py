"""What plugins declare: tables, entity kinds, derivers, subscriptions, timers, jobs."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import ModuleType
from typing import Any

import pluggy
from pydantic import BaseModel
from sqlalchemy import MetaData

from .._delivery.policy import Broadcast, Delivery, RetryPolicy, WorkQueue
from .._entities.changes import EntityChange
from .._entities.ids import MAX_NAME_LENGTH, id_problem
from .._errors import DuplicateRegistration, RegistryError, UnknownEntityKind
from .._store.migrate import CORE_COMPONENT, History, HistoryError, resolve_location
from .._store.schema import CORE_TABLES
from .._timers.jobs import Job, JobFn
from .._timers.runner import TimerHandler, TimerTopic
from .._timers.schedule import parse_schedule
from .actions import ACTION_NAME, ActionFn, ActionSpec
from .configfile import ConfigSection, SectionApply, SectionPrune
from .declarations import (
    NON_REACTIVE_REASONS,
    ChangeHandler,
    Deriver,
    EntityKind,
    NonReactiveDeclaration,
    NonReactiveReason,
    PayloadMapper,
    ReadFn,
    Subscription,
)

logger = logging.getLogger("reactive_core.registry")

@dataclass(slots=True)
class _Derivation:
    derivers: list[Deriver] = field(default_factory=list)
    payload: PayloadMapper | None = None


def _check_kind(kind: object, what: str) -> str:
    problem = id_problem(kind, MAX_NAME_LENGTH)
    if problem is not None:
        raise RegistryError(f"{what}: kind {kind!r:.80} {problem}: expected a name of printable "
                            f"text, 1 to {MAX_NAME_LENGTH} characters, no surrounding spaces")
    return kind  # type: ignore[return-value]


class Registry:
    """Collects what plugins declare in `reactive_register`; owned by the `Host`."""

    def __init__(self) -> None:
        self.current_plugin: str | None = None
        self._kinds: dict[str, EntityKind] = {}
        self._metadatas: list[MetaData] = []
        self._histories: dict[str, History] = {}
        self._table_owner: dict[str, str | None] = {}
        self._derivations: dict[str, _Derivation] = {}
        self._subscriptions: list[Subscription] = []
        self._declarations: dict[str, NonReactiveDeclaration] = {}
        self._jobs: dict[str, Job] = {}
        self._listeners: list[Callable[[], None]] = []
        self._broadcast_count = 0
        self._work_queue_count = 0
        # Work-queue lookups of the hot paths (each write, each delivery), rebuilt
        # whenever subscriptions change.
        self._groups_of: dict[str, tuple[str, ...]] = {}
        self._handler_of: dict[tuple[str, str], Subscription] = {}
        self._routes: tuple[tuple[str, str], ...] = ()
        self._config_sections: dict[str, ConfigSection] = {}
        self._timer_topics: dict[str, TimerTopic] = {}
        self._actions: dict[str, ActionSpec] = {}
        self.plugin_manager: pluggy.PluginManager | None = None

    # -- declarations ---------------------------------------------------------------

    def add_tables(self, metadata: MetaData, *,
                   migrations: str | os.PathLike[str] | None = None) -> None:
        """Add a plugin's SQLAlchemy `MetaData`, with the Alembic history that builds it.

        `migrations` names the plugin's Alembic script directory — a path, or
        `"package:folder"` inside an installed package — whose `versions/` folder holds
        its revisions. The history is the plugin's own (component = the plugin's name,
        version table `alembic_version_<name>`); hosts apply it at start-up after the
        core's and the plugins' before it, and `reactive db upgrade` applies it on
        demand. Its first revision must be the schema the plugin's tables had before it
        had a history: a database holding those tables without a version table is
        stamped with it and upgraded in place.

        Without `migrations`, the tables are created at start-up if absent
        (`create_all`) and never altered: fine for tests, examples and tables that never
        change, but a changed column then needs a history.
        """
        if not isinstance(metadata, MetaData):
            raise RegistryError(
                f"add_tables expects a sqlalchemy.MetaData, received {type(metadata).__name__}"
            )
        if any(md is metadata for md in self._metadatas):
            return
        history = None if migrations is None else self._history(metadata, migrations)
        for name in metadata.tables:
            if name in CORE_TABLES or name in self._table_owner:
                owner = "reactive_core" if name in CORE_TABLES else self._table_owner[name]
                raise DuplicateRegistration(
                    f"table {name!r} added by plugin {self.current_plugin!r} is already "
                    f"defined by {owner!r}: expected a table name unique across plugins"
                )
        for name in metadata.tables:
            self._table_owner[name] = self.current_plugin
        self._metadatas.append(metadata)
        if history is not None:
            self._histories[history.component] = history

    def _history(self, metadata: MetaData, migrations: str | os.PathLike[str]) -> History:
        plugin = self.current_plugin
        if plugin is None:
            raise RegistryError("add_tables(migrations=...) names a plugin's own history: "
                                "expected it to be called from a plugin's reactive_register")
        if plugin == CORE_COMPONENT or plugin in self._histories:
            raise DuplicateRegistration(
                f"add_tables(migrations={migrations!r}): component {plugin!r} already has a "
                "version history: expected one per plugin (one MetaData with migrations)")
        if not isinstance(migrations, (str, os.PathLike)):
            raise RegistryError(f"add_tables: migrations must be a path or 'package:folder', "
                                f"received {migrations!r}")
        try:
            history = History(component=plugin, directory=resolve_location(migrations),
                              metadata=metadata)
            history.check()
        except HistoryError as exc:
            raise RegistryError(str(exc)) from exc
        return history

    def define_entity(
        self,
        kind: str,
        *,
        state: type[BaseModel],
        read: ReadFn | None = None,
        tables: Iterable[str] = (),
        ids: Callable[[Any], Iterable[str]] | None = None,
    ) -> None:
        """Declare an entity kind: store-backed without `read`, computed with it.

        `tables` names the plugin tables a computed kind is assembled from, so that
        `reactive doctor` knows they are reactive; `ids(tx)` lists a computed kind's
        existing ids (for `handle.ids()` / `handle.all()`).
        """
        _check_kind(kind, "define_entity")
        if not (isinstance(state, type) and issubclass(state, BaseModel)):
            raise RegistryError(
                f"define_entity({kind!r}): state must be a pydantic BaseModel subclass, "
                f"received {state!r}"
            )
        if read is not None and not callable(read):
            raise RegistryError(
                f"define_entity({kind!r}): read must be callable (tx, ids) -> mapping, "
                f"received {read!r}"
            )
        if kind in self._kinds:
            raise DuplicateRegistration(
                f"entity kind {kind!r} defined by plugin {self.current_plugin!r} is already "
                f"defined by plugin {self._kinds[kind].plugin!r}: expected unique kind names"
            )
        self._kinds[kind] = EntityKind(
            kind=kind, state=state, read=read, tables=tuple(tables), plugin=self.current_plugin,
            ids=ids,
        )

    def register_change_deriver(
        self, kind: str, derive: Deriver, to_payload: PayloadMapper | None = None
    ) -> None:
        """Add a pure `derive(change) -> [trigger ids]` for `kind`, and optionally its payload."""
        _check_kind(kind, "register_change_deriver")
        if not callable(derive):
            raise RegistryError(
                f"register_change_deriver({kind!r}): derive must be callable, received {derive!r}"
            )
        derivation = self._derivations.setdefault(kind, _Derivation())
        if to_payload is not None:
            if derivation.payload is not None and derivation.payload is not to_payload:
                raise DuplicateRegistration(
                    f"register_change_deriver({kind!r}): a payload mapper "
                    f"{_name(derivation.payload)} is already registered, received another "
                    f"({_name(to_payload)}): expected at most one per kind"
                )
            derivation.payload = to_payload
        derivation.derivers.append(derive)

    def on_entity_changed(
        self, kind: str, handler: ChangeHandler, delivery: Delivery | None = None
    ) -> Callable[[], None]:
        """Subscribe `async handler(change)` to changes of `kind`; returns an unsubscribe."""
        _check_kind(kind, "on_entity_changed")
        delivery = Broadcast() if delivery is None else delivery
        if not callable(handler):
            raise RegistryError(
                f"on_entity_changed({kind!r}): handler must be an async callable, "
                f"received {handler!r}"
            )
        if not isinstance(delivery, (Broadcast, WorkQueue)):
            raise RegistryError(
                f"on_entity_changed({kind!r}): delivery must be Broadcast() or "
                f"WorkQueue(group), received {delivery!r}"
            )
        if isinstance(delivery, WorkQueue):
            for sub in self._subscriptions:
                if (isinstance(sub.delivery, WorkQueue) and sub.kind == kind
                        and sub.delivery.group == delivery.group):
                    raise DuplicateRegistration(
                        f"work-queue group {delivery.group!r} already handles kind {kind!r} "
                        f"with {sub.name}: expected one handler per (group, kind)"
                    )
        sub = Subscription(kind=kind, handler=handler, delivery=delivery,
                           plugin=self.current_plugin)
        self._subscriptions.append(sub)
        self._changed()

        def unsubscribe() -> None:
            if sub in self._subscriptions:
                self._subscriptions.remove(sub)
                self._changed()

        return unsubscribe

    def declare_non_reactive_state(self, table: str, reason: NonReactiveReason, note: str) -> None:
        """Declare that plugin table `table` deliberately backs no entity kind, and why."""
        if reason not in NON_REACTIVE_REASONS:
            raise RegistryError(
                f"declare_non_reactive_state({table!r}): reason must be one of "
                f"{', '.join(NON_REACTIVE_REASONS)}, received {reason!r}"
            )
        if not isinstance(note, str) or not note.strip():
            raise RegistryError(
                f"declare_non_reactive_state({table!r}): note must explain why, received {note!r}"
            )
        self._declarations[table] = NonReactiveDeclaration(
            table=table, reason=reason, note=note, plugin=self.current_plugin
        )

    def add_job(
        self,
        name: str,
        fn: JobFn,
        *,
        every: float | timedelta | None = None,
        cron: str | None = None,
    ) -> None:
        """Schedule `async fn(host, slot)` to run once per cluster per slot."""
        if not isinstance(name, str) or not name.strip():
            raise RegistryError(f"add_job: name must be a non-empty string, received {name!r}")
        if name in self._jobs:
            raise DuplicateRegistration(
                f"job {name!r} added by plugin {self.current_plugin!r} is already added by "
                f"plugin {self._jobs[name].plugin!r}: expected unique job names"
            )
        try:
            schedule = parse_schedule(every=every, cron=cron)
        except ValueError as exc:
            raise RegistryError(f"add_job({name!r}): {exc}") from exc
        self._jobs[name] = Job(name=name, fn=fn, schedule=schedule, plugin=self.current_plugin)

    def on_timer(
        self, topic: str, handler: TimerHandler, *, concurrency: int = 16,
        lease_seconds: float = 60.0, retry: RetryPolicy | None = None,
        timeout_seconds: float | None = None,
    ) -> None:
        """Handle the durable timers of `topic`: `async handler(timer)` when one fires.

        At most `concurrency` firings of the topic run at once on an instance; a firing
        holds a lease of `lease_seconds` (extended while it runs; an instance that dies
        loses it and another fires the timer). A handler that raises is retried per
        `retry` (default: 3 retries); `timeout_seconds` bounds one firing. Arm timers with
        `host.timers.schedule(topic, key, ...)`.
        """
        if (problem := id_problem(topic, MAX_NAME_LENGTH)) is not None:
            raise RegistryError(f"on_timer: topic {topic!r:.80} {problem}: expected a name of "
                                f"printable text, 1 to {MAX_NAME_LENGTH} characters")
        if not callable(handler):
            raise RegistryError(f"on_timer({topic!r}): handler must be an async callable, "
                                f"received {handler!r}")
        if topic in self._timer_topics:
            raise DuplicateRegistration(
                f"timer topic {topic!r} registered by plugin {self.current_plugin!r} is "
                f"already handled by {self._timer_topics[topic].name} (plugin "
                f"{self._timer_topics[topic].plugin!r}): expected one handler per topic")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise RegistryError(f"on_timer({topic!r}): concurrency must be an integer >= 1, "
                                f"received {concurrency!r}")
        for name, value in (("lease_seconds", lease_seconds), ("timeout_seconds", timeout_seconds)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not value > 0):
                raise RegistryError(f"on_timer({topic!r}): {name} must be a number > 0, "
                                    f"received {value!r}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise RegistryError(f"on_timer({topic!r}): retry must be a RetryPolicy, "
                                f"received {retry!r}")
        self._timer_topics[topic] = TimerTopic(
            topic=topic, handler=handler, concurrency=concurrency,
            lease_seconds=float(lease_seconds), retry=retry or RetryPolicy(max_retries=3),
            timeout_seconds=timeout_seconds, plugin=self.current_plugin)
        self._changed()

    def add_action(self, name: str, fn: ActionFn, *, params: type[BaseModel] | None = None,
                   description: str = "") -> None:
        """Offer rules the action `name` (`plugin.action`): `async fn(call: ActionCall)`.

        `params`, a pydantic model, validates the step's parameters (after its templates
        are rendered); a rule naming an action no plugin offers is refused at load.
        """
        if not isinstance(name, str) or not ACTION_NAME.match(name):
            raise RegistryError(f"add_action: name {name!r:.80} must be dotted lower-case "
                                f"words, e.g. 'health.pause_check'")
        if name in self._actions:
            raise DuplicateRegistration(
                f"action {name!r} added by plugin {self.current_plugin!r} is already added "
                f"by plugin {self._actions[name].plugin!r}: expected unique action names")
        if not callable(fn):
            raise RegistryError(f"add_action({name!r}): fn must be an async callable, "
                                f"received {fn!r}")
        if params is not None and not (isinstance(params, type)
                                       and issubclass(params, BaseModel)):
            raise RegistryError(f"add_action({name!r}): params must be a pydantic model "
                                f"class, received {params!r}")
        self._actions[name] = ActionSpec(name=name, fn=fn, params=params,
                                         description=description, plugin=self.current_plugin)

    def add_hookspecs(self, specs: ModuleType | type) -> None:
        """Add a plugin's own hook specs (a module or class of `hookspec` functions).

        Lets a plugin offer extension points to other plugins, e.g. the health plugin's
        check strategies. Implementations are validated once every plugin registered.
        """
        if self.plugin_manager is None:
            raise RegistryError("add_hookspecs is only available during reactive_register")
        self.plugin_manager.add_hookspecs(specs)

    def add_config_section(
        self, key: str, model: type[BaseModel], apply: SectionApply, *, order: int = 100,
        identity: Sequence[str] = (), prune: SectionPrune | None = None,
    ) -> None:
        """Accept top-level `key` in config files: a list of `model` items.

        `apply(tx, host, items) -> [lines describing what changed]` runs inside the one
        transaction of `reactive apply`; it must be idempotent (unchanged items change
        nothing) and may raise `ConfigItemError(index, message)`. Sections apply in
        ascending `order` (systems before dependencies before checks, …). `identity`
        names the fields that identify an item: two items of a file with the same
        values are refused, naming both.

        `prune(tx, host, items) -> [lines]` (optional) runs for `reactive apply --prune`
        after every section applied, in the same transaction: it removes what the
        section holds that `items` — every item of the section the applied files
        declare, possibly none — no longer declares, and reports each removal.
        """
        if not isinstance(key, str) or not key.strip():
            raise RegistryError(
                f"add_config_section: key must be a non-empty string, received {key!r}")
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise RegistryError(
                f"add_config_section({key!r}): model must be a pydantic BaseModel subclass, "
                f"received {model!r}"
            )
        if key in self._config_sections:
            raise DuplicateRegistration(
                f"config section {key!r} added by plugin {self.current_plugin!r} is already "
                f"added by plugin {self._config_sections[key].plugin!r}"
            )
        if prune is not None and not callable(prune):
            raise RegistryError(
                f"add_config_section({key!r}): prune must be a function (tx, host, items) -> "
                f"[lines], received {prune!r}")
        missing = [name for name in identity if name not in model.model_fields]
        if missing:
            raise RegistryError(
                f"add_config_section({key!r}): identity names {', '.join(missing)}, which "
                f"{model.__name__} has no field for: expected some of "
                f"{', '.join(model.model_fields)}"
            )
        self._config_sections[key] = ConfigSection(
            key=key, model=model, apply=apply, order=order, plugin=self.current_plugin,
            identity=tuple(identity), prune=prune,
        )

    # -- lookups --------------------------------------------------------------------

    @property
    def metadatas(self) -> tuple[MetaData, ...]:
        """Every plugin MetaData, in the order added."""
        return tuple(self._metadatas)

    @property
    def histories(self) -> tuple[History, ...]:
        """The plugins' version histories, in the order added (plugin order)."""
        return tuple(self._histories.values())

    @property
    def unversioned_metadatas(self) -> tuple[MetaData, ...]:
        """Plugin MetaData without a history: created if absent, never altered."""
        versioned = [h.metadata for h in self._histories.values()]
        return tuple(md for md in self._metadatas if not any(md is v for v in versioned))

    @property
    def config_sections(self) -> Mapping[str, ConfigSection]:
        """Config file sections by key."""
        return self._config_sections

    @property
    def kinds(self) -> Mapping[str, EntityKind]:
        """Declared kinds by name."""
        return self._kinds

    @property
    def jobs(self) -> Mapping[str, Job]:
        """Declared jobs by name."""
        return self._jobs

    @property
    def timer_topics(self) -> Mapping[str, TimerTopic]:
        """Timer topics with a handler on this instance, by topic."""
        return self._timer_topics

    @property
    def actions(self) -> Mapping[str, ActionSpec]:
        """Actions plugins offer to rules, by name."""
        return self._actions

    @property
    def declarations(self) -> Mapping[str, NonReactiveDeclaration]:
        """Non-reactive table declarations by table name."""
        return self._declarations

    @property
    def table_owners(self) -> Mapping[str, str | None]:
        """Which plugin added each plugin table."""
        return self._table_owner

    def kind(self, kind: str) -> EntityKind:
        """The declared kind named `kind`, or `UnknownEntityKind`."""
        try:
            return self._kinds[kind]
        except KeyError:
            known = ", ".join(sorted(self._kinds)) or "none"
            raise UnknownEntityKind(
                f"unknown entity kind {kind!r}: expected one of the declared kinds ({known})"
            ) from None

    def subscriptions(self, kind: str | None = None) -> list[Subscription]:
        """Current subscriptions, optionally only those of `kind`."""
        return [s for s in self._subscriptions if kind is None or s.kind == kind]

    def work_queue_groups(self, kind: str) -> tuple[str, ...]:
        """The work-queue groups subscribed to `kind` (one delivery row each per change)."""
        return self._groups_of.get(kind, ())

    def work_queue_handler(self, group: str, kind: str) -> Subscription | None:
        """The subscription that handles `kind` for work-queue `group` here, if any."""
        return self._handler_of.get((group, kind))

    def local_routes(self) -> list[tuple[str, str]]:
        """The (work-queue group, kind) pairs this instance has handlers for."""
        return list(self._routes)

    @property
    def has_broadcast(self) -> bool:
        """True when some broadcast subscription exists on this instance."""
        return self._broadcast_count > 0

    @property
    def has_work_queue(self) -> bool:
        """True when this instance handles some work-queue group."""
        return self._work_queue_count > 0

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener` whenever subscriptions change (the dispatcher re-reads groups)."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        self._broadcast_count = sum(isinstance(s.delivery, Broadcast) for s in self._subscriptions)
        self._work_queue_count = len(self._subscriptions) - self._broadcast_count
        groups: dict[str, list[str]] = {}
        self._handler_of = {}
        for sub in self._subscriptions:
            if isinstance(sub.delivery, WorkQueue):
                self._handler_of.setdefault((sub.delivery.group, sub.kind), sub)
                if sub.delivery.group not in groups.setdefault(sub.kind, []):
                    groups[sub.kind].append(sub.delivery.group)
        self._groups_of = {kind: tuple(names) for kind, names in groups.items()}
        self._routes = tuple(sorted(self._handler_of))
        for listener in self._listeners:
            listener()

    # -- derivation -----------------------------------------------------------------

    @property
    def deriver_kinds(self) -> frozenset[str]:
        """Kinds with at least one change deriver (where trigger ids come from)."""
        return frozenset(self._derivations)

    def derive_triggers(self, change: EntityChange) -> list[str]:
        """Union of every deriver's trigger ids for `change`, de-duplicated in order.

        A deriver that raises is logged and skipped; the others still count.
        """
        derivation = self._derivations.get(change.kind)
        if derivation is None:
            return []
        seen: dict[str, None] = {}
        for derive in derivation.derivers:
            try:
                triggers = derive(change)
            except Exception:  # one deriver must not hide the others
                logger.exception(
                    "deriver %s failed for %s:%s (change %s)",
                    _name(derive), change.kind, change.id, change.change_id,
                )
                continue
            for trigger in triggers or ():
                seen.setdefault(trigger, None)
        return list(seen)

    def trigger_payload(self, change: EntityChange) -> dict[str, Any]:
        """The automation payload of `change`: the kind's mapper, else the default form."""
        derivation = self._derivations.get(change.kind)
        if derivation is not None and derivation.payload is not None:
            return derivation.payload(change)
        return {
            "kind": change.kind,
            "id": change.id,
            "prev": change.prev,
            "next": change.next,
            "delta": change.delta,
            "changed_fields": list(change.changed_fields),
            **(change.next or {}),
        }

    def finalize(self) -> None:
        """Check cross-plugin references once every plugin registered."""
        for kind in self._derivations:
            if kind not in self._kinds:
                logger.warning("a change deriver is registered for kind %r that no plugin "
                               "defines; it will never run", kind)
        for sub in self._subscriptions:
            if sub.kind not in self._kinds:
                logger.warning("subscription %s is for kind %r that no plugin defines; it "
                               "will never run", sub.name, sub.kind)


def _name(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
