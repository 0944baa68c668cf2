"""The `Host`: loads plugins, owns the database, the workers and their task group."""

from __future__ import annotations

import inspect
import json
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import pluggy
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection, func, select
from sqlalchemy import inspect as sa_inspect

from ._changes import EntityChange
from ._db import Database
from ._delivery import (
    BroadcastFeed,
    DeliveryRow,
    Dispatcher,
    DispatchSettings,
    list_deliveries,
    pending_count,
    register_routes,
    release_leases,
    replay_dead,
)
from ._entities import EntityHandle, Runtime, as_utc, row_to_change
from ._errors import ConfigError, ReactiveCoreError
from ._jobs import Scheduler, retention_job
from ._plugins import make_plugin_manager, plugin_names, run_register
from ._registry import Registry
from ._schema import entity_changes, entity_transitions
from ._schema import metadata as core_metadata

logger = logging.getLogger("reactive_core.host")


class HostConfig(BaseModel):
    """Tunables of a host; each can also be set as `REACTIVE_<NAME>` in the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retention_days: float = Field(30.0, gt=0, description="age after which logs are pruned")
    lease_seconds: float = Field(30.0, gt=0, description="work-queue lease length")
    retry_base_seconds: float = Field(1.0, ge=0, description="first retry backoff")
    retry_max_seconds: float = Field(300.0, ge=0, description="backoff ceiling")
    poll_interval: float = Field(1.0, gt=0, description="backstop poll of feed and queue")
    dispatch_concurrency: int = Field(16, ge=1, description="handlers running at once")
    dispatch_batch_delay: float = Field(
        0.01, ge=0, description="seconds a woken dispatcher waits to gather a burst into one round")
    pool_size: int = Field(5, ge=1, description="PostgreSQL connections kept (as many again may overflow)")
    run_jobs: bool = Field(True, description="run scheduled jobs on this instance")
    workers: bool = Field(
        True, description="run the broadcast feed, the work-queue dispatcher and jobs here; "
                          "False for a client that only reads and writes (CLI commands)")
    plugins: dict[str, Any] = Field(default_factory=dict, description="per-plugin settings")

    @classmethod
    def load(cls, config: HostConfig | Mapping[str, Any] | None) -> HostConfig:
        """Merge environment variables and `config`, with a clear error on bad values."""
        if isinstance(config, HostConfig):
            return config
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            env = os.environ.get(f"REACTIVE_{name.upper()}")
            if env is not None and name != "plugins":  # REACTIVE_PLUGINS is the allow-list
                values[name] = env
        plugin_settings = os.environ.get("REACTIVE_PLUGIN_SETTINGS")
        if plugin_settings:
            try:
                values["plugins"] = json.loads(plugin_settings)
            except ValueError as exc:
                raise ConfigError(
                    f"REACTIVE_PLUGIN_SETTINGS is not valid JSON ({exc}): expected an object "
                    f'of per-plugin settings such as {{"health": {{"max_concurrency": 8}}}}'
                ) from exc
        values.update(config or {})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (received {e.get('input')!r})"
                for e in exc.errors()
            )
            raise ConfigError(f"host configuration is invalid: {problems}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """One row of the per-field transition log."""

    id: int
    change_seq: int
    kind: str
    entity_id: str
    field: str
    from_value: str | None
    to_value: str | None
    transitioned_at: datetime


class Host:
    """Loads plugins and runs them: `async with Host(...) as host:`."""

    def __init__(
        self,
        *,
        database_url: str | None = None,
        plugins: Sequence[object] = (),
        entry_points: bool = True,
        config: HostConfig | Mapping[str, Any] | None = None,
        instance_id: str | None = None,
    ) -> None:
        self.config = HostConfig.load(config)
        self.instance_id = instance_id or f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._plugins = list(plugins)
        self._entry_points = entry_points
        self.db = Database(database_url, pool_size=self.config.pool_size)
        self.registry = Registry()
        self.registry.bind_host(self)
        self.pm: pluggy.PluginManager | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._started = False
        self._handles: dict[str, EntityHandle[Any]] = {}
        self._runtime = Runtime(db=self.db, registry=self.registry, wake=self._wake)
        self.feed = BroadcastFeed(db=self.db, registry=self.registry,
                                  poll_interval=self.config.poll_interval)
        self.dispatcher = Dispatcher(
            db=self.db, registry=self.registry, owner=self.instance_id,
            settings=DispatchSettings(
                lease_seconds=self.config.lease_seconds,
                retry_base_seconds=self.config.retry_base_seconds,
                retry_max_seconds=self.config.retry_max_seconds,
                poll_interval=self.config.poll_interval,
                concurrency=self.config.dispatch_concurrency,
                batch_delay=self.config.dispatch_batch_delay,
            ),
        )
        self.registry.add_listener(self._subscriptions_changed)

    # -- lifecycle ------------------------------------------------------------------

    def load_plugins(self) -> None:
        """Load plugins and collect their declarations (done by `__aenter__` if needed)."""
        if self.pm is not None:
            return
        self.pm = make_plugin_manager(self._plugins, entry_points=self._entry_points)
        self.registry.add_job(
            "reactive.retention", retention_job(timedelta(days=self.config.retention_days)),
            every=3600,
        )
        run_register(self.pm, self.registry)

    @property
    def plugin_names(self) -> list[str]:
        """Names of the loaded plugins."""
        return plugin_names(self.pm) if self.pm is not None else []

    async def __aenter__(self) -> Host:
        self.load_plugins()
        await self.db.create_all(core_metadata, *self.registry.metadatas)
        self._tg_cm = anyio.create_task_group()
        if self.config.workers:
            await self.db.run(register_routes, self.registry.local_routes())
            await self.feed.start_position()
        self._task_group = await self._tg_cm.__aenter__()
        if self.config.workers:
            self._task_group.start_soon(self.feed.run)
            self._task_group.start_soon(self.dispatcher.run, self._task_group)
            if self.db.dialect == "postgresql":
                self._task_group.start_soon(self._listen)
        if self.config.workers and self.config.run_jobs:
            self._task_group.start_soon(Scheduler(host=self, instance=self.instance_id).run)
        self._started = True
        try:
            await self._call_hook("reactive_startup")
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if not self._started:
            return None
        self._started = False
        try:
            with anyio.CancelScope(shield=True):
                try:
                    await self._call_hook("reactive_shutdown")
                except Exception:  # noqa: BLE001 - shutdown goes on
                    logger.exception("a plugin's reactive_shutdown failed")
        finally:
            assert self._task_group is not None
            self._task_group.cancel_scope.cancel()
            await self._tg_cm.__aexit__(None, None, None)
            with anyio.CancelScope(shield=True):
                try:
                    await self.dispatcher.flush()
                    await self.db.run(release_leases, self.instance_id)
                except Exception:  # noqa: BLE001
                    logger.exception("could not release leases on shutdown")
                await self.db.close()
        return None

    async def _call_hook(self, name: str) -> None:
        assert self.pm is not None
        for result in getattr(self.pm.hook, name)(host=self):
            if inspect.isawaitable(result):
                await result

    @property
    def task_group(self) -> anyio.abc.TaskGroup:
        """The host's task group: background tasks of plugins belong here."""
        if self._task_group is None:
            raise ReactiveCoreError("the host is not running: use `async with Host(...)`")
        return self._task_group

    def _subscriptions_changed(self) -> None:
        if self._started and self._task_group is not None and self.config.workers:
            self._task_group.start_soon(self._record_routes)
        self.dispatcher.wake()

    async def _record_routes(self) -> None:
        try:
            await self.db.run(register_routes, self.registry.local_routes())
        except Exception:  # noqa: BLE001 - local writes still enqueue local groups
            logger.exception("recording work-queue routes failed")

    def _wake(self) -> None:
        # Called after every local commit: only wake workers that have work here.
        if self.registry.has_broadcast:
            self.feed.wake()
        if self.registry.has_work_queue:
            self.dispatcher.wake()

    async def _listen(self) -> None:
        """Wake the feed and the dispatcher on NOTIFY from any instance (PostgreSQL)."""
        import psycopg

        url = self.db.engine.url.set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
                async with conn:
                    await conn.execute("LISTEN reactive_changes")
                    self._wake()  # anything committed while we were not listening
                    async for _ in conn.notifies():
                        self._wake()
            except Exception:  # noqa: BLE001 - polling covers the gap; reconnect
                logger.warning("LISTEN connection lost; polling until it is back", exc_info=True)
                await anyio.sleep(self.config.poll_interval)

    # -- entities -------------------------------------------------------------------

    def entity(self, kind: str) -> EntityHandle[Any]:
        """The handle of `kind`; `UnknownEntityKind` when no plugin defined it."""
        handle = self._handles.get(kind)
        if handle is None:
            if self.pm is None:
                self.load_plugins()
            handle = EntityHandle(self.registry.kind(kind), self._runtime)
            self._handles[kind] = handle
        return handle

    async def changes(
        self, *, kind: str | None = None, entity_id: str | None = None,
        after_seq: int = 0, limit: int | None = None,
    ) -> list[EntityChange]:
        """Logged changes by seq, optionally of one kind / entity, after `after_seq`."""
        c = entity_changes

        def read(tx: Connection) -> list[EntityChange]:
            query = select(c).where(c.c.seq > after_seq).order_by(c.c.seq)
            if kind is not None:
                query = query.where(c.c.kind == kind)
            if entity_id is not None:
                query = query.where(c.c.entity_id == entity_id)
            if limit is not None:
                query = query.limit(limit)
            return [row_to_change(r) for r in tx.execute(query).all()]

        return await self.db.read(read)

    async def transitions(
        self, *, kind: str | None = None, entity_id: str | None = None,
        field: str | None = None, limit: int | None = None,
    ) -> list[Transition]:
        """Per-field transition rows, oldest first."""
        t = entity_transitions

        def read(tx: Connection) -> list[Transition]:
            query = select(t).order_by(t.c.transitioned_at, t.c.id)
            for column, value in ((t.c.kind, kind), (t.c.entity_id, entity_id), (t.c.field, field)):
                if value is not None:
                    query = query.where(column == value)
            if limit is not None:
                query = query.order_by(None).order_by(t.c.id.desc()).limit(limit)
            rows = [Transition(
                id=int(r.id), change_seq=int(r.change_seq), kind=r.kind, entity_id=r.entity_id,
                field=r.field, from_value=r.from_value, to_value=r.to_value,
                transitioned_at=as_utc(r.transitioned_at),  # type: ignore[arg-type]
            ) for r in tx.execute(query).all()]
            return sorted(rows, key=lambda r: (r.transitioned_at, r.id))

        return await self.db.read(read)

    async def deliveries(
        self, *, dead: bool = False, status: str | None = None, group: str | None = None,
        limit: int = 100,
    ) -> list[DeliveryRow]:
        """Work-queue deliveries newest first; `dead=True` lists the dead letters."""
        return await self.db.read(
            lambda tx: list_deliveries(tx, status="dead" if dead else status, group=group,
                                       limit=limit)
        )

    async def replay(self, delivery_id: int) -> DeliveryRow:
        """Re-queue a dead-lettered delivery; `DeliveryNotFound` if it is not dead."""
        row = await self.db.run(replay_dead, delivery_id)
        self.dispatcher.wake()
        return row

    def derive_triggers(self, change: EntityChange) -> list[str]:
        """The automation trigger ids every deriver of the change's kind produces."""
        return self.registry.derive_triggers(change)

    def trigger_payload(self, change: EntityChange) -> dict[str, Any]:
        """The automation payload of `change` (the kind's mapper or the default form)."""
        return self.registry.trigger_payload(change)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every committed change was broadcast here and every delivery this
        instance handles is finished (done or dead), including cascades they cause."""
        if not self.config.workers:
            raise ReactiveCoreError(
                "drain() needs a host that runs workers: this one was configured with "
                "workers=False"
            )
        with anyio.fail_after(timeout):
            while True:
                head = await self.db.read(_head_seq)
                await self.feed.catch_up()
                routes = self.registry.local_routes()
                pending = await self.db.read(pending_count, routes)
                if pending == 0 and self.dispatcher.in_flight == 0:
                    if await self.db.read(_head_seq) == head:
                        return
                    continue
                self.dispatcher.wake()
                await anyio.sleep(0.01)

    async def table_names(self) -> set[str]:
        """Tables that exist in the database."""
        def names(tx: Connection) -> set[str]:
            return set(sa_inspect(tx).get_table_names())
        return await self.db.read(names)


def _head_seq(tx: Connection) -> int:
    return int(tx.execute(select(func.coalesce(func.max(entity_changes.c.seq), 0))).scalar_one())
