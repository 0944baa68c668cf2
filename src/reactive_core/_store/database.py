"""Units of work: synchronous SQLAlchemy Core transactions run off the event loop.

Every database operation is a plain function `fn(tx, *args)` receiving a
`sqlalchemy.Connection` inside one transaction, executed in a worker thread: one
thread hop per unit of work. On SQLite all writes go through one writer connection;
concurrent writers are *group-committed*: whatever is queued while a transaction is
running forms the next batch, which shares one commit while a unit that fails rolls
back alone (`group_commit`). Readers use their own connections and run concurrently
(WAL). On PostgreSQL a few writer lanes group-commit the same way, side by side;
readers get pooled connections.

A group commit holds every lock its units took until the batch commits, so a unit
that locks many rows another batch may want (the work queue's rounds, the timers')
runs *apart* (`run_apart`): in a transaction of its own on PostgreSQL, where it can
neither wait behind nor hold up an unrelated unit of a batch.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from .._errors import ConfigError, DatabaseBusy
from .backend import Backend, Dialect, backend_for
from .checkpoint import WalCheckpointer
from .failures import BUSY, MAX_RETRIES, driver_closed, is_locked, is_lost, is_transient
from .group_commit import AFTER_COMMIT, GroupCommit, Job, Lane, run_callbacks, take_after_commit

logger = logging.getLogger("reactive_core.db")

T = TypeVar("T")

DEFAULT_DATABASE_URL = "sqlite:///./reactive.db"
_WAL_CHECKPOINT_PAGES = 10_000
"""SQLite's writer checkpoints the WAL itself once it holds this many pages (about 40 MB):
the backstop of the background checkpoints (`_store.checkpoint`)."""
_WAL_SIZE_LIMIT = 64 * 1024 * 1024
_WAL_SWITCH_PAUSE = 0.01
"""Seconds between two tries to put a database another connection is writing in WAL mode."""


def resolve_database_url(url: str | None) -> str:
    """The URL to use: the argument, else `REACTIVE_DATABASE_URL`, else SQLite in the cwd."""
    chosen = url or os.environ.get("REACTIVE_DATABASE_URL") or DEFAULT_DATABASE_URL
    if chosen.startswith("postgresql://") or chosen.startswith("postgres://"):
        chosen = "postgresql+psycopg://" + chosen.split("://", 1)[1]
    return chosen


class Database(GroupCommit):
    """Runs units of work against SQLite (embedded) or PostgreSQL (cluster)."""

    def __init__(self, url: str | None = None, *, pool_size: int = 10, echo: bool = False,
                 busy_timeout: float = 10.0, write_lanes: int = 4) -> None:
        self._busy_timeout_ms = max(int(busy_timeout * 1000), 0)
        self.url = resolve_database_url(url)
        try:
            parsed = make_url(self.url)
        except Exception as exc:  # SQLAlchemy raises several types here
            raise ConfigError(
                f"database URL {self.url!r} is not valid: expected e.g. "
                "'sqlite:///./reactive.db' or 'postgresql+psycopg://user@host/db'"
            ) from exc
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise ConfigError(
                f"database URL {self.url!r} names backend {backend!r}: expected sqlite or "
                "postgresql"
            )
        self.dialect: Dialect = "sqlite" if backend == "sqlite" else "postgresql"
        self.backend: Backend = backend_for(self.dialect)
        # SQLite has one writer; PostgreSQL a few, each group-committing its own batches
        # (and each holding a connection of its own beside the readers' pool_size).
        lanes = 1 if self.dialect == "sqlite" else max(write_lanes, 1)
        self._lanes = [Lane(i) for i in range(lanes)]
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database in ("", ":memory:") or database.startswith("file::memory:"):
                raise ConfigError(
                    f"database URL {self.url!r} is an in-memory SQLite database: "
                    "expected a file path such as 'sqlite:///./reactive.db'"
                )
            self.engine = self._sqlite_engine(immediate=True, echo=echo, single=True)
            self.read_engine = self._sqlite_engine(immediate=False, echo=echo, single=False)
            self._checkpointer: WalCheckpointer | None = WalCheckpointer(
                self.engine.raw_connection)
            self._limiter = anyio.CapacityLimiter(8)
        else:
            self._checkpointer = None
            self.engine = create_engine(
                # No ping per checkout (a round trip per unit of work): a unit that hits a
                # connection the server dropped is run again on a fresh one (_run_read,
                # _run_batch). Every connection is kept: an overflow connection closed
                # on return and opened again costs a server process each time. Each
                # writer lane keeps one more for itself.
                self.url, pool_size=pool_size + lanes, max_overflow=0, pool_pre_ping=False,
                echo=echo,
            )
            self.read_engine = self.engine
            self._limiter = anyio.CapacityLimiter(pool_size)

    def _sqlite_engine(self, *, immediate: bool, echo: bool, single: bool) -> Engine:
        # The writer keeps one connection for the life of the Database; readers get a
        # small pool. pysqlite's own transaction handling is disabled so that BEGIN and
        # SAVEPOINT are emitted exactly as SQLAlchemy asks.
        kwargs: dict[str, Any] = {"echo": echo, "connect_args": {"check_same_thread": False}}
        if single:
            kwargs["poolclass"] = NullPool
        engine = create_engine(self.url, **kwargs)
        begin_sql = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
            self._enable_wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            if immediate:
                # The writer's savepoints (one per unit of a group commit) keep the pages
                # they change in a statement journal: in memory, not in a temporary file.
                cur.execute("PRAGMA temp_store=MEMORY")
                # Checkpoint the WAL into the database every `_WAL_CHECKPOINT_PAGES`
                # pages instead of SQLite's 1,000: a checkpoint costs two fsyncs plus a
                # copy of each page changed since the last one, however often that page
                # was written, so rarer checkpoints copy hot pages (the tails of the
                # log's indexes) once instead of many times. The WAL file is cut back to
                # `_WAL_SIZE_LIMIT` bytes when it restarts after a long reader held it.
                cur.execute(f"PRAGMA wal_autocheckpoint={_WAL_CHECKPOINT_PAGES}")
                cur.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Straight to the driver: this runs once per unit of work, on the hot path.
            conn.connection.dbapi_connection.execute(begin_sql)  # type: ignore[union-attr]

        return engine

    def _enable_wal(self, cur: Any) -> None:
        """Put the database in WAL mode (a no-op once it is). Switching from the rollback
        journal takes an exclusive lock, and SQLite refuses it at once, without waiting
        for its busy timeout, while another connection holds the write lock (two
        processes opening a new database together): so it is tried again until the
        busy timeout has passed."""
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        while True:
            try:
                cur.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if not is_locked(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(_WAL_SWITCH_PAUSE)

    # -- units of work --------------------------------------------------------------

    async def run(self, fn: Callable[..., T], *args: Any, lock: int | None = None) -> T:
        """Run the write unit of work `fn(tx, *args)` in one transaction, off the event loop.

        `lock`: the advisory-lock key the unit takes first (the write path's entity
        lock, `Backend.entity_lock`). In a group commit on PostgreSQL it is taken in the
        same round trip as the unit's savepoint, and `held_lock(tx)` tells the unit so;
        taking it again is harmless (the lock is re-entrant).

        A SQLite database another writer keeps locked past the busy timeout raises
        `DatabaseBusy` (nothing was written; retry later).
        """
        try:
            return await self._run_grouped(fn, args, lock)
        except (OperationalError, sqlite3.OperationalError) as exc:
            if is_locked(exc):
                raise DatabaseBusy(BUSY) from exc
            raise

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run the read-only unit of work `fn(tx, *args)`; may run beside other readers."""
        try:
            return await anyio.to_thread.run_sync(self._run_read, fn, args,
                                                  limiter=self._limiter)
        except (OperationalError, sqlite3.OperationalError) as exc:
            if is_locked(exc):
                raise DatabaseBusy(BUSY) from exc
            raise

    async def run_apart(self, fn: Callable[..., T], *args: Any) -> T:
        """Run the write unit of work `fn(tx, *args)` in a transaction of its own.

        On PostgreSQL it is never group-committed with other units: whatever locks it
        takes are held only for its own statements, so it cannot join a lock cycle with
        the units of a batch (each waiting for a lock the other batch holds until it
        commits). Run again after a deadlock, a serialization failure or a dropped
        connection. On SQLite (one writer, no lock cycles) this is `run`.
        """
        if self.dialect == "sqlite":
            return await self.run(fn, *args)
        result, callbacks = await anyio.to_thread.run_sync(
            self._run_apart, fn, args, limiter=self._limiter)
        run_callbacks(callbacks)
        return result

    def _run_apart(self, fn: Callable[..., T], args: tuple[Any, ...],
                   ) -> tuple[T, list[Callable[[], None]]]:
        attempt = 0
        while True:
            attempt += 1
            committing = False
            with self.engine.connect() as conn:
                conn.info.pop(AFTER_COMMIT, None)
                try:
                    with conn.begin():
                        result = fn(conn, *args)
                        callbacks = take_after_commit(conn)
                        committing = True  # past here, whether it committed is unknown
                    return result, callbacks
                except BaseException as exc:
                    conn.info.pop(AFTER_COMMIT, None)
                    if not conn.invalidated and (is_lost(exc) or driver_closed(conn)):
                        conn.invalidate()
                    if committing or not (is_transient(exc) and attempt < MAX_RETRIES):
                        raise

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a write unit of work on the calling thread (CLI and scripts, not the loop)."""
        job = Job(fn, args)
        while True:
            self._run_batch(self._lanes[0], [job])
            if not job.retry:
                break
        if job.error is not None:
            raise job.error
        run_callbacks(job.callbacks)
        return job.result  # type: ignore[no-any-return]

    def _run_read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        for attempt in (1, 2):
            with self.read_engine.connect() as conn:
                try:
                    with conn.begin():
                        return fn(conn, *args)
                except DBAPIError as exc:
                    self._discard_after_failure(conn)
                    if exc.connection_invalidated and attempt == 1:
                        continue
                    raise
                except BaseException:
                    self._discard_after_failure(conn)
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        """Close every connection."""
        def close_all() -> None:
            if self._checkpointer is not None:
                self._checkpointer.close()
            for lane in self._lanes:
                if lane.thread is not None:
                    lane.queue.put(None)
                    lane.thread.join()
                    lane.thread = None
                with lane.lock:
                    if lane.conn is not None:
                        lane.conn.close()
                        lane.conn = None
            self.engine.dispose()
            if self.read_engine is not self.engine:
                self.read_engine.dispose()

        await anyio.to_thread.run_sync(close_all)
