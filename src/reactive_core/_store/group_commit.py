"""The group commit: units of work queued while a writer's transaction runs form its next
batch, which commits once.

A writer is a *lane*: one connection, the units waiting for it, and (on asyncio) a
thread running its batches. SQLite has one lane; PostgreSQL a few side by side. The
caller that finds a lane idle leads it (`GroupCommit._lead`), committing batches until
its own unit is finished, then hands the lane to the oldest caller still waiting. A
unit that raises rolls back alone while the others commit: each in a savepoint of its
own, except on SQLite, where a batch first runs without savepoints and, when a unit
raises, rolls back and runs the others again, each in its savepoint
(`GroupCommit._run_batch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread
import sniffio
from sqlalchemy import Connection, Engine

from .._errors import TransactionEnded
from .failures import MAX_RETRIES, driver_closed, is_lost, is_transient

if TYPE_CHECKING:
    from .backend import Backend, Dialect
    from .checkpoint import WalCheckpointer

logger = logging.getLogger("reactive_core.db")

T = TypeVar("T")

AFTER_COMMIT = "reactive_core.after_commit"
_MAX_BATCH = 256
_GUARDED_AFTER_FAILURE = 16
"""SQLite: batches run with a savepoint per unit after one whose unit raised (see
`GroupCommit._run_unguarded`), before trying without again."""

_HELD_LOCK = "reactive_core.held_lock"


def held_lock(tx: Connection) -> int | None:
    """The advisory-lock key the unit of work `tx` was started holding, if any (see
    `Database.run`'s `lock`)."""
    held: int | None = tx.info.get(_HELD_LOCK)
    return held


def after_commit(tx: Connection, callback: Callable[[], None]) -> None:
    """Run `callback` on the event loop once the unit of work `tx` belongs to commits.

    Dropped when the unit of work (in a group commit: that unit alone) rolls back; a
    unit run again registers its callbacks again.
    """
    tx.info.setdefault(AFTER_COMMIT, []).append(callback)


def take_after_commit(tx: Connection) -> list[Callable[[], None]]:
    """The callbacks `after_commit` registered on `tx` so far, removed from it."""
    callbacks: list[Callable[[], None]] = tx.info.pop(AFTER_COMMIT, [])
    return callbacks


@dataclass(slots=True)
class Job:
    """A unit of work queued on a lane, and its outcome."""

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
    lead: bool = False  # its waiting caller is handed the lane (see Lane)
    gone: bool = False  # its caller stopped waiting (cancelled): never handed the lane


class Lane:
    """One writer: its connection, the units waiting for it, and the thread running them.

    Whichever caller finds the lane idle leads it: it commits batches — everything
    queued meanwhile, up to `_MAX_BATCH` — until its own unit is finished, then hands
    the lane to the caller of the oldest unit still queued, or leaves it idle when
    nothing is. So a leader returns after the batches its unit needed, however steadily
    other callers keep queueing.
    """

    def __init__(self, index: int) -> None:
        self.index = index
        self.pending: list[Job] = []
        self.writing = False
        self.lock = threading.Lock()
        self.conn: Connection | None = None
        self.thread: threading.Thread | None = None
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.guarded = 0  # SQLite: batches still to run with savepoints after a failure


def _hand_over(lane: Lane, leaving: Job) -> bool:
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


class GroupCommit:
    """The group commit of `Database` (its base class): lanes, leaders, batches."""

    engine: Engine
    dialect: Dialect
    backend: Backend
    _lanes: list[Lane]
    _checkpointer: WalCheckpointer | None

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

    def _ended(self, conn: Connection) -> bool:
        """SQLite: True when the transaction is gone although the unit that just ran
        neither committed nor raised (see `TransactionEnded`): SQLite rolled all of it
        back, the writes of the units before it included."""
        if self.dialect != "sqlite":
            return False
        driver = conn.connection.dbapi_connection
        return driver is not None and not driver.in_transaction

    def _run_unit(self, job: Job, conn: Connection) -> None:
        """Run `job`'s unit of work in `conn`'s transaction; `TransactionEnded` when it
        returned from a transaction SQLite had rolled back."""
        job.result = job.fn(conn, *job.args)
        if self._ended(conn):
            raise TransactionEnded(_ENDED)

    def _lane(self) -> Lane:
        """The lane a new unit joins: an idle one if any, else the shortest queue."""
        lanes = self._lanes
        if len(lanes) == 1:
            return lanes[0]
        return min(lanes, key=lambda lane: (lane.writing, len(lane.pending)))

    async def _run_grouped(self, fn: Callable[..., T], args: tuple[Any, ...],
                           lock: int | None = None) -> T:
        job = Job(fn, args, lock=lock)
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

    async def _lead(self, lane: Lane, own: Job) -> None:
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
                        run_callbacks(done_job.callbacks)
                        if done_job.done is not None:
                            done_job.done.set()
                            answered = True
        finally:
            own.gone = True  # its caller is leaving: never hand it the lane
            if not handed:
                lane.writing = False
        if cancelled is not None:
            raise cancelled

    async def _commit_batch(self, lane: Lane, batch: list[Job]) -> BaseException | None:
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

    def _writer_loop(self, lane: Lane) -> None:
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

    def _writer(self, lane: Lane) -> Connection:
        if lane.conn is None or lane.conn.closed:
            lane.conn = self.engine.connect()
        return lane.conn

    def _run_batch(self, lane: Lane, batch: list[Job]) -> None:
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

    def _run_unguarded(self, lane: Lane, batch: list[Job]) -> list[Job]:
        """Run `batch` in one transaction without a savepoint per unit (SQLite's
        savepoints cost about 6 % of a write's time on the writer: each page a unit
        changes is copied into the savepoint's journal first).

        Returns the units to run again, guarded: none when the batch committed or failed
        as a whole; when a unit raised, it gets its outcome, the transaction rolls back,
        and the others are returned (those run before it run a second time, as units may
        after a deadlock; see `run`).
        """
        raised: tuple[Job, BaseException] | None = None
        committing = False
        try:
            conn = self._writer(lane)  # a failed (re)connect is the batch's failure
            with conn.begin() as transaction:
                for job in batch:
                    conn.info.pop(AFTER_COMMIT, None)
                    try:
                        self._run_unit(job, conn)
                    except BaseException as exc:  # noqa: BLE001 - whatever a unit raises is its caller's
                        raised = job, exc
                        if is_transient(exc) and job.attempts < MAX_RETRIES:
                            job.retry = True
                        else:
                            job.error = exc
                        break
                    job.callbacks = take_after_commit(conn)
                if raised is not None:
                    conn.info.pop(AFTER_COMMIT, None)
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
        self._drop_writer(lane, lost=is_lost(error))
        return [job for job in batch if job is not failed]

    def _run_guarded(self, lane: Lane, batch: list[Job]) -> None:
        """Run `batch` in one transaction, a savepoint per unit (when there are several),
        so one that fails rolls back alone.

        A unit the database rolled back for a transient reason — a deadlock or a
        serialization failure (PostgreSQL), or the connection dropped before the commit
        was asked for — is marked `retry` and runs again in a later batch (at most
        `MAX_RETRIES` times); whatever else a unit raises is its caller's.
        """
        committing = False
        failed_inside = False  # a unit rolled back to its savepoint
        try:
            conn = self._writer(lane)  # a failed (re)connect is the batch's failure
            with conn.begin():
                if len(batch) == 1:
                    job = batch[0]
                    conn.info.pop(AFTER_COMMIT, None)
                    try:
                        self._run_unit(job, conn)
                    except BaseException as exc:
                        job.error = exc
                        raise
                    job.callbacks = take_after_commit(conn)
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
                        conn.info.pop(AFTER_COMMIT, None)
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
                            self._run_unit(job, conn)
                        except BaseException as exc:  # noqa: BLE001 - whatever a unit raises is its caller's
                            if self._ended(conn):
                                # SQLite rolled back the whole transaction, savepoints
                                # and the units before this one included: this unit
                                # fails, the others run again in the next batch.
                                _end_batch(batch, job, exc)
                                failed_inside = True
                                break
                            # Whatever one unit raises (KeyboardInterrupt included)
                            # is that unit's outcome: the others still commit.
                            if joined:
                                driver.execute("ROLLBACK TO reactive_unit; "
                                               "RELEASE reactive_unit")
                            else:
                                driver.execute("ROLLBACK TO reactive_unit")
                                driver.execute("RELEASE reactive_unit")
                            conn.info.pop(AFTER_COMMIT, None)
                            conn.info.pop(_HELD_LOCK, None)
                            failed_inside = True
                            if is_transient(exc) and job.attempts < MAX_RETRIES:
                                job.retry = True
                            else:
                                job.error = exc
                            continue
                        release = True
                        conn.info.pop(_HELD_LOCK, None)
                        job.callbacks = take_after_commit(conn)
                committing = True
        except BaseException as exc:  # noqa: BLE001 - the whole batch failed to commit
            self._fail_batch(lane, batch, exc, committing=committing)
            return
        if failed_inside:
            self._drop_writer(lane, lost=False)

    def _fail_batch(self, lane: Lane, batch: list[Job], exc: BaseException, *,
                    committing: bool) -> None:
        """The batch's transaction failed as a whole (`exc`): every unit not set to run
        again fails, with its own error if it raised one, else with `exc`; a unit that
        nothing of was committed runs again when the reason was transient."""
        lost = is_lost(exc)
        for job in batch:
            job.callbacks = []
            job.result = None
            if job.retry:
                continue
            # A unit's own error (a lone unit re-raises it; the rollback that
            # follows may raise another) else the batch's.
            reason = job.error if job.error is not None else exc
            lost = lost or is_lost(reason)
            if (not committing and is_transient(reason)
                    and job.attempts < MAX_RETRIES):
                # Nothing committed: the unit runs again.
                job.error = None
                job.retry = True
            else:
                job.error = reason
        self._drop_writer(lane, lost=lost)

    def _drop_writer(self, lane: Lane, *, lost: bool) -> None:
        """After a failure in a batch: give up the writer connection where it cannot be
        trusted (lost, closed, or SQLite after a failed unit); the next batch opens a new
        one. Never raises: the batch's outcomes are already decided."""
        conn, lane.conn = lane.conn, None
        if conn is None or conn.closed:
            return  # closed before this batch, and not reopened
        try:
            if not conn.invalidated and (lost or driver_closed(conn)):
                conn.invalidate()  # lost under a DBAPI cursor: SQLAlchemy missed it
            self._discard_after_failure(conn)
        except Exception:
            logger.exception("dropping the writer connection failed; opening a new one")
            with contextlib.suppress(Exception):
                conn.close()
            return
        if not conn.invalidated:
            lane.conn = conn


_ENDED = ("the unit of work went on after SQLite had rolled back its whole transaction "
          "(a statement with ON CONFLICT ROLLBACK, INSERT OR ROLLBACK or RAISE(ROLLBACK) "
          "failed and its error was caught): nothing of it was written; let that error "
          "propagate, or resolve the conflict with ABORT instead")


def _end_batch(batch: list[Job], culprit: Job, error: BaseException) -> None:
    """The transaction of `batch` ended under `culprit`: it fails with `error`; every
    other unit that has not failed runs again in a later batch (nothing of it stays)."""
    culprit.error = error
    culprit.retry = False
    for job in batch:
        job.result = None
        job.callbacks = []
        if job is not culprit and job.error is None:
            job.retry = True


def _resolve(finished: asyncio.Future[None]) -> None:
    if not finished.done():
        finished.set_result(None)


def _fail_units(batch: list[Job], exc: BaseException) -> None:
    """A batch that could not run (its writer raised past its own error handling): each
    unit not already failed or set to run again fails with `exc`."""
    for job in batch:
        if job.error is None and not job.retry:
            job.error = exc


def _fail(finished: asyncio.Future[None], exc: BaseException) -> None:
    if not finished.done():
        finished.set_exception(exc)


def run_callbacks(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except BaseException:  # a wake-up must never fail a committed write
            logger.exception("after-commit callback %r failed", callback)
