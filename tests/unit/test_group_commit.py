"""Faults of the group commit itself (SQLite's one writer): a writer that cannot
reconnect, a leader cancelled by asyncio past anyio's shield, a leader whose batch
failed. Every caller gets its unit's outcome, and the writer goes on."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from functools import partial
from typing import Any

import anyio
import pytest
from sqlalchemy import Connection, event
from sqlalchemy.exc import IntegrityError, OperationalError

from plugins_for_tests import BOTH, in_one_batch
from reactive_core import DatabaseBusy, TransactionEnded
from reactive_core._store import checkpoint
from reactive_core._store.database import Database

pytestmark = pytest.mark.anyio


class SerializationFailure(Exception):
    """What a driver raises for SQLSTATE 40001: the unit is run again."""

    sqlstate = "40001"


def failing_connects(db: Database) -> list[int]:
    """`[n]`: the writer's next n connection attempts fail (the server restarting)."""
    fail = [0]

    @event.listens_for(db.engine, "do_connect")
    def connect(*_args: Any) -> None:
        if fail[0]:
            fail[0] -= 1
            raise sqlite3.OperationalError("could not connect: the server is restarting")

    return fail


def count(tx: Connection) -> int:
    return int(tx.exec_driver_sql("SELECT count(*) FROM t").scalar_one())


def insert(value: int) -> Any:
    def unit(tx: Connection) -> int:
        tx.exec_driver_sql(f"INSERT INTO t VALUES ({value})")
        return value
    return unit


async def one_batch(db: Database, *units: tuple[str, Any]) -> dict[str, Any]:
    """Run `units` (name, fn) as one batch, in this order; each one's result, or the name
    of the exception it raised."""
    return await in_one_batch(db, *((name, partial(db.run, fn)) for name, fn in units))


@BOTH
async def test_a_writer_that_cannot_reconnect_fails_its_batch_then_recovers(
    sqlite_url: str,
) -> None:
    db = Database(sqlite_url)
    try:
        await db.run(lambda tx: tx.exec_driver_sql("CREATE TABLE t (x)"))
        fail = failing_connects(db)
        lane = db._lanes[0]
        assert lane.conn is not None
        lane.conn.close()  # the server dropped the idle writer connection
        fail[0] = 1
        with pytest.raises(OperationalError, match="restarting"):
            await db.run(insert(1))  # not None, as if it had committed
        assert await db.run(insert(2)) == 2  # the writer reconnects
        assert await db.read(count) == 1
        assert not lane.writing and not lane.pending
    finally:
        await db.close()


async def test_a_leader_cancelled_by_asyncio_answers_its_batch_and_hands_over(
    sqlite_url: str,
) -> None:
    """`asyncio.wait_for` cancels its task past anyio's shield: the leader waits for the
    batch on the writer, answers every unit of it, hands the lane over, then raises."""
    db = Database(sqlite_url)
    try:
        await db.run(lambda tx: tx.exec_driver_sql("CREATE TABLE t (x)"))
        first, second = threading.Event(), threading.Event()
        outcomes: dict[str, Any] = {}

        async def call(name: str, fn: Any, timeout: float | None = None) -> None:
            try:
                outcomes[name] = await asyncio.wait_for(db.run(fn), timeout)
            except BaseException as exc:  # noqa: BLE001 - the outcome is what is checked
                outcomes[name] = type(exc).__name__

        def held(gate: threading.Event, value: int) -> Any:
            def unit(tx: Connection) -> int:
                gate.wait(5)
                return insert(value)(tx)
            return unit

        tasks = [asyncio.create_task(call("a", held(first, 1)))]
        await asyncio.sleep(0.05)
        # b is handed the lane when a's batch ends; its own batch [b, c] then waits on
        # `second` while b's wait_for runs out.
        tasks.append(asyncio.create_task(call("b", held(second, 2), timeout=0.3)))
        await asyncio.sleep(0.05)
        tasks.append(asyncio.create_task(call("c", insert(3))))
        await asyncio.sleep(0.05)
        first.set()
        await asyncio.sleep(0.5)
        second.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert outcomes == {"a": 1, "b": "TimeoutError", "c": 3}
        assert await db.run(insert(4)) == 4
        assert await db.read(count) == 4  # b's unit committed: it was already running
        lane = db._lanes[0]
        assert not lane.writing and not lane.pending
    finally:
        await db.close()


@BOTH
async def test_a_leader_whose_batch_failed_is_never_handed_the_lane_again(
    sqlite_url: str,
) -> None:
    """A caller handed the lane whose own unit is retried, then whose next batch cannot
    run, leaves with an error: the lane must not be handed to it later."""
    db = Database(sqlite_url)
    try:
        await db.run(lambda tx: tx.exec_driver_sql("CREATE TABLE t (x)"))
        fail = failing_connects(db)
        lane = db._lanes[0]
        gate = threading.Event()
        runs = [0]
        outcomes: dict[str, Any] = {}

        def retried_once(tx: Connection) -> int:
            runs[0] += 1
            if runs[0] == 1:
                raise SerializationFailure("could not serialize access")
            return insert(2)(tx)

        async def call(name: str, fn: Any) -> None:
            try:
                outcomes[name] = await db.run(fn)
            except Exception as exc:  # noqa: BLE001 - the outcome is what is checked
                outcomes[name] = type(exc).__name__
            if name == "a":  # the server drops the writer's connection and restarts
                assert lane.conn is not None
                lane.conn.close()
                fail[0] = 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "a", lambda tx: gate.wait(5))
            await anyio.sleep(0.05)
            with anyio.CancelScope() as gone:  # callers that give up waiting
                async with anyio.create_task_group() as waiting:
                    for _ in range(20):
                        waiting.start_soon(db.run, lambda tx: None)
                    await anyio.sleep(0.05)
                    gone.cancel()
            tg.start_soon(call, "b", retried_once)  # the oldest caller still waiting
            await anyio.sleep(0.05)
            gate.set()
        for name, value in (("c", 3), ("d", 4)):
            with anyio.fail_after(5):
                await call(name, insert(value))
        assert outcomes["c"] == 3 and outcomes["d"] == 4, outcomes
        assert not lane.writing and not lane.pending
    finally:
        await db.close()


@BOTH
async def test_a_failing_clean_up_after_a_batch_leaves_its_outcomes_alone(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """After a unit failed in a batch, the writer connection is replaced; if that fails
    too, it is logged: the units that committed still report success."""
    db = Database(sqlite_url)
    try:
        await db.run(lambda tx: tx.exec_driver_sql("CREATE TABLE t (x)"))

        def broken(_conn: Connection) -> None:
            raise RuntimeError("cannot drop the connection")

        monkeypatch.setattr(db, "_discard_after_failure", broken)

        def failing(tx: Connection) -> None:
            raise ValueError("the unit fails")

        outcomes = await one_batch(db, ("fails", failing), ("commits", insert(1)))
        assert outcomes == {"fails": "ValueError", "commits": 1}
        assert "cannot drop the connection" in caplog.text
        monkeypatch.undo()
        assert await db.run(insert(2)) == 2
        assert await db.read(count) == 2
    finally:
        await db.close()


def checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "reactive-wal-checkpoint"]


async def wait_for(condition: Any, seconds: float = 10.0) -> None:
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0.02)


@BOTH
async def test_wal_checkpoints_run_on_a_thread_of_their_own(sqlite_url: str) -> None:
    # The writer's own checkpoint (SQLite's, inside the commit that fills the WAL past
    # 10,000 pages, about 40 MB) is only the backstop: after commits, a thread of its own
    # copies the WAL into the database file, while the writer goes on.
    db = Database(sqlite_url)
    path = sqlite_url.removeprefix("sqlite:///")
    try:
        await db.run(lambda tx: tx.exec_driver_sql("CREATE TABLE t (x)"))

        def write_pages(tx: Connection) -> None:
            for _ in range(1_500):  # about 1,500 pages of 4 KB
                tx.exec_driver_sql("INSERT INTO t VALUES (randomblob(4000))")

        await db.run(write_pages)
        # Far below the writer's 10,000 pages, yet copied into the database file.
        await wait_for(lambda: os.path.getsize(path) > 1_500 * 4096)
        assert os.path.getsize(path + "-wal") >= 1_500 * 4096  # not truncated: reused
        pragmas = await db.run(lambda tx: (
            tx.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one(),
            tx.exec_driver_sql("PRAGMA journal_size_limit").scalar_one()))
        assert pragmas == (10_000, 64 * 1024 * 1024)
        # What the checkpoint copied, read from the database file alone (no WAL).
        await wait_for(lambda: _rows_in_file(path) == 1_500)
        assert len(checkpoint_threads()) == 1
    finally:
        await db.close()
    assert checkpoint_threads() == []  # closing stops it
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1_500,)


async def test_a_failing_background_checkpoint_leaves_the_writer_alone(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    # The checkpoint thread cannot connect (say, out of file descriptors): it logs, tries
    # again later, and meanwhile every write commits (the writer's own checkpoint remains).
    monkeypatch.setattr(checkpoint, "_FAILURE_PAUSE", 0.2)
    db = Database(sqlite_url)
    path = sqlite_url.removeprefix("sqlite:///")
    connects = [0]

    @event.listens_for(db.engine, "do_connect")
    def connect(*_args: Any) -> None:
        connects[0] += 1
        if connects[0] in (2, 3):  # the writer's goes through, the checkpoint's fail
            raise sqlite3.OperationalError("unable to open database file")

    try:
        await db.run(lambda tx: tx.exec_driver_sql("CREATE TABLE t (x)"))
        for value in range(20):
            assert await db.run(insert(value)) == value
            await anyio.sleep(0.02)
        assert await db.read(count) == 20
        assert "background WAL checkpoint failed" in caplog.text
        # Then it connects, and copies the WAL into the database file after all.
        await wait_for(lambda: connects[0] >= 4)
        await db.run(insert(20))
        await wait_for(lambda: _rows_in_file(path) == 21)
    finally:
        await db.close()


def _rows_in_file(path: str) -> int:
    """The rows of `t` in the database file itself, without its WAL (0 while the file
    does not hold the table yet, or is caught half-written by a running checkpoint)."""
    copy = path + ".copy"
    with open(path, "rb") as source, open(copy, "wb") as target:
        target.write(source.read())
    conn = sqlite3.connect(copy)
    try:
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
    except sqlite3.DatabaseError:
        return 0
    finally:
        conn.close()


@BOTH
async def test_a_unit_that_raises_fails_alone_and_the_units_before_it_run_again(
    sqlite_url: str,
) -> None:
    """SQLite runs a batch's units without a savepoint each; when one raises, the batch
    rolls back and the others run again, each in a savepoint: they commit, the one that
    raised fails alone (run once), those before it have run twice. The next batches run
    with savepoints, so a unit that raises there costs nobody a second run."""
    db = Database(sqlite_url)
    runs: dict[str, int] = {}

    def unit(name: str, value: int, *, fails: bool = False) -> Any:
        def fn(tx: Connection) -> int:
            runs[name] = runs.get(name, 0) + 1
            tx.exec_driver_sql(f"INSERT INTO t VALUES ({value})")
            if fails:
                raise ValueError(f"{name} fails")
            return value
        return fn

    try:
        await db.run(lambda tx: tx.exec_driver_sql("CREATE TABLE t (x)"))
        outcomes = await one_batch(db, ("a", unit("a", 1)),
                                   ("fails", unit("fails", -1, fails=True)), ("b", unit("b", 2)))
        assert outcomes == {"a": 1, "fails": "ValueError", "b": 2}
        assert runs == {"a": 2, "fails": 1, "b": 1}
        runs.clear()
        outcomes = await one_batch(db, ("c", unit("c", 3)),
                                   ("fails", unit("fails", -1, fails=True)), ("d", unit("d", 4)))
        assert outcomes == {"c": 3, "fails": "ValueError", "d": 4}
        assert runs == {"c": 1, "fails": 1, "d": 1}
        assert await db.read(lambda tx: sorted(
            row[0] for row in tx.exec_driver_sql("SELECT x FROM t"))) == [1, 2, 3, 4]
    finally:
        await db.close()


def conflict_units(runs: dict[str, int], *, catch: bool = True) -> dict[str, Any]:
    """Units for a table `r` whose key resolves conflicts with ROLLBACK (SQLite then rolls
    back the whole transaction): `dup` inserts a key `r` holds already, catching the error
    unless `catch` is False; `a` and `c` insert into `t`."""
    def counted(name: str, statement: str) -> Any:
        def fn(tx: Connection) -> str:
            runs[name] = runs.get(name, 0) + 1
            tx.exec_driver_sql(statement)
            return name
        return fn

    def dup(tx: Connection) -> str:
        runs["dup"] = runs.get("dup", 0) + 1
        try:
            tx.exec_driver_sql("INSERT INTO r VALUES (1)")
        except IntegrityError:
            if not catch:
                raise
        return "dup"

    return {"a": counted("a", "INSERT INTO t VALUES ('a')"), "dup": dup,
            "c": counted("c", "INSERT INTO t VALUES ('c')")}


async def conflict_db(sqlite_url: str) -> Database:
    db = Database(sqlite_url)
    await db.run(lambda tx: tx.exec_driver_sql("CREATE TABLE t (x)"))
    await db.run(lambda tx: tx.exec_driver_sql("CREATE TABLE r (k UNIQUE ON CONFLICT ROLLBACK)"))
    await db.run(lambda tx: tx.exec_driver_sql("INSERT INTO r VALUES (1)"))
    return db


def rows_of_t(tx: Connection) -> list[str]:
    return sorted(row[0] for row in tx.exec_driver_sql("SELECT x FROM t"))


@BOTH
@pytest.mark.parametrize("order", ["a dup c", "a c dup"])
@pytest.mark.parametrize("savepoints", [False, True])
async def test_a_unit_that_goes_on_after_sqlite_rolled_back_its_transaction_fails_alone(
    sqlite_url: str, order: str, savepoints: bool,
) -> None:
    """A statement with ON CONFLICT ROLLBACK makes SQLite roll back the whole transaction,
    the units before it included; a unit that catches the error and returns must not
    leave the others reported as committed while their writes are gone. It fails with
    `TransactionEnded`; the others commit (run again), with or without savepoints."""
    db = await conflict_db(sqlite_url)
    try:
        runs: dict[str, int] = {}
        units = conflict_units(runs)
        if savepoints:
            db._lanes[0].guarded = 16  # the batch runs with a savepoint per unit
        outcomes = await one_batch(db, *((name, units[name]) for name in order.split()))
        assert outcomes == {"a": "a", "dup": "TransactionEnded", "c": "c"}
        assert await db.read(rows_of_t) == ["a", "c"]
        assert runs["dup"] == 1
        # Alone, too: nothing written, and the writer goes on.
        with pytest.raises(TransactionEnded, match="rolled back its whole transaction"):
            await db.run(units["dup"])
        assert await db.run(units["c"]) == "c"
        assert await db.read(rows_of_t) == ["a", "c", "c"]
    finally:
        await db.close()


@pytest.mark.parametrize("savepoints", [False, True])
async def test_a_unit_raising_after_sqlite_rolled_back_its_transaction_fails_alone(
    sqlite_url: str, savepoints: bool,
) -> None:
    """The same conflict, its error not caught: that unit gets it, the others commit."""
    db = await conflict_db(sqlite_url)
    try:
        units = conflict_units({}, catch=False)
        if savepoints:
            db._lanes[0].guarded = 16
        outcomes = await one_batch(db, ("a", units["a"]), ("dup", units["dup"]),
                                   ("c", units["c"]))
        assert outcomes == {"a": "a", "dup": "IntegrityError", "c": "c"}
        assert await db.read(rows_of_t) == ["a", "c"]
    finally:
        await db.close()


@BOTH
async def test_a_new_database_another_connection_writes_is_waited_for_not_refused(
    sqlite_url: str,
) -> None:
    """Putting a database in WAL mode takes an exclusive lock, which SQLite refuses at
    once, busy timeout or not, while another connection holds the write lock (two
    processes creating one database together): the first write waits for it, up to the
    busy timeout, then fails with `DatabaseBusy` as any write would."""
    path = sqlite_url.removeprefix("sqlite:///")
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("CREATE TABLE t (x)")  # a rollback-journal database, not WAL yet
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t VALUES (1)")
        db = Database(sqlite_url)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(db.run, insert(2))
                await anyio.sleep(0.3)
                other.execute("COMMIT")
            assert await db.read(count) == 2
        finally:
            await db.close()
        other.execute("PRAGMA journal_mode=DELETE")  # as new again, for the busy case
        other.execute("BEGIN IMMEDIATE")
        db = Database(sqlite_url, busy_timeout=0.2)
        try:
            started = anyio.current_time()
            with pytest.raises(DatabaseBusy):
                await db.run(insert(3))
            assert anyio.current_time() - started >= 0.2
        finally:
            await db.close()
            other.execute("ROLLBACK")
    finally:
        other.close()
