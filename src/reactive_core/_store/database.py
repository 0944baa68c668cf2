"""Units of work: synchronous SQLAlchemy Core transactions run off the event loop.

Every database operation is a plain function `fn(tx, *args)` receiving a
`sqlalchemy.Connection` inside one transaction, executed in a worker thread: one
thread hop per unit of work. On SQLite all writes go through one writer connection;
concurrent writers are *group-committed*: whatever is queued while a transaction is
running forms the next batch, each unit in its own savepoint, so one failing unit
rolls back alone while the batch shares one commit. Readers use their own
connections and run concurrently (WAL). On PostgreSQL every unit of work gets a
pooled connection and its own transaction.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import sniffio
from sqlalchemy import Connection, Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from .._errors import ConfigError, DatabaseBusy
from .backend import Backend, Dialect, backend_for

logger = logging.getLogger("reactive_core.db")

T = TypeVar("T")

DEFAULT_DATABASE_URL = "sqlite:///./reactive.db"
_AFTER_COMMIT = "reactive_core.after_commit"
_MAX_BATCH = 256

def after_commit(tx: Connection, callback: Callable[[], None]) -> None:
    """Run `callback` on the event loop once the unit of work `tx` belongs to commits.

    Dropped when the unit of work (or, in a group commit, its savepoint) rolls back.
    """
    tx.info.setdefault(_AFTER_COMMIT, []).append(callback)


def _take_after_commit(tx: Connection) -> list[Callable[[], None]]:
    callbacks: list[Callable[[], None]] = tx.info.pop(_AFTER_COMMIT, [])
    return callbacks


def resolve_database_url(url: str | None) -> str:
    """The URL to use: the argument, else `REACTIVE_DATABASE_URL`, else SQLite in the cwd."""
    chosen = url or os.environ.get("REACTIVE_DATABASE_URL") or DEFAULT_DATABASE_URL
    if chosen.startswith("postgresql://") or chosen.startswith("postgres://"):
        chosen = "postgresql+psycopg://" + chosen.split("://", 1)[1]
    return chosen


@dataclass(slots=True)
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    done: anyio.Event | None = None  # created only for a caller that waits on a leader
    result: Any = None
    error: BaseException | None = None
    callbacks: list[Callable[[], None]] = field(default_factory=list)


class Database:
    """Runs units of work against SQLite (embedded) or PostgreSQL (cluster)."""

    def __init__(self, url: str | None = None, *, pool_size: int = 10, echo: bool = False,
                 busy_timeout: float = 10.0) -> None:
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
        self._pending: list[_Job] = []
        self._writing = False
        self._writer_lock = threading.Lock()
        self._writer_conn: Connection | None = None
        self._writer_thread: threading.Thread | None = None
        self._writer_queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database in ("", ":memory:") or database.startswith("file::memory:"):
                raise ConfigError(
                    f"database URL {self.url!r} is an in-memory SQLite database: "
                    "expected a file path such as 'sqlite:///./reactive.db'"
                )
            self.engine = self._sqlite_engine(immediate=True, echo=echo, single=True)
            self.read_engine = self._sqlite_engine(immediate=False, echo=echo, single=False)
            self._limiter = anyio.CapacityLimiter(8)
        else:
            self.engine = create_engine(
                # No ping per checkout (a round trip per unit of work): a unit that hits a
                # connection the server dropped is run again on a fresh one (see _run_pg).
                self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False,
                echo=echo,
            )
            self.read_engine = self.engine
            self._limiter = anyio.CapacityLimiter(pool_size * 2)

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
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Straight to the driver: this runs once per unit of work, on the hot path.
            conn.connection.dbapi_connection.execute(begin_sql)  # type: ignore[union-attr]

        return engine

    # -- schema ---------------------------------------------------------------------

    async def create_all(self, *metadatas: MetaData) -> None:
        """Create every table of `metadatas` that does not exist yet."""

        def create(tx: Connection) -> None:
            # Instances starting together must not race to create the same tables.
            self.backend.schema_lock(tx)
            for md in metadatas:
                md.create_all(tx)

        await self.run(create)

    # -- units of work --------------------------------------------------------------

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run the write unit of work `fn(tx, *args)` in one transaction, off the event loop.

        A SQLite database another writer keeps locked past the busy timeout raises
        `DatabaseBusy` (nothing was written; retry later).
        """
        try:
            if self.dialect == "postgresql":
                result, callbacks = await anyio.to_thread.run_sync(
                    self._run_pg, fn, args, limiter=self._limiter
                )
                _run_callbacks(callbacks)
                return result
            return await self._run_grouped(fn, args)
        except (OperationalError, sqlite3.OperationalError) as exc:
            if _locked(exc):
                raise DatabaseBusy(_BUSY) from exc
            raise

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run the read-only unit of work `fn(tx, *args)`; may run beside other readers."""
        try:
            return await anyio.to_thread.run_sync(self._run_read, fn, args,
                                                  limiter=self._limiter)
        except (OperationalError, sqlite3.OperationalError) as exc:
            if _locked(exc):
                raise DatabaseBusy(_BUSY) from exc
            raise

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a write unit of work on the calling thread (CLI and scripts, not the loop)."""
        if self.dialect == "postgresql":
            result, callbacks = self._run_pg(fn, args)
            _run_callbacks(callbacks)
            return result
        job = _Job(fn, args)
        self._run_batch([job])
        if job.error is not None:
            raise job.error
        _run_callbacks(job.callbacks)
        return job.result  # type: ignore[no-any-return]

    def _run_pg(
        self, fn: Callable[..., T], args: tuple[Any, ...]
    ) -> tuple[T, list[Callable[[], None]]]:
        for attempt in (1, 2):
            with self.engine.connect() as conn:
                conn.info.pop(_AFTER_COMMIT, None)
                ran = False
                try:
                    with conn.begin():
                        result = fn(conn, *args)
                        ran = True
                except DBAPIError as exc:
                    conn.info.pop(_AFTER_COMMIT, None)
                    if exc.connection_invalidated and attempt == 1 and not ran:
                        # The server dropped the connection before the commit was asked
                        # for, so nothing committed (and SQLAlchemy has discarded the
                        # pool's old connections): run the unit again on a fresh one.
                        continue
                    raise
                except BaseException:
                    conn.info.pop(_AFTER_COMMIT, None)
                    raise
                return result, _take_after_commit(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    def _run_read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        for attempt in (1, 2):
            with self.read_engine.connect() as conn:
                try:
                    with conn.begin():
                        return fn(conn, *args)
                except DBAPIError as exc:
                    if exc.connection_invalidated and attempt == 1:
                        continue
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run_grouped(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        job = _Job(fn, args)
        self._pending.append(job)
        if self._writing:
            job.done = anyio.Event()
            await job.done.wait()
        else:
            # This caller leads: it commits batches until the queue is empty. Shielded,
            # so a cancelled leader never strands the callers queued behind it.
            self._writing = True
            try:
                with anyio.CancelScope(shield=True):
                    while self._pending:
                        batch = self._pending[:_MAX_BATCH]
                        del self._pending[:_MAX_BATCH]
                        await self._commit_batch(batch)
                        for done_job in batch:
                            _run_callbacks(done_job.callbacks)
                            if done_job.done is not None:
                                done_job.done.set()
            finally:
                self._writing = False
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[no-any-return]

    async def _commit_batch(self, batch: list[_Job]) -> None:
        """Run one batch on the writer thread and wait for it."""
        if sniffio.current_async_library() != "asyncio":
            await anyio.to_thread.run_sync(self._run_batch, batch)
            return
        # On asyncio a dedicated writer thread answering through the loop costs a
        # fraction of a general worker-thread hop, and SQLite writes are serial anyway.
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        if self._writer_thread is None:
            self._writer_thread = threading.Thread(
                target=self._writer_loop, name="reactive-sqlite-writer", daemon=True)
            self._writer_thread.start()
        self._writer_queue.put((batch, loop, finished))
        await finished

    def _writer_loop(self) -> None:
        while True:
            item = self._writer_queue.get()
            if item is None:
                return
            batch, loop, finished = item
            try:
                self._run_batch(batch)
            finally:
                loop.call_soon_threadsafe(_resolve, finished)

    def _writer(self) -> Connection:
        if self._writer_conn is None or self._writer_conn.closed:
            self._writer_conn = self.engine.connect()
        return self._writer_conn

    def _run_batch(self, batch: list[_Job]) -> None:
        with self._writer_lock:
            conn = self._writer()
            try:
                with conn.begin():
                    if len(batch) == 1:
                        job = batch[0]
                        conn.info.pop(_AFTER_COMMIT, None)
                        try:
                            job.result = job.fn(conn, *job.args)
                        except BaseException as exc:
                            job.error = exc
                            raise
                        job.callbacks = _take_after_commit(conn)
                    else:
                        # Savepoints straight on the driver: SQLAlchemy's nested
                        # transactions cost more Python than the unit's own statements.
                        driver = conn.connection.dbapi_connection
                        assert driver is not None
                        for job in batch:
                            conn.info.pop(_AFTER_COMMIT, None)
                            driver.execute("SAVEPOINT reactive_unit")
                            try:
                                job.result = job.fn(conn, *job.args)
                            except BaseException as exc:  # noqa: BLE001 - whatever a unit raises is its caller's
                                # Whatever one unit raises (KeyboardInterrupt included)
                                # is that unit's outcome: the others still commit.
                                driver.execute("ROLLBACK TO reactive_unit")
                                driver.execute("RELEASE reactive_unit")
                                job.error = exc
                                conn.info.pop(_AFTER_COMMIT, None)
                                continue
                            driver.execute("RELEASE reactive_unit")
                            job.callbacks = _take_after_commit(conn)
            except BaseException as exc:  # noqa: BLE001 - the whole batch failed to commit
                for job in batch:
                    job.callbacks = []
                    if job.error is None:
                        job.error = exc
                        job.result = None
                if self._writer_conn is not None and self._writer_conn.invalidated:
                    self._writer_conn = None

    async def close(self) -> None:
        """Close every connection."""
        def close_all() -> None:
            if self._writer_thread is not None:
                self._writer_queue.put(None)
                self._writer_thread.join()
                self._writer_thread = None
            with self._writer_lock:
                if self._writer_conn is not None:
                    self._writer_conn.close()
                    self._writer_conn = None
            self.engine.dispose()
            if self.read_engine is not self.engine:
                self.read_engine.dispose()

        await anyio.to_thread.run_sync(close_all)


_BUSY = ("the database stayed locked by another writer longer than the busy timeout: "
         "nothing was written; retry, and look for a long transaction in another process")


def _locked(exc: Exception) -> bool:
    """True for SQLite's "database is locked" (the busy timeout ran out)."""
    text = str(getattr(exc, "orig", None) or exc)
    return "database is locked" in text or "database is busy" in text


def _resolve(finished: asyncio.Future[None]) -> None:
    if not finished.done():
        finished.set_result(None)


def _run_callbacks(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:  # a wake-up must never fail a committed write
            logger.exception("after-commit callback %r failed", callback)
