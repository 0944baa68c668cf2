"""The `Host`: loads plugins, owns the database, the workers and their task group."""

from __future__ import annotations

import functools
import inspect
import logging
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import anyio
import anyio.abc
import pluggy
from pydantic import BaseModel
from sqlalchemy import Connection, create_engine
from sqlalchemy import inspect as sa_inspect

from .._clock import Clock, utcnow
from .._delivery.dispatcher import Dispatcher, DispatchSettings
from .._delivery.feed import BroadcastFeed
from .._delivery.policy import DeliveryStatus
from .._delivery.queue import DeliveryRow, QueueStatus, WorkQueueStore
from .._entities.changes import EntityChange
from .._entities.handle import EntityHandle
from .._entities.logs import Transition, head_seq, prune_logs, read_changes, read_transitions
from .._entities.write import WritePath
from .._errors import PluginLoadError, ReactiveCoreError
from .._store.backend import lock_key
from .._store.database import Database
from .._store.migrate import CORE_HISTORY, require_current, upgrade_in
from .._supervise import run_supervised
from .._timers.jobs import JOB_RETRY, arm_jobs_in, job_handler, job_topic
from .._timers.runner import TimerRunner
from .._timers.timers import Timers, TimerStore
from .config import HostConfig
from .plugins import make_plugin_manager, plugin_names, run_register
from .registry import Registry

logger = logging.getLogger("reactive_core.host")

T = TypeVar("T")
P = ParamSpec("P")
M = TypeVar("M", bound=BaseModel)

RETENTION_JOB = "reactive.retention"


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
        clock: Clock | None = None,
    ) -> None:
        self.config = HostConfig.load(config)
        self.instance_id = (instance_id or
                            f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        self.clock: Clock = clock or utcnow
        self._plugins = list(plugins)
        self._entry_points = entry_points
        self._db = db = Database(database_url, pool_size=self.config.pool_size,
                                 busy_timeout=self.config.busy_timeout_seconds)
        backend = db.backend
        self.registry = Registry()
        self.pm: pluggy.PluginManager | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._loops: anyio.CancelScope | None = None
        self._started = False
        self._handles: dict[str, EntityHandle[Any]] = {}
        self._queue = WorkQueueStore(backend, self.clock)
        self._writes = WritePath(backend=backend, queue=self._queue, registry=self.registry,
                                 clock=self.clock, wake=self._wake)
        cfg = self.config
        self.feed = BroadcastFeed(db=db, registry=self.registry, poll_interval=cfg.poll_interval,
                                  handler_timeout=cfg.broadcast_timeout_seconds)
        self.dispatcher = Dispatcher(
            db=db, queue=self._queue, registry=self.registry, owner=self.instance_id,
            settings=DispatchSettings(
                lease_seconds=cfg.lease_seconds, retry_base_seconds=cfg.retry_base_seconds,
                retry_max_seconds=cfg.retry_max_seconds, poll_interval=cfg.poll_interval,
                concurrency=cfg.dispatch_concurrency, handler_timeout=cfg.handler_timeout_seconds,
                batch_delay=cfg.dispatch_batch_delay,
            ),
        )
        self._timer_store = TimerStore(backend, self.clock)
        self.timer_runner = TimerRunner(
            db=db, store=self._timer_store, topics=lambda: dict(self.registry.timer_topics),
            owner=self.instance_id, poll_interval=cfg.poll_interval,
            batch_delay=cfg.dispatch_batch_delay)
        self.timers = Timers(db=db, backend=backend, clock=self.clock,
                             wake=self.timer_runner.wake)
        self.registry.add_listener(self._subscriptions_changed)
        self.abandoned: list[str] = []
        """What the last stop had to cut short after `shutdown_timeout_seconds` (described)."""

    # -- what plugins use -----------------------------------------------------------

    @property
    def database_url(self) -> str:
        """The database this host uses (SQLAlchemy URL)."""
        return self._db.url

    @property
    def dialect(self) -> str:
        """`"sqlite"` or `"postgresql"`."""
        return self._db.dialect

    @property
    def hook(self) -> Any:
        """The plugin manager's hook relay, to call hooks plugins add (`add_hookspecs`)."""
        return self._plugin_manager().hook

    async def run(self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args,
                  **kwargs: P.kwargs) -> T:
        """Run the write unit of work `fn(tx, *args, **kwargs)` in one transaction.

        `fn` is synchronous and runs off the event loop; `tx` is a SQLAlchemy
        `Connection` inside the transaction. It commits when `fn` returns and rolls back
        when it raises (the error reaches the caller).
        """
        if kwargs:
            return await self._db.run(functools.partial(fn, **kwargs), *args)
        return await self._db.run(fn, *args)

    async def read(self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args,
                   **kwargs: P.kwargs) -> T:
        """Run the read-only unit of work `fn(tx, *args, **kwargs)`; may run beside others."""
        if kwargs:
            return await self._db.read(functools.partial(fn, **kwargs), *args)
        return await self._db.read(fn, *args)

    def lock_in(self, tx: Connection, *name: str) -> None:
        """Take the cluster-wide lock called `name` inside `tx`, held until `tx` ends.

        E.g. `host.lock_in(tx, "catalog", "edges")`. On PostgreSQL a transaction-scoped
        advisory lock; on SQLite the single writer already serializes writes.
        """
        self._db.backend.lock(tx, lock_key(*name))

    def plugin_settings(self, name: str, model: type[M]) -> M:
        """Plugin `name`'s settings (`config.plugins[name]`) as `model`, or `ConfigError`."""
        return self.config.plugin_settings(name, model)

    # -- lifecycle ------------------------------------------------------------------

    def _plugin_manager(self) -> pluggy.PluginManager:
        self.load_plugins()
        assert self.pm is not None
        return self.pm

    def load_plugins(self) -> None:
        """Load plugins and collect their declarations (done by `__aenter__` if needed)."""
        if self.pm is not None:
            return
        self.registry.add_job(RETENTION_JOB, _retention, every=3600)
        self.pm = make_plugin_manager(self._plugins, entry_points=self._entry_points)
        run_register(self.pm, self.registry, self)
        if self.config.workers and self.config.run_jobs:
            for job in self.registry.jobs.values():
                self.registry.on_timer(job_topic(job.name), job_handler(job, self),
                                       concurrency=1, lease_seconds=self.config.lease_seconds,
                                       retry=JOB_RETRY)

    @property
    def plugin_names(self) -> list[str]:
        """Names of the loaded plugins."""
        return plugin_names(self.pm) if self.pm is not None else []

    def plugin(self, name: str) -> object:
        """The plugin object registered as `name` in this host (application code that
        needs a plugin's service; plugins themselves get what they need handed in)."""
        plugin = self._plugin_manager().get_plugin(name)
        if plugin is None:
            raise PluginLoadError(f"no plugin named {name!r} is loaded in this host: expected "
                                  f"one of {', '.join(self.plugin_names) or 'none'}")
        return plugin

    async def __aenter__(self) -> Host:
        self.load_plugins()
        try:
            await self._prepare_schema()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._db.close()
            raise
        workers = self.config.workers
        if workers:
            await self.run(self._queue.record_routes, self.registry.local_routes())
            await self.feed.start_position()
            if self.config.run_jobs:
                jobs = list(self.registry.jobs.values())
                await self.run(lambda tx: arm_jobs_in(tx, self.timers, jobs, self.clock()))
        self._tg_cm = anyio.create_task_group()
        self._task_group = await self._tg_cm.__aenter__()
        if workers:
            await self._task_group.start(self._run_loops, self._task_group)
        self._started = True
        try:
            await self._call_hook("reactive_startup")
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _prepare_schema(self) -> None:
        """Apply pending migrations (each component's history, then `create_all` for
        plugins without one) under the cluster-wide schema lock; with `migrate=False`,
        refuse a database that is behind instead."""
        histories = [CORE_HISTORY, *self.registry.histories]
        unversioned = self.registry.unversioned_metadatas
        if not self.config.migrate:
            await self.read(require_current, histories, unversioned)
            return
        report = await self.run(upgrade_in, histories, unversioned)
        for step in report.upgraded:
            logger.info("schema of %s upgraded from %s to %s%s", step.component,
                        step.from_revision or "nothing", step.to_revision,
                        " (tables made before versioning, stamped)" if step.stamped else "")

    async def _run_loops(self, handlers: anyio.abc.TaskGroup, *,
                         task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                         ) -> None:
        """The background loops, in a scope of their own so stopping can end them first."""
        with anyio.CancelScope() as scope:
            self._loops = scope
            async with anyio.create_task_group() as loops:
                loops.start_soon(self.feed.run)
                loops.start_soon(self.dispatcher.run, handlers)
                loops.start_soon(self.timer_runner.run, handlers)
                url = self._db.url
                loops.start_soon(run_supervised, "LISTEN connection",
                                 lambda: self._db.backend.listen(url, self._wake_all))
                task_status.started()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if not self._started:
            return None
        self._started = False
        assert self._task_group is not None
        with anyio.CancelScope(shield=True):
            if self._loops is not None:
                self._loops.cancel()  # claim nothing more
            with anyio.move_on_after(self.config.shutdown_timeout_seconds):
                await self.dispatcher.wait_idle()
                await self.timer_runner.wait_idle()
            self.abandoned = [
                *(f"delivery {d.id} ({d.group} {d.kind}:{d.entity_id})"
                  for d in self.dispatcher.running),
                *(f"timer {t.topic}:{t.key}" for t in self.timer_runner.firing)]
            if self.abandoned:
                logger.error("stopping after %gs with work still running, cancelled: %s",
                             self.config.shutdown_timeout_seconds, ", ".join(self.abandoned))
            try:
                await self._call_hook("reactive_shutdown")
            except Exception:  # stopping goes on
                logger.exception("a plugin's reactive_shutdown failed")
        try:
            self._task_group.cancel_scope.cancel()
            await self._tg_cm.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self.dispatcher.flush()
                    await self.timer_runner.flush()
                    await self.run(self._release_leases)
                except Exception:  # the leases expire on their own
                    logger.exception("could not release leases on shutdown")
                await self._db.close()
        return None

    async def close(self) -> None:
        """Close the database of a host that was never started (CLI inspection)."""
        if self._started:
            raise ReactiveCoreError("close() is for a host that is not running: this one "
                                    "stops when its `async with` block ends")
        await self._db.close()

    def _release_leases(self, tx: Connection) -> None:
        self._queue.release(tx, self.instance_id)
        self._timer_store.release(tx, self.instance_id)

    def release_leases_now(self) -> None:
        """Hand back this instance's leases from any thread, on a connection of its own.

        For a process that must exit while a handler it cannot cancel still runs (a
        thread stuck in a call): other instances take the work over at once instead of
        waiting for the leases to expire. `reactive serve` calls it when its shutdown
        deadline passes or a second signal arrives.
        """
        engine = create_engine(self._db.url)
        try:
            with engine.begin() as tx:
                self._release_leases(tx)
        finally:
            engine.dispose()

    async def _call_hook(self, name: str) -> None:
        assert self.pm is not None
        pending = list(getattr(self.pm.hook, name)(host=self))
        try:
            while pending:
                result = pending.pop(0)
                if inspect.isawaitable(result):
                    await result
        finally:
            for rest in pending:  # never started (one before them failed): close quietly
                if inspect.iscoroutine(rest):
                    rest.close()

    @property
    def running(self) -> bool:
        """True between the end of start-up and the beginning of stopping, with workers."""
        return self._started and self.config.workers

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
        self.timer_runner.wake()

    async def _record_routes(self) -> None:
        try:
            await self.run(self._queue.record_routes, self.registry.local_routes())
        except Exception:  # local writes still enqueue local groups
            logger.exception("recording work-queue routes failed")

    def _wake(self) -> None:
        # Called after every local commit: only wake workers that have work here.
        if self.registry.has_broadcast:
            self.feed.wake()
        if self.registry.has_work_queue:
            self.dispatcher.wake()

    def _wake_all(self) -> None:
        self._wake()
        self.timer_runner.wake()

    # -- entities -------------------------------------------------------------------

    def entity(self, kind: str) -> EntityHandle[Any]:
        """The handle of `kind`; `UnknownEntityKind` when no plugin defined it."""
        handle = self._handles.get(kind)
        if handle is None:
            handle = EntityHandle(self.registry.kind(kind), db=self._db,
                                  write_path=self._writes, clock=self.clock)
            self._handles[kind] = handle
        return handle

    async def changes(
        self, *, kind: str | None = None, entity_id: str | None = None,
        after_seq: int = 0, before_seq: int | None = None, limit: int | None = None,
        newest: bool = False,
    ) -> list[EntityChange]:
        """Logged changes by seq, filtered, one page read in SQL: with `limit`, the
        oldest `limit` above `after_seq`, or (with `newest` or `before_seq`) the newest
        `limit` below `before_seq`."""
        return await self.read(functools.partial(
            read_changes, kind=kind, entity_id=entity_id, after_seq=after_seq,
            before_seq=before_seq, limit=limit, newest=newest))

    async def transitions(
        self, *, kind: str | None = None, entity_id: str | None = None,
        field: str | None = None, limit: int | None = None, before_id: int | None = None,
        after_id: int | None = None,
    ) -> list[Transition]:
        """Per-field transition rows, oldest first; with `limit`, the newest `limit` (below
        `before_id`), or with `after_id` the oldest `limit` above it."""
        return await self.read(functools.partial(
            read_transitions, kind=kind, entity_id=entity_id, field=field, limit=limit,
            before_id=before_id, after_id=after_id))

    async def deliveries(
        self, *, dead: bool = False, status: DeliveryStatus | str | None = None,
        group: str | None = None, limit: int = 100, before: int | None = None,
        after: int | None = None,
    ) -> list[DeliveryRow]:
        """Work-queue deliveries newest first, one page: the newest `limit` (ids below
        `before`), or with `after` the next `limit` ids above it; `dead=True` lists the
        dead letters."""
        chosen = DeliveryStatus.DEAD if dead else status
        return await self.read(functools.partial(
            self._queue.list, status=chosen, group=group, limit=limit, before=before,
            after=after))

    async def work_queue_status(self) -> QueueStatus:
        """Every work-queue route with its backlog and when it was last seen, and the
        numbers of pending and dead deliveries."""
        return await self.read(self._queue.status)

    async def replay(self, delivery_id: int) -> DeliveryRow:
        """Re-queue a dead-lettered delivery; `DeliveryNotFound` if it is not dead."""
        row = await self.run(self._queue.replay, delivery_id)
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
                head = await self.read(head_seq)
                await self.feed.catch_up()
                routes = self.registry.local_routes()
                pending = await self.read(self._queue.pending_count, routes)
                if pending == 0 and self.dispatcher.in_flight == 0:
                    if await self.read(head_seq) == head:
                        return
                    continue
                self.dispatcher.wake()
                await anyio.sleep(0.01)

    async def table_names(self) -> set[str]:
        """Tables that exist in the database."""
        def names(tx: Connection) -> set[str]:
            return set(sa_inspect(tx).get_table_names())
        return await self.read(names)

    async def prune(self, *, older_than: timedelta | None = None) -> dict[str, int]:
        """Prune the logs and finished deliveries older than `older_than` (default: the
        configured retention) now; what the hourly retention job does."""
        cutoff = self.clock() - (older_than or timedelta(days=self.config.retention_days))

        def unit(tx: Connection) -> dict[str, int]:
            counts = prune_logs(tx, older_than=cutoff,
                                keep_changes=self._queue.unfinished_changes())
            counts.update(self._queue.prune(tx, older_than=cutoff))
            return counts

        return await self.run(unit)


async def _retention(host: Host, slot: object) -> None:
    counts = await host.prune()
    logger.info("retention pruned %s", counts)
