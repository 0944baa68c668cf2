"""The write path's statements, run on the driver cursor of the unit of work.

`mutate` runs six to eight statements per change; through SQLAlchemy's Core each costs
tens of microseconds of Python before the driver sees it, more than the database
spends. These are the same statements as plain SQL built once per dialect and run on
the DBAPI cursor of the very connection (and so the very transaction) SQLAlchemy holds.
Everything else keeps using Core. The column formats match what SQLAlchemy writes and
reads for the table definitions in `_schema` (JSON text; on SQLite, naive UTC
timestamps as "YYYY-MM-DD HH:MM:SS.ffffff").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

_DELIVERY_COLUMNS = ("change_seq, group_name, kind, entity_id, status, attempts, "
                     "available_at, created_at")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class WriteStatements:
    """Hot-path statements of one dialect."""

    def __init__(self, dialect: str) -> None:
        self.postgres = dialect == "postgresql"
        p = "%s" if self.postgres else "?"
        j = "%s::json" if self.postgres else "?"
        self._lock = "SELECT pg_advisory_xact_lock(%s)"
        self._select_state = f"SELECT state FROM entity_state WHERE kind = {p} AND entity_id = {p}"
        self._insert_state = (f"INSERT INTO entity_state (kind, entity_id, state, updated_at) "
                              f"VALUES ({p}, {p}, {j}, {p})")
        self._update_state = (f"UPDATE entity_state SET state = {j}, updated_at = {p} "
                              f"WHERE kind = {p} AND entity_id = {p}")
        self._delete_state = f"DELETE FROM entity_state WHERE kind = {p} AND entity_id = {p}"
        columns = ("change_id, kind, entity_id, prev, next, delta, changed_fields, actor_type, "
                   "actor_id, reason, occurred_at")
        values = f"{p}, {p}, {p}, {j}, {j}, {j}, {j}, {p}, {p}, {p}, {p}"
        if self.postgres:
            self._insert_change = (f"INSERT INTO entity_changes ({columns}, txid) VALUES "
                                   f"({values}, pg_current_xact_id()::text::bigint) RETURNING seq")
        else:
            self._insert_change = f"INSERT INTO entity_changes ({columns}) VALUES ({values})"
        self._insert_transition = (
            "INSERT INTO entity_transitions (change_seq, kind, entity_id, field, from_value, "
            f"to_value, transitioned_at) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})")
        self._insert_delivery = (f"INSERT INTO entity_deliveries ({_DELIVERY_COLUMNS}) "
                                 f"VALUES ({p}, {p}, {p}, {p}, 'pending', 0, {p}, {p})")
        not_local = ("NOT (group_name = ANY(%s))" if self.postgres
                     else "group_name NOT IN (SELECT value FROM json_each(?))")
        self._insert_routed = (
            f"INSERT INTO entity_deliveries ({_DELIVERY_COLUMNS}) "
            f"SELECT {p}, group_name, kind, {p}, 'pending', 0, {p}, {p} "
            f"FROM work_queue_routes WHERE kind = {p} AND {not_local}")

    def stamp(self, value: datetime) -> Any:
        """`value` as the driver parameter for a timestamp column (computed once per write)."""
        if self.postgres:
            return value
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")

    @staticmethod
    def cursor(tx: Connection) -> Any:
        """The driver cursor of `tx`'s connection."""
        return tx.connection.dbapi_connection.cursor()  # type: ignore[union-attr]

    def lock(self, cur: Any, key: int) -> None:
        """The entity's transaction-scoped advisory lock (PostgreSQL only)."""
        if self.postgres:
            cur.execute(self._lock, (key,))

    def load_state(self, cur: Any, kind: str, entity_id: str) -> Any:
        """The stored JSON state of a store-backed entity, or None."""
        cur.execute(self._select_state, (kind, entity_id))
        row = cur.fetchone()
        if row is None:
            return None
        state = row[0]
        return json.loads(state) if isinstance(state, str) else state

    def save_state(self, cur: Any, kind: str, entity_id: str, state: Any, *, existed: bool,
                   now: Any) -> None:
        """Insert, update or (state None) delete a store-backed entity's row."""
        if state is None:
            cur.execute(self._delete_state, (kind, entity_id))
        elif existed:
            cur.execute(self._update_state, (_dumps(state), now, kind, entity_id))
        else:
            cur.execute(self._insert_state, (kind, entity_id, _dumps(state), now))

    def insert_change(
        self, cur: Any, *, change_id: str, kind: str, entity_id: str, prev: Any, next_: Any,
        delta: Any, changed_fields: Sequence[str], actor_type: str, actor_id: str,
        reason: str | None, now: Any,
    ) -> int:
        """Append the change; returns its seq."""
        params = (change_id, kind, entity_id,
                  None if prev is None else _dumps(prev),
                  None if next_ is None else _dumps(next_),
                  _dumps(delta), _dumps(list(changed_fields)), actor_type, actor_id, reason,
                  now)
        cur.execute(self._insert_change, params)
        if self.postgres:
            return int(cur.fetchone()[0])
        return int(cur.lastrowid)

    def insert_transitions(self, cur: Any, rows: list[tuple[Any, ...]], now: Any) -> None:
        """Rows of (seq, kind, entity_id, field, from_text, to_text)."""

        cur.executemany(self._insert_transition, [(*row, now) for row in rows])

    def insert_deliveries(self, cur: Any, *, seq: int, kind: str, entity_id: str,
                          local_groups: list[str], now: Any) -> None:
        """One pending delivery per work-queue group of `kind`: local ones and routed ones."""

        if local_groups:
            cur.executemany(self._insert_delivery,
                            [(seq, group, kind, entity_id, now, now) for group in local_groups])
        local = local_groups if self.postgres else _dumps(local_groups)
        cur.execute(self._insert_routed, (seq, entity_id, now, now, kind, local))

    def notify(self, cur: Any) -> None:
        """Wake every instance's feed and dispatcher at commit (PostgreSQL)."""
        if self.postgres:
            cur.execute("SELECT pg_notify('reactive_changes', '')")
