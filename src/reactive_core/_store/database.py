"""Units of work: synchronous SQLAlchemy Core transactions run off the event loop.

Every database operation is a plain function `fn(tx, *args)` receiving a
`sqlalchemy.Connection` inside one transaction, executed in a worker thread: one
thread hop per unit of work. On SQLite all writes go through one writer connection;
concurrent writers are *group-committed*: whatever is queued while a transaction is
running forms the next batch, which shares one commit while a unit that fails rolls
back alone (`_run_batch`: each unit in a savepoint, on SQLite only once a unit of the
batch failed). Readers use their own connections and run concurrently (WAL). On
PostgreSQL a few writer lanes group-commit the same way, side by side; readers get
pooled connections.

A group commit holds every lock its units took until the batch commits, so a unit
that locks many rows another batch may want (the work queue's rounds, the timers')
runs *apart* (`run_apart`): in a transaction of its own on PostgreSQL, where it can
neither wait behind nor hold up an unrelated unit of a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread
import sniffio
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from .._errors import ConfigError, DatabaseBusy
from .backend import Backend, Dialect, backend_for
from .checkpoint import WalCheckpointer

logger = logging.getLogger("reactive_core.db")

T = TypeVar("T")

DEFAULT_DATABASE_URL = "sqlite:///./reactive.db"
_AFTER_COMMIT = "reactive_core.after_commit"
_MAX_BATCH = 256
_GUARDED_AFTER_FAILURE = 16
"""SQLite: batches run with a savepoint per unit after one whose unit raised (see
`Database._run_unguarded`), before trying without again."""

_HELD_LOCK = "reactive_core.held_lock"
_WAL_CHECKPOINT_PAGES = 10_000
"""SQLite's writer checkpoints the WAL itself once it holds this many pages (about 40 MB):
the backstop of the background checkpoints (`_store.checkpoint`)."""
_WAL_SIZE_LIMIT = 64 * 1024 * 1024


def held_lock(tx: Connection) -> int | None:
    """The advisory-lock key the unit of work `tx` was started holding, if any (see
    `Database.run`'s `lock`)."""
    held: int | None = tx.info.get(_HELD_LOCK)
    return held


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
    done: _Signal | None = None  # created only for a caller that waits on a leader
    result: Any = None
    error: BaseException | None = None
    callbacks: list[Callable[[], None]] = field(default_factory=list)
    retry: bool = False  # rolled back by a deadlock or a dropped connection: run again
    attempts: int = 0
    lock: int | None = None  # an advisory lock to take with the unit's savepoint
    finished: bool = False  # committed or failed for good; its caller may go on
    lead: bool = False  # its waiting caller is handed the lane (see _Lane)
    gone: bool = False  # its caller stopped waiting (cancelled): never handed the lane


class _Lane:
    """One writer: its connection, the units waiting for it, and the thread running them.

    Whichever caller finds the lane idle leads it: it commits batches — everything
    queued meanwhile, up to `_MAX_BATCH` — until its own unit is finished, then hands
    the lane to the caller of the oldest unit still queued, or leaves it idle when
    nothing is. So a leader returns after the batches its unit needed, however steadily
    other callers keep queueing.
    """

    def __init__(self, index: int) -> None:
        self.index = index
        self.pending: list[_Job] = []
        self.writing = False
        self.lock = threading.Lock()
        self.conn: Connection | None = None
        self.thread: threading.Thread | None = None
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.guarded = 0  # SQLite: batches still to run with savepoints after a failure


def _hand_over(lane: _Lane, leaving: _Job) -> bool:
    """Make the caller of the oldest queued unit the lane's leader, if one still waits
    (other than the `leaving` leader's)."""
    for job in lane.pending:
        if job.done is not None and not job.gone and job is not leaving:
            job.lead = True
            job.done.set()
            return True
    return False


class _Signal:
    """Set once by a leader, awaited by the caller of a queued unit: an anyio `Event`,
    or on asyncio a bare future (0.3 µs to create, wait on and set, against the Event's
    4.5 µs, paid for every unit whose caller waits on a leader)."""

    __slots__ = ("_event", "_future")

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None
        self._event: anyio.Event | None = None
        if sniffio.current_async_library() == "asyncio":
            self._future = asyncio.get_running_loop().create_future()
        else:
            self._event = anyio.Event()

    def set(self) -> None:
        if self._future is not None:
            _resolve(self._future)  # unless a cancelled waiter cancelled it
        else:
            assert self._event is not None
            self._event.set()

    async def wait(self) -> None:
        if self._future is not None:
            await self._future
        else:
            assert self._event is not None
            await self._event.wait()


class Database:
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
        self._lanes = [_Lane(i) for i in range(lanes)]
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
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
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
        _run_callbacks(callbacks)
        return result

    def _run_apart(self, fn: Callable[..., T], args: tuple[Any, ...],
                   ) -> tuple[T, list[Callable[[], None]]]:
        attempt = 0
        while True:
            attempt += 1
            committing = False
            with self.engine.connect() as conn:
                conn.info.pop(_AFTER_COMMIT, None)
                try:
                    with conn.begin():
                        result = fn(conn, *args)
                        callbacks = _take_after_commit(conn)
                        committing = True  # past here, whether it committed is unknown
                    return result, callbacks
                except BaseException as exc:
                    conn.info.pop(_AFTER_COMMIT, None)
                    if not conn.invalidated and (_lost(exc) or _driver_closed(conn)):
                        conn.invalidate()
                    if committing or not (_transient(exc) and attempt < _MAX_RETRIES):
                        raise

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a write unit of work on the calling thread (CLI and scripts, not the loop)."""
        job = _Job(fn, args)
        while True:
            self._run_batch(self._lanes[0], [job])
            if not job.retry:
                break
        if job.error is not None:
            raise job.error
        _run_callbacks(job.callbacks)
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

    def _discard_after_failure(self, conn: Connection) -> None:
        """Drop a SQLite connection whose unit of work failed.

        A unit that raised while iterating a result leaves that statement open, and
        SQLite keeps an open statement's read snapshot after ROLLBACK: the connection
        would go on reading the database as it was (a pooled reader missing every later
        commit). Closing the connection finalizes its statements; it costs a reconnect,
        and only after a failure.
        """
        if self.dialect == "sqlite" and not conn.invalidated:
            conn.invalidate()

    def _lane(self) -> _Lane:
        """The lane a new unit joins: an idle one if any, else the shortest queue."""
        lanes = self._lanes
        if len(lanes) == 1:
            return lanes[0]
        return min(lanes, key=lambda lane: (lane.writing, len(lane.pending)))

    async def _run_grouped(self, fn: Callable[..., T], args: tuple[Any, ...],
                           lock: int | None = None) -> T:
        job = _Job(fn, args, lock=lock)
        lane = self._lane()
        lane.pending.append(job)
        if lane.writing:
            job.done = _Signal()
            try:
                await job.done.wait()
            except BaseException:
                # Cancelled while waiting: the unit still runs in a batch. If the lane was
                # handed over at the same moment, lead it first, or nobody would.
                if job.lead:
                    await self._lead(lane, job)
                job.gone = True
                raise
            if job.lead:
                await self._lead(lane, job)
        else:
            lane.writing = True
            await self._lead(lane, job)
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[no-any-return]

    async def _lead(self, lane: _Lane, own: _Job) -> None:
        """Commit the lane's batches until `own` is finished, then hand the lane over.

        Shielded, so a cancelled leader never strands the callers queued behind it. A
        cancellation that gets through the shield anyway (asyncio's `Task.cancel()`, as
        `asyncio.wait_for` uses it) waits for the batch running on the writer, which is
        answered; the leader then hands over (or leads until no waiting caller is left)
        and raises it.
        """
        handed = False
        cancelled: BaseException | None = None
        answered = False  # the last batch answered callers other than this leader
        try:
            with anyio.CancelScope(shield=True):
                while True:
                    if not lane.pending:
                        # Let the callers just answered queue their next units: they join
                        # the next batch instead of one of them leading a batch of one
                        # while the rest wait (a convoy of alternating batches of 1 and
                        # N-1). A batch of this leader's own unit alone answered nobody.
                        if answered and cancelled is None:
                            await anyio.lowlevel.checkpoint()
                        if not lane.pending:
                            break
                    if own.finished or cancelled is not None:
                        handed = _hand_over(lane, own)
                        if handed:
                            break
                    batch = lane.pending[:_MAX_BATCH]
                    del lane.pending[:_MAX_BATCH]
                    cancelled = await self._commit_batch(lane, batch) or cancelled
                    answered = False
                    for done_job in batch:
                        if done_job.retry:
                            lane.pending.append(done_job)  # in the next batch
                            continue
                        done_job.finished = True
                        _run_callbacks(done_job.callbacks)
                        if done_job.done is not None:
                            done_job.done.set()
                            answered = True
        finally:
            own.gone = True  # its caller is leaving: never hand it the lane
            if not handed:
                lane.writing = False
        if cancelled is not None:
            raise cancelled

    async def _commit_batch(self, lane: _Lane, batch: list[_Job]) -> BaseException | None:
        """Run one batch on the lane's writer thread and wait for it; returns a
        cancellation of the task that arrived meanwhile (to raise once the lane is
        answered and handed over). Never raises: when the batch could not run at all,
        each of its units fails with the reason."""
        if sniffio.current_async_library() != "asyncio":
            try:
                await anyio.to_thread.run_sync(self._run_batch, lane, batch)
            except BaseException as exc:  # noqa: BLE001 - the units' outcome
                _fail_units(batch, exc)
            return None
        # On asyncio a dedicated writer thread answering through the loop costs a
        # fraction of a general worker-thread hop.
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        if lane.thread is None or not lane.thread.is_alive():
            lane.thread = threading.Thread(
                target=self._writer_loop, args=(lane,), name=f"reactive-writer-{lane.index}",
                daemon=True)
            lane.thread.start()
        lane.queue.put((batch, loop, finished))
        cancelled: BaseException | None = None
        while not finished.done():
            try:
                await asyncio.shield(finished)
            except asyncio.CancelledError as exc:
                cancelled = exc  # the batch is running: answer it first
            except BaseException:  # noqa: BLE001 - the batch's failure, read below
                pass
        error = finished.exception()
        if error is not None:
            _fail_units(batch, error)
        return cancelled

    def _writer_loop(self, lane: _Lane) -> None:
        while True:
            item = lane.queue.get()
            if item is None:
                return
            batch, loop, finished = item
            try:
                self._run_batch(lane, batch)
            except BaseException as exc:  # noqa: BLE001 - the waiting leader's to answer
                loop.call_soon_threadsafe(_fail, finished, exc)
            else:
                loop.call_soon_threadsafe(_resolve, finished)

    def _writer(self, lane: _Lane) -> Connection:
        if lane.conn is None or lane.conn.closed:
            lane.conn = self.engine.connect()
        return lane.conn

    def _run_batch(self, lane: _Lane, batch: list[_Job]) -> None:
        """Run `batch` in one transaction on the writer connection, so that a unit that
        raises rolls back alone while the others commit together.

        On SQLite the units first run without savepoints (`_run_unguarded`): should one
        raise, the transaction rolls back and the others run again, each in a savepoint
        (`_run_guarded`). PostgreSQL takes each unit's savepoint in the round trip of
        its first statement, so it always runs them guarded.
        """
        with lane.lock:
            for job in batch:
                job.retry = False
                job.attempts += 1
            rest = batch
            if self.dialect == "sqlite" and len(batch) > 1:
                if lane.guarded:
                    lane.guarded -= 1
                else:
                    rest = self._run_unguarded(lane, batch)
                    if rest:
                        # Units that raise may come in a run (a client sending bad
                        # input): the next batches pay a savepoint per unit instead
                        # of a second run each.
                        lane.guarded = _GUARDED_AFTER_FAILURE
            if rest:
                self._run_guarded(lane, rest)
            if self._checkpointer is not None:
                self._checkpointer.poke()

    def _run_unguarded(self, lane: _Lane, batch: list[_Job]) -> list[_Job]:
        """Run `batch` in one transaction without a savepoint per unit (SQLite's
        savepoints cost about 6 % of a write's time on the writer: each page a unit
        changes is copied into the savepoint's journal first).

        Returns the units to run again, guarded: none when the batch committed or failed
        as a whole; when a unit raised, it gets its outcome, the transaction rolls back,
        and the others are returned (those run before it run a second time, as units may
        after a deadlock; see `run`).
        """
        raised: tuple[_Job, BaseException] | None = None
        committing = False
        try:
            conn = self._writer(lane)  # a failed (re)connect is the batch's failure
            with conn.begin() as transaction:
                for job in batch:
                    conn.info.pop(_AFTER_COMMIT, None)
                    try:
                        job.result = job.fn(conn, *job.args)
                    except BaseException as exc:  # noqa: BLE001 - whatever a unit raises is its caller's
                        raised = job, exc
                        if _transient(exc) and job.attempts < _MAX_RETRIES:
                            job.retry = True
                        else:
                            job.error = exc
                        break
                    job.callbacks = _take_after_commit(conn)
                if raised is not None:
                    conn.info.pop(_AFTER_COMMIT, None)
                    transaction.rollback()
                else:
                    committing = True
        except BaseException as exc:  # noqa: BLE001 - the whole batch failed
            self._fail_batch(lane, batch, exc, committing=committing)
            return []
        if raised is None:
            return []
        failed, error = raised
        for job in batch:
            job.result = None
            job.callbacks = []
        # As after any unit that raised: the connection may keep the snapshot of a
        # statement the unit left open (see `_discard_after_failure`).
        self._drop_writer(lane, lost=_lost(error))
        return [job for job in batch if job is not failed]

    def _run_guarded(self, lane: _Lane, batch: list[_Job]) -> None:
        """Run `batch` in one transaction, a savepoint per unit (when there are several),
        so one that fails rolls back alone.

        A unit the database rolled back for a transient reason — a deadlock or a
        serialization failure (PostgreSQL), or the connection dropped before the commit
        was asked for — is marked `retry` and runs again in a later batch (at most
        `_MAX_RETRIES` times); whatever else a unit raises is its caller's.
        """
        committing = False
        failed_inside = False  # a unit rolled back to its savepoint
        try:
            conn = self._writer(lane)  # a failed (re)connect is the batch's failure
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
                    # Where the driver takes several statements in one call, a unit's
                    # RELEASE goes with the next one's SAVEPOINT (one round trip);
                    # the last one is released by the commit.
                    driver = conn.connection.dbapi_connection
                    assert driver is not None
                    joined = self.dialect == "postgresql"
                    release = False
                    for job in batch:
                        conn.info.pop(_AFTER_COMMIT, None)
                        conn.info.pop(_HELD_LOCK, None)
                        release_previous, release = release, False
                        try:
                            # Inside the unit's try: a deadlock on its lock is its
                            # failure alone (retried), not the batch's.
                            if joined:
                                # One round trip: the last unit's release, this
                                # one's savepoint and the lock it takes first.
                                start = ("RELEASE reactive_unit; " if release_previous
                                         else "") + "SAVEPOINT reactive_unit"
                                if job.lock is not None:
                                    start += "; " + self.backend.lock_statement(job.lock)
                                driver.execute(start)
                                if job.lock is not None:
                                    conn.info[_HELD_LOCK] = job.lock
                            else:
                                if release_previous:
                                    driver.execute("RELEASE reactive_unit")
                                driver.execute("SAVEPOINT reactive_unit")
                            job.result = job.fn(conn, *job.args)
                        except BaseException as exc:  # noqa: BLE001 - whatever a unit raises is its caller's
                            # Whatever one unit raises (KeyboardInterrupt included)
                            # is that unit's outcome: the others still commit.
                            if joined:
                                driver.execute("ROLLBACK TO reactive_unit; "
                                               "RELEASE reactive_unit")
                            else:
                                driver.execute("ROLLBACK TO reactive_unit")
                                driver.execute("RELEASE reactive_unit")
                            conn.info.pop(_AFTER_COMMIT, None)
                            conn.info.pop(_HELD_LOCK, None)
                            failed_inside = True
                            if _transient(exc) and job.attempts < _MAX_RETRIES:
                                job.retry = True
                            else:
                                job.error = exc
                            continue
                        release = True
                        conn.info.pop(_HELD_LOCK, None)
                        job.callbacks = _take_after_commit(conn)
                committing = True
        except BaseException as exc:  # noqa: BLE001 - the whole batch failed to commit
            self._fail_batch(lane, batch, exc, committing=committing)
            return
        if failed_inside:
            self._drop_writer(lane, lost=False)

    def _fail_batch(self, lane: _Lane, batch: list[_Job], exc: BaseException, *,
                    committing: bool) -> None:
        """The batch's transaction failed as a whole (`exc`): every unit not set to run
        again fails, with its own error if it raised one, else with `exc`; a unit that
        nothing of was committed runs again when the reason was transient."""
        lost = _lost(exc)
        for job in batch:
            job.callbacks = []
            job.result = None
            if job.retry:
                continue
            # A unit's own error (a lone unit re-raises it; the rollback that
            # follows may raise another) else the batch's.
            reason = job.error if job.error is not None else exc
            lost = lost or _lost(reason)
            if (not committing and _transient(reason)
                    and job.attempts < _MAX_RETRIES):
                # Nothing committed: the unit runs again.
                job.error = None
                job.retry = True
            else:
                job.error = reason
        self._drop_writer(lane, lost=lost)

    def _drop_writer(self, lane: _Lane, *, lost: bool) -> None:
        """After a failure in a batch: give up the writer connection where it cannot be
        trusted (lost, closed, or SQLite after a failed unit); the next batch opens a new
        one. Never raises: the batch's outcomes are already decided."""
        conn, lane.conn = lane.conn, None
        if conn is None or conn.closed:
            return  # closed before this batch, and not reopened
        try:
            if not conn.invalidated and (lost or _driver_closed(conn)):
                conn.invalidate()  # lost under a DBAPI cursor: SQLAlchemy missed it
            self._discard_after_failure(conn)
        except Exception:
            logger.exception("dropping the writer connection failed; opening a new one")
            with contextlib.suppress(Exception):
                conn.close()
            return
        if not conn.invalidated:
            lane.conn = conn

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


_MAX_RETRIES = 5
"""How often a unit of work runs at most when the database keeps rolling it back."""
_TRANSIENT_STATES = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure


def _transient(exc: BaseException) -> bool:
    """True when `exc` rolled the unit back for a reason worth running it again for: a
    deadlock, a serialization failure, or the connection lost (also when the driver
    raised it straight from a DBAPI cursor, where SQLAlchemy did not see it)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    state = getattr(exc, "sqlstate", None) or getattr(getattr(exc, "orig", None),
                                                      "sqlstate", None)
    return state in _TRANSIENT_STATES or _lost(exc)


def _lost(exc: BaseException) -> bool:
    """True when `exc` says the connection is gone."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    state = getattr(exc, "sqlstate", None) or getattr(getattr(exc, "orig", None),
                                                      "sqlstate", None)
    return state is not None and state.startswith(_LOST_CONNECTION_CLASSES)


_LOST_CONNECTION_CLASSES = ("08", "57P")
"""SQLSTATE classes of a lost connection: connection exception, operator intervention
(the server terminated the backend or is shutting down)."""


def _driver_closed(conn: Connection) -> bool:
    """True when the DBAPI connection under `conn` is gone (e.g. its backend was killed)."""
    try:
        driver = conn.connection.dbapi_connection
    except Exception:  # noqa: BLE001 - already invalidated or closed
        return True
    return bool(getattr(driver, "closed", False) or getattr(driver, "broken", False))


_BUSY = ("the database stayed locked by another writer longer than the busy timeout: "
         "nothing was written; retry, and look for a long transaction in another process")


def _locked(exc: Exception) -> bool:
    """True for SQLite's "database is locked" (the busy timeout ran out)."""
    text = str(getattr(exc, "orig", None) or exc)
    return "database is locked" in text or "database is busy" in text


def _resolve(finished: asyncio.Future[None]) -> None:
    if not finished.done():
        finished.set_result(None)


def _fail_units(batch: list[_Job], exc: BaseException) -> None:
    """A batch that could not run (its writer raised past its own error handling): each
    unit not already failed or set to run again fails with `exc`."""
    for job in batch:
        if job.error is None and not job.retry:
            job.error = exc


def _fail(finished: asyncio.Future[None], exc: BaseException) -> None:
    if not finished.done():
        finished.set_exception(exc)


def _run_callbacks(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except BaseException:  # a wake-up must never fail a committed write
            logger.exception("after-commit callback %r failed", callback)
