"""Everything that differs between SQLite and PostgreSQL, in one place.

The rest of the core writes its statements once, from the fragments and operations a
`Backend` offers: placeholders, the database clock, row locking, advisory locks,
wake-ups (NOTIFY), upserts, lists as parameters, and how the change feed is read in
commit order. No other module asks which database it runs on.

Clocks: on PostgreSQL, times that instances of a cluster compare with each other
(lease expiries, when a delivery or a timer becomes claimable) are computed by the
server (`now()`), so a process whose clock is off cannot steal a live lease. SQLite is
one process: there the host's clock is used, passed as parameters.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

from sqlalchemy import Connection, Table, bindparam, select, text
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url

from .schema import entity_changes

Dialect = Literal["sqlite", "postgresql"]

NOTIFY_CHANNEL = "reactive_changes"
"""The PostgreSQL channel every commit that queues work notifies."""


@lru_cache(maxsize=8192)
def lock_key(*parts: str) -> int:
    """A stable signed 64-bit advisory-lock key for `parts` (e.g. a kind and an id)."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# json's C scanner (JSONDecoder sets it up; the type stubs do not declare it).
_decoder: Any = json.JSONDecoder()
_scan: Callable[[str, int], tuple[Any, int]] = _decoder.scan_once


def loads(text: str) -> Any:
    """The value of JSON text as this project stores it (compact, nothing around it):
    read by json's scanner straight away, a quarter of `json.loads`' cost. Text with
    anything around the value goes to `json.loads`, which also names any error."""
    try:
        value, end = _scan(text, 0)
    except (StopIteration, ValueError):
        return json.loads(text)
    if end != len(text):
        return json.loads(text)
    return value


_COMPACT = json.JSONEncoder(separators=(",", ":"))
_quoted = json.encoder.encode_basestring_ascii


def scalar_json(value: Any) -> str | None:
    """The JSON text of text, an int, a bool or None, as json writes it (without building
    an encoder); None for anything else."""
    kind = type(value)
    if kind is str:
        return _quoted(value)
    if kind is int:
        return int.__repr__(value)
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    return None


def dumps(value: Any) -> str:
    """Compact JSON text, as stored in JSON columns by the driver-level statements.

    The small shapes of every write (a delta of a few scalar fields, a list of field
    names) are written without building an encoder; anything else goes to `json`.
    """
    kind = type(value)
    if kind is dict and len(value) <= 8:
        parts = []
        for key, item in value.items():
            text = scalar_json(item)
            if type(key) is not str or text is None:
                return _COMPACT.encode(value)
            parts.append(f"{_quoted(key)}:{text}")
        return "{" + ",".join(parts) + "}"
    if (kind is list or kind is tuple) and all(type(item) is str for item in value):
        return "[" + ",".join(map(_quoted, value)) + "]"
    return _COMPACT.encode(value)


class Backend(ABC):
    """The operations and SQL fragments of one database."""

    name: Dialect
    p: str
    """The driver's positional placeholder (statements run on the DBAPI cursor)."""
    p_json: str
    """The placeholder of a JSON value given as text."""
    p_now: str
    """On the cursor: "now" from a timestamp parameter (never later than the database's
    clock, where instances share one)."""
    p_list: str
    """On the cursor: a derived table `(value)` of the text list given as one parameter."""
    now: str
    """SQL for "now" by the clock instances must agree on (in `text()` statements)."""
    returning_joins: bool
    """Whether `UPDATE ... FROM other RETURNING` may return the other table's columns."""
    writes_in_one_statement: bool
    """Whether a write's rows (state, change, transitions, deliveries) are written by one
    statement of data-modifying CTEs, with named `%(name)s` parameters."""
    skip_locked: str
    """Appended to a claiming SELECT so concurrent claimers skip each other's rows."""

    @abstractmethod
    def later(self, seconds_param: str) -> str:
        """SQL for `now` plus the seconds in parameter `seconds_param`."""

    @abstractmethod
    def times(self, now: datetime, **seconds: float) -> dict[str, Any]:
        """The parameters `now` and `later(name)` need: `{"now": …, name: …}`."""

    @abstractmethod
    def stamp(self, value: datetime) -> Any:
        """`value` as a driver parameter for a timestamp column."""

    @abstractmethod
    def in_list(self, column: str, param: str) -> str:
        """SQL: `column` is one of the values of list parameter `param`."""

    @abstractmethod
    def list_param(self, values: Sequence[Any]) -> Any:
        """A Python list as the parameter `in_list` and `p_list` expect."""

    @abstractmethod
    def seconds_until(self, expr: str) -> str:
        """SQL for the seconds from `now` until the timestamp `expr` (negative if past)."""

    @abstractmethod
    def rows_table(self, param: str, columns: Sequence[str]) -> str:
        """SQL for a derived table `param` of text `columns`, read from the rows parameter
        `param`."""

    @abstractmethod
    def rows_params(self, param: str, columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
        """The parameters `rows_table(param, columns)` reads `rows` from."""

    @abstractmethod
    def lock(self, tx: Connection, key: int) -> None:
        """A transaction-scoped lock on `key` (SQLite's single writer is the lock)."""

    @abstractmethod
    def lock_on_cursor(self, cur: Any, *parts: str) -> None:
        """`lock` on `lock_key(*parts)`, on the DBAPI cursor of the unit of work (the
        write path's hot loop; the key is computed only where there is a lock to take)."""

    @abstractmethod
    def entity_lock(self, *parts: str) -> int | None:
        """The key of the advisory lock `lock_on_cursor(cur, *parts)` takes, or None where
        there is none to take (the unit of work may then take it with its savepoint:
        `Database.run`'s `lock`)."""

    @abstractmethod
    def lock_statement(self, key: int) -> str:
        """SQL taking the transaction-scoped advisory lock `key` (no parameters)."""

    @abstractmethod
    def try_locks(self, tx: Connection, keys: Sequence[int]) -> set[int]:
        """Take the transaction-scoped locks on `keys` that are free right now, without
        waiting for the others; returns the keys now held."""

    @abstractmethod
    def notify(self, tx: Connection) -> None:
        """Wake every instance's feed, dispatcher and timers when `tx` commits."""

    notify_sql: str
    """A SQL expression doing `notify` (where instances share a database)."""

    @abstractmethod
    def notify_on_cursor(self, cur: Any) -> None:
        """`notify`, on the DBAPI cursor."""

    @abstractmethod
    def insert_change_sql(self, columns: str, values: str) -> str:
        """The change-log insert; on PostgreSQL it records the txid and returns seq."""

    @abstractmethod
    def inserted_seq(self, cur: Any) -> int:
        """The seq of the change just inserted with `insert_change_sql`."""

    @abstractmethod
    def upsert(self, table: Table) -> PgInsert | SqliteInsert:
        """An INSERT on `table` offering `on_conflict_do_update` / `_do_nothing`."""

    @abstractmethod
    def feed_start(self, tx: Connection) -> Any:
        """The change feed's position now (later reads return what commits after)."""

    @abstractmethod
    def feed_read(self, tx: Connection, position: Any, limit: int) -> tuple[Any, list[Any]]:
        """Change rows committed since `position`, by seq, and the new position."""

    @abstractmethod
    def schema_lock(self, tx: Connection) -> None:
        """Serialize schema changes across instances starting together."""

    @abstractmethod
    async def listen(self, url: str, on_notify: Callable[[], None]) -> None:
        """Call `on_notify` whenever another instance commits work (returns if none can)."""


class SqliteBackend(Backend):
    """One process, one writer: seq order is commit order, the writer is the lock."""

    name: Dialect = "sqlite"
    p = "?"
    p_json = "?"
    p_now = "?"
    p_list = "(SELECT value FROM json_each(?))"
    now = ":now"
    skip_locked = ""
    returning_joins = False
    writes_in_one_statement = False
    notify_sql = "NULL"

    def later(self, seconds_param: str) -> str:
        return f":{seconds_param}_at"

    def times(self, now: datetime, **seconds: float) -> dict[str, Any]:
        params: dict[str, Any] = {"now": self.stamp(now)}
        for name, value in seconds.items():
            params[name] = value
            params[f"{name}_at"] = self.stamp(now + timedelta(seconds=value))
        return params

    def stamp(self, value: datetime) -> Any:
        # SQLAlchemy's own storage format for DateTime on SQLite: naive UTC text.
        text = value.isoformat(" ", "microseconds")
        if text.endswith("+00:00"):  # aware UTC, the clock's: cut the zone off
            return text[:-6]
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")

    def in_list(self, column: str, param: str) -> str:
        return f"{column} IN (SELECT value FROM json_each(:{param}))"

    def list_param(self, values: Sequence[Any]) -> Any:
        return dumps(list(values))

    def seconds_until(self, expr: str) -> str:
        return f"((julianday({expr}) - julianday(:now)) * 86400.0)"

    def rows_table(self, param: str, columns: Sequence[str]) -> str:
        picks = ", ".join(f"json_extract(value, '$[{i}]') AS {name}"
                          for i, name in enumerate(columns))
        return f"(SELECT {picks} FROM json_each(:{param})) AS {param}"

    def rows_params(self, param: str, columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
        return {param: dumps([list(row) for row in rows])}

    def lock(self, tx: Connection, key: int) -> None:
        return None

    def lock_on_cursor(self, cur: Any, *parts: str) -> None:
        return None

    def entity_lock(self, *parts: str) -> int | None:
        return None

    def lock_statement(self, key: int) -> str:
        raise NotImplementedError("SQLite has no advisory locks: its one writer is the lock")

    def try_locks(self, tx: Connection, keys: Sequence[int]) -> set[int]:
        return set(keys)

    def notify(self, tx: Connection) -> None:
        return None

    def notify_on_cursor(self, cur: Any) -> None:
        return None

    def insert_change_sql(self, columns: str, values: str) -> str:
        return f"INSERT INTO entity_changes ({columns}) VALUES ({values})"

    def inserted_seq(self, cur: Any) -> int:
        return int(cur.lastrowid)

    def upsert(self, table: Table) -> PgInsert | SqliteInsert:
        return sqlite_insert(table)

    def feed_start(self, tx: Connection) -> Any:
        return int(tx.execute(text("SELECT coalesce(max(seq), 0) FROM entity_changes"))
                   .scalar_one())

    def feed_read(self, tx: Connection, position: Any, limit: int) -> tuple[Any, list[Any]]:
        rows = tx.execute(_SQLITE_FEED, {"after": position, "limit": limit}).all()
        return (int(rows[-1].seq) if rows else position), list(rows)

    def schema_lock(self, tx: Connection) -> None:
        return None

    async def listen(self, url: str, on_notify: Callable[[], None]) -> None:
        return None  # one process: its own commits wake it


class PostgresBackend(Backend):
    """A cluster: advisory locks, SKIP LOCKED claims, NOTIFY, the server's clock."""

    name: Dialect = "postgresql"
    p = "%s"
    p_json = "%s::json"
    p_now = "LEAST(%s, now())"
    p_list = "(SELECT unnest(%s::text[]) AS value)"
    now = "now()"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    returning_joins = True
    writes_in_one_statement = True
    notify_sql = f"pg_notify('{NOTIFY_CHANNEL}', '')"

    def later(self, seconds_param: str) -> str:
        return f"(now() + make_interval(secs => :{seconds_param}))"

    def times(self, now: datetime, **seconds: float) -> dict[str, Any]:
        return dict(seconds)

    def stamp(self, value: datetime) -> Any:
        return value

    def in_list(self, column: str, param: str) -> str:
        return f"{column} = ANY(:{param})"

    def list_param(self, values: Sequence[Any]) -> Any:
        return list(values)

    def seconds_until(self, expr: str) -> str:
        return f"EXTRACT(EPOCH FROM (({expr}) - now()))"

    def rows_table(self, param: str, columns: Sequence[str]) -> str:
        arrays = ", ".join(f"CAST(:{param}_{name} AS text[])" for name in columns)
        return f"unnest({arrays}) AS {param}({', '.join(columns)})"

    def rows_params(self, param: str, columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
        return {f"{param}_{name}": [row[i] for row in rows] for i, name in enumerate(columns)}

    def lock(self, tx: Connection, key: int) -> None:
        tx.execute(_PG_LOCK, {"key": key})

    def lock_on_cursor(self, cur: Any, *parts: str) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(*parts),))

    def entity_lock(self, *parts: str) -> int | None:
        return lock_key(*parts)

    def lock_statement(self, key: int) -> str:
        return f"SELECT pg_advisory_xact_lock({int(key)})"

    def try_locks(self, tx: Connection, keys: Sequence[int]) -> set[int]:
        if not keys:
            return set()
        return set(tx.execute(_PG_TRY_LOCKS, {"keys": sorted(set(keys))}).scalars())

    def notify(self, tx: Connection) -> None:
        tx.execute(_PG_NOTIFY)

    def notify_on_cursor(self, cur: Any) -> None:
        cur.execute(f"SELECT pg_notify('{NOTIFY_CHANNEL}', '')")

    def insert_change_sql(self, columns: str, values: str) -> str:
        return (f"INSERT INTO entity_changes ({columns}, txid) VALUES "
                f"({values}, pg_current_xact_id()::text::bigint) RETURNING seq")

    def inserted_seq(self, cur: Any) -> int:
        return int(cur.fetchone()[0])

    def upsert(self, table: Table) -> PgInsert | SqliteInsert:
        return pg_insert(table)

    def feed_start(self, tx: Connection) -> Any:
        return tx.execute(text("SELECT pg_current_snapshot()::text")).scalar_one()

    def feed_read(self, tx: Connection, position: Any, limit: int) -> tuple[Any, list[Any]]:
        # Sequence numbers are taken before commit, so a lower seq can become visible
        # after a higher one. The feed remembers the snapshot of its previous read and
        # asks for the rows whose transaction was not visible in it: each committed
        # change exactly once, whatever the commit order.
        rows = tx.execute(_PG_FEED, {"prev": position}).all()
        if not rows:
            return position, []
        return rows[0].snapshot, [row for row in rows if row.seq is not None]

    def schema_lock(self, tx: Connection) -> None:
        self.lock(tx, _SCHEMA_LOCK_KEY)

    async def listen(self, url: str, on_notify: Callable[[], None]) -> None:
        import psycopg

        conninfo = make_url(url).set(drivername="postgresql").render_as_string(
            hide_password=False)
        conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        async with conn:
            await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            on_notify()  # whatever was committed while nobody listened
            async for _ in conn.notifies():
                on_notify()
        raise ConnectionError("the LISTEN connection was closed")



_PG_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_PG_TRY_LOCKS = text(
    "SELECT k FROM unnest(CAST(:keys AS bigint[])) AS k WHERE pg_try_advisory_xact_lock(k)")
_PG_NOTIFY = text(f"SELECT pg_notify('{NOTIFY_CHANNEL}', '')")
_SCHEMA_LOCK_KEY = lock_key("reactive_core", "schema")
_PG_FEED = text(
    """
    WITH snap AS (SELECT pg_current_snapshot() AS s)
    SELECT snap.s::text AS snapshot, c.*
    FROM snap LEFT JOIN entity_changes c
      ON c.txid >= pg_snapshot_xmin(CAST(:prev AS pg_snapshot))::text::bigint
     AND NOT pg_visible_in_snapshot(c.txid::text::xid8, CAST(:prev AS pg_snapshot))
    ORDER BY c.seq
    """
)
_SQLITE_FEED = (select(entity_changes).where(entity_changes.c.seq > bindparam("after"))
                .order_by(entity_changes.c.seq).limit(bindparam("limit")))


def backend_for(dialect: Dialect) -> Backend:
    """The backend of `dialect`."""
    return PostgresBackend() if dialect == "postgresql" else SqliteBackend()
