"""The one transactional write path: lock, read prev, apply, validate, diff, log, enqueue.

`mutate` runs six to eight statements per change; through SQLAlchemy's Core each costs
tens of microseconds of Python before the driver sees it, more than the database
spends. So the write path's own statements are plain SQL built once per backend and
run on the DBAPI cursor of the very connection (and so the very transaction)
SQLAlchemy holds; the column formats match what SQLAlchemy writes and reads for the
tables of `_store.schema` (JSON text; on SQLite, naive UTC timestamps).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import uuid_utils
from pydantic import BaseModel
from sqlalchemy import Connection

from .._clock import Clock
from .._errors import InvalidEntityState
from .._store.backend import Backend, dumps, loads, lock_key
from .._store.group_commit import after_commit, held_lock
from .changes import SYSTEM_ACTOR, Actor, EntityChange, diff_states, value_text
from .ids import MAX_ID_LENGTH, MAX_NAME_LENGTH, id_problem, is_identifier
from .state import state_json, storable_json, validate_state

if TYPE_CHECKING:
    from .._delivery.queue import WorkQueueStore
    from .._host.declarations import EntityKind
    from .._host.registry import Registry

S = TypeVar("S", bound=BaseModel)

Apply = Callable[[Any, Any], Any]
"""A write: `apply(tx, prev) -> next` (tx is a Connection; prev the state or None)."""


@dataclass(frozen=True, slots=True)
class Write(Generic[S]):
    """What one write did: the state before and after, and the change it logged.

    `change` is None when nothing changed (no-op: nothing logged, nothing delivered).
    `prev` is None when the write created the entity, `next` None when it removed it.
    """

    prev: S | None
    next: S | None
    change: EntityChange | None


MAX_REASON_LENGTH = 10_000
"""The longest `reason` a write may record, in characters."""


def _check_write_args(kind: EntityKind, entity_id: str, actor: object,
                      reason: object) -> None:
    """Refuse an actor or a reason that cannot be recorded as given."""
    def refuse(field: str, message: str) -> InvalidEntityState:
        return InvalidEntityState(f"write of {kind.kind}:{entity_id}: {message}",
                                  kind=kind.kind, entity_id=entity_id, fields=(field,))

    if not isinstance(actor, Actor):
        raise refuse("<actor>", f"actor must be an Actor(type, id), received "
                                f"{type(actor).__name__}")
    for field, value, limit in (("type", actor.type, MAX_NAME_LENGTH),
                                ("id", actor.id, MAX_ID_LENGTH)):
        problem = id_problem(value, limit)
        if problem is not None:
            raise refuse("<actor>", f"actor {field} {value!r:.80} {problem}: expected "
                                    f"printable text of 1 to {limit} characters")
    if reason is not None and not isinstance(reason, str):
        raise refuse("<reason>", f"reason must be text or None, received "
                                 f"{type(reason).__name__}")
    if reason is not None and len(reason) > MAX_REASON_LENGTH:
        raise refuse("<reason>", f"reason has {len(reason)} characters, expected at most "
                                 f"{MAX_REASON_LENGTH}")
    if reason is not None and "\x00" in reason:
        raise refuse("<reason>", "reason holds a NUL character, which PostgreSQL cannot store: "
                                 "expected text without NUL characters")
    if reason is not None:
        try:
            reason.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise refuse("<reason>", f"reason holds a lone surrogate at position {exc.start}, "
                                     f"which UTF-8 cannot encode: expected text that UTF-8 "
                                     f"can encode") from None


class WritePath:
    """The write path of one host: its statements, its queue, its wake-up."""

    def __init__(self, *, backend: Backend, queue: WorkQueueStore, registry: Registry,
                 clock: Clock, wake: Callable[[], None]) -> None:
        self._b = b = backend
        self._queue = queue
        self._registry = registry
        self._clock = clock
        self._wake = wake
        p, j = b.p, b.p_json
        self._select_state = f"SELECT state FROM entity_state WHERE kind = {p} AND entity_id = {p}"
        self._select_logged = (f"SELECT next FROM entity_changes WHERE kind = {p} AND "
                               f"entity_id = {p} ORDER BY seq DESC LIMIT 1")
        self._insert_state = (f"INSERT INTO entity_state (kind, entity_id, state, updated_at) "
                              f"VALUES ({p}, {p}, {j}, {p})")
        self._update_state = (f"UPDATE entity_state SET state = {j}, updated_at = {p} "
                              f"WHERE kind = {p} AND entity_id = {p}")
        self._delete_state = f"DELETE FROM entity_state WHERE kind = {p} AND entity_id = {p}"
        self._insert_change = b.insert_change_sql(
            "change_id, kind, entity_id, prev, next, delta, changed_fields, actor_type, "
            "actor_id, reason, occurred_at",
            f"{p}, {p}, {p}, {j}, {j}, {j}, {j}, {p}, {p}, {p}, {p}")
        self._one_statement: dict[str, str] = {}
        self._insert_transition = (
            "INSERT INTO entity_transitions (change_seq, kind, entity_id, field, from_value, "
            f"to_value, transitioned_at) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})")

    def _write_statement(self, state_op: str) -> str:
        """The single statement writing a change (backends `writes_in_one_statement`):
        the state row (`state_op` insert, update, delete or none), the change, its
        transitions and deliveries, and the wake-up; it returns the change's seq."""
        sql = self._one_statement.get(state_op)
        if sql is not None:
            return sql
        ctes = {
            "insert": "st AS (INSERT INTO entity_state (kind, entity_id, state, updated_at) "
                      "VALUES (%(kind)s, %(id)s, CAST(%(state)s AS json), %(now)s))",
            "update": "st AS (UPDATE entity_state SET state = CAST(%(state)s AS json), "
                      "updated_at = %(now)s WHERE kind = %(kind)s AND entity_id = %(id)s)",
            "delete": "st AS (DELETE FROM entity_state WHERE kind = %(kind)s "
                      "AND entity_id = %(id)s)",
            "none": "",
        }
        change = self._b.insert_change_sql(
            "change_id, kind, entity_id, prev, next, delta, changed_fields, actor_type, "
            "actor_id, reason, occurred_at",
            "%(change_id)s, %(kind)s, %(id)s, CAST(%(prev)s AS json), CAST(%(state)s AS json), "
            "CAST(%(delta)s AS json), CAST(%(changed)s AS json), %(actor_type)s, "
            "%(actor_id)s, %(reason)s, %(now)s")
        parts = [cte for cte in (
            ctes[state_op],
            f"ch AS ({change})",
            "tr AS (INSERT INTO entity_transitions (change_seq, kind, entity_id, field, "
            "from_value, to_value, transitioned_at) SELECT ch.seq, %(kind)s, %(id)s, t.f, "
            "t.a, t.b, %(now)s FROM ch, unnest(CAST(%(fields)s AS text[]), "
            "CAST(%(froms)s AS text[]), CAST(%(tos)s AS text[])) AS t(f, a, b))",
            self._queue.enqueue_cte(),
        ) if cte]
        sql = f"WITH {', '.join(parts)} SELECT ch.seq, {self._b.notify_sql} FROM ch"
        self._one_statement[state_op] = sql
        return sql

    @staticmethod
    def _cursor(tx: Connection) -> Any:
        return tx.connection.dbapi_connection.cursor()  # type: ignore[union-attr]

    def _load_state(self, cur: Any, kind: str, entity_id: str) -> tuple[Any, str | None]:
        """The stored state (JSON form) and, where the driver hands it over as text, that
        text (so the change row reuses it instead of encoding it again)."""
        cur.execute(self._select_state, (kind, entity_id))
        row = cur.fetchone()
        if row is None:
            return None, None
        state = row[0]
        return (loads(state), state) if isinstance(state, str) else (state, None)

    def _logged_state(self, cur: Any, kind: str, entity_id: str) -> tuple[bool, Any]:
        """Whether the log holds a change of the entity, and the state it ended with."""
        cur.execute(self._select_logged, (kind, entity_id))
        row = cur.fetchone()
        if row is None:
            return False, None
        state = row[0]
        return True, loads(state) if isinstance(state, str) else state

    def lock_of(self, kind: str, entity_id: str) -> int | None:
        """The key of the entity's write lock (None where the database has none, or for
        an id the write will refuse)."""
        if not is_identifier(entity_id):
            return None
        return self._b.entity_lock(kind, entity_id)

    def lock(self, tx: Connection, kind: str, entity_id: str) -> None:
        """The entity's write lock inside `tx` (held until `tx` ends)."""
        self._b.lock(tx, lock_key(kind, entity_id))

    def write(
        self, tx: Connection, kind: EntityKind, entity_id: str, apply: Apply | None, *,
        actor: Actor | None, reason: str | None, remove: bool,
        read_one: Callable[[Connection, str], BaseModel | None],
    ) -> Write[Any]:
        """One write of `kind:entity_id` inside `tx`; see `EntityHandle.mutate`."""
        problem = id_problem(entity_id)
        if problem is not None:
            raise InvalidEntityState(
                f"entity id of kind {kind.kind!r}: {entity_id!r:.80} {problem}: expected "
                f"printable text of 1 to {MAX_ID_LENGTH} characters without surrounding "
                f"whitespace or control characters", kind=kind.kind,
                entity_id=str(entity_id)[:MAX_ID_LENGTH], fields=("<id>",))
        actor = actor or SYSTEM_ACTOR
        _check_write_args(kind, entity_id, actor, reason)
        b = self._b
        cur = self._cursor(tx)
        if held_lock(tx) != b.entity_lock(kind.kind, entity_id):  # else its savepoint took it
            b.lock_on_cursor(cur, kind.kind, entity_id)
        stored: dict[str, Any] | None = None
        stored_text: str | None = None
        if kind.read is None:
            stored, stored_text = self._load_state(cur, kind.kind, entity_id)
            prev = (None if stored is None
                    else validate_state(kind, entity_id, stored, "stored state"))
        else:
            prev = read_one(tx, entity_id)
        if remove:
            if apply is not None:
                apply(tx, prev)
            nxt: BaseModel | None = None
            if kind.read is not None and read_one(tx, entity_id) is not None:
                # A computed kind's removal is the plugin's write; what it leaves is truth.
                raise InvalidEntityState(
                    f"remove of {kind.kind}:{entity_id}: the plugin's apply left the "
                    f"entity readable; expected its rows to be gone",
                    kind=kind.kind, entity_id=entity_id, fields=("<state>",),
                )
        else:
            raw = apply(tx, prev) if apply is not None else prev
            if raw is None:
                raise InvalidEntityState(
                    f"apply for {kind.kind}:{entity_id} returned None: expected the next "
                    f"state (use remove() to delete)",
                    kind=kind.kind, entity_id=entity_id, fields=("<state>",),
                )
            nxt = validate_state(kind, entity_id, raw, "next state")
        # What was stored is already the JSON form of prev (it was written from one). A
        # computed kind is diffed against what its log last said, not against a read made
        # now: a state that moves with time (an error budget while an outage lasts) would
        # otherwise read the same before and after, and its change never be logged.
        if kind.read is None:
            prev_json = stored
        else:
            logged, last = self._logged_state(cur, kind.kind, entity_id)
            prev_json = last if logged else state_json(prev)
        next_json, next_text = (None, None) if nxt is None else storable_json(
            kind, entity_id, nxt)
        if prev_json is None and next_json is None:
            return Write(prev=None, next=None, change=None)
        if remove:
            changed: tuple[str, ...] = tuple(sorted(prev_json or {}))
            delta: dict[str, Any] = {}
        else:
            delta, changed = diff_states(prev_json, next_json)
            if not changed and (prev_json is None) == (next_json is None):
                return Write(prev=prev, next=nxt, change=None)
        occurred_at = self._clock()
        now = b.stamp(occurred_at)
        # Time-ordered (UUID version 7): a batch's change ids land on the last page of
        # their unique index instead of a random page each.
        change_id = str(uuid_utils.uuid7())
        prev_text = None if prev_json is None else (stored_text or dumps(prev_json))
        groups = self._registry.work_queue_groups(kind.kind)
        state_op = ("none" if kind.read is not None else "delete" if next_json is None
                    else "update" if prev_json is not None else "insert")
        if b.writes_in_one_statement:
            before, after = prev_json or {}, next_json or {}
            cur.execute(self._write_statement(state_op), {
                "kind": kind.kind, "id": entity_id, "state": next_text, "now": now,
                "change_id": change_id, "prev": prev_text, "delta": dumps(delta),
                "changed": dumps(list(changed)), "actor_type": actor.type,
                "actor_id": actor.id, "reason": reason, "fields": list(changed),
                "froms": [value_text(before.get(name)) for name in changed],
                "tos": [value_text(after.get(name)) for name in changed],
                "groups": list(groups)})
            seq = int(cur.fetchone()[0])
        else:
            if state_op == "delete":
                cur.execute(self._delete_state, (kind.kind, entity_id))
            elif state_op == "update":
                cur.execute(self._update_state, (next_text, now, kind.kind, entity_id))
            elif state_op == "insert":
                cur.execute(self._insert_state, (kind.kind, entity_id, next_text, now))
            cur.execute(self._insert_change, (
                change_id, kind.kind, entity_id, prev_text, next_text, dumps(delta),
                dumps(list(changed)), actor.type, actor.id, reason, now))
            seq = b.inserted_seq(cur)
            if changed:
                before, after = prev_json or {}, next_json or {}
                rows = [(seq, kind.kind, entity_id, name, value_text(before.get(name)),
                         value_text(after.get(name)), now) for name in changed]
                if len(rows) == 1:
                    cur.execute(self._insert_transition, rows[0])
                else:
                    cur.executemany(self._insert_transition, rows)
            self._queue.enqueue(cur, seq=seq, kind=kind.kind, entity_id=entity_id,
                                local_groups=groups, now=now)
            b.notify_on_cursor(cur)
        after_commit(tx, self._wake)
        change = EntityChange(
            change_id=change_id, seq=seq, kind=kind.kind, id=entity_id, prev=prev_json,
            next=next_json, delta=delta, changed_fields=changed, actor=actor,
            occurred_at=occurred_at, reason=reason)
        return Write(prev=prev, next=nxt, change=change)
