"""The core's own tables: entity state, the change feed, transitions, deliveries, timers."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
_BigId = BigInteger().with_variant(Integer(), "sqlite")

entity_state = Table(
    "entity_state",
    metadata,
    Column("kind", String(200), primary_key=True),
    Column("entity_id", String(500), primary_key=True),
    Column("state", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

entity_changes = Table(
    "entity_changes",
    metadata,
    # AUTOINCREMENT on SQLite: a seq is never handed out twice, even after retention
    # pruned the newest rows, so the broadcast feed's position stays meaningful.
    Column("seq", _BigId, primary_key=True, autoincrement=True),
    Column("change_id", String(36), nullable=False, unique=True),
    Column("kind", String(200), nullable=False),
    Column("entity_id", String(500), nullable=False),
    Column("prev", JSON, nullable=True),
    Column("next", JSON, nullable=True),
    Column("delta", JSON, nullable=False),
    Column("changed_fields", JSON, nullable=False),
    Column("actor_type", String(100), nullable=False),
    Column("actor_id", String(500), nullable=False),
    Column("reason", Text, nullable=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    # PostgreSQL only: the writing transaction's id, so broadcast tailers can read
    # the feed in commit order (see _delivery.PostgresFeed). NULL on SQLite.
    Column("txid", BigInteger, nullable=True),
    Index("ix_entity_changes_entity", "kind", "entity_id", "seq"),
    Index("ix_entity_changes_occurred_at", "occurred_at"),
    Index("ix_entity_changes_txid", "txid"),
    sqlite_autoincrement=True,
)

entity_transitions = Table(
    "entity_transitions",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("change_seq", BigInteger, nullable=False),
    Column("kind", String(200), nullable=False),
    Column("entity_id", String(500), nullable=False),
    Column("field", String(200), nullable=False),
    Column("from_value", Text, nullable=True),
    Column("to_value", Text, nullable=True),
    Column("transitioned_at", DateTime(timezone=True), nullable=False),
    Index("ix_entity_transitions_lookup", "kind", "entity_id", "field", "transitioned_at"),
)

entity_deliveries = Table(
    "entity_deliveries",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("change_seq", BigInteger, nullable=False),
    Column("group_name", String(200), nullable=False),
    Column("kind", String(200), nullable=False),
    Column("entity_id", String(500), nullable=False),
    # DeliveryStatus: pending (waiting, running or backing off), done, dead.
    Column("status", String(16), nullable=False),
    # The head of its (group, kind, entity) queue: the only pending row that may run.
    # Kept by the work queue (`_delivery.queue`), so a claim never looks past the
    # heads, however long the backlog behind them.
    Column("ready", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    # When the row may be claimed next: at creation, after a backoff, or when the
    # lease of the instance running it expires.
    Column("available_at", DateTime(timezone=True), nullable=False),
    Column("lease_owner", String(200), nullable=True),
    Column("lease_expires_at", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    # Claims read the due heads of one route in order; enqueues find an entity's
    # newest pending row per group. Both only look at pending rows (partial indexes),
    # so neither grows with the finished history or with the backlog.
    Index("ix_entity_deliveries_due", "group_name", "kind", "available_at", "id",
          postgresql_where=text("status = 'pending' AND ready"),
          sqlite_where=text("status = 'pending' AND ready")),
    Index("ix_entity_deliveries_entity", "kind", "entity_id", "group_name", "id",
          postgresql_where=text("status = 'pending'"), sqlite_where=text("status = 'pending'")),
    Index("ix_entity_deliveries_status", "status", "id"),
)

work_queue_routes = Table(
    "work_queue_routes",
    metadata,
    # Which work-queue groups exist anywhere in the cluster, so that every writer
    # enqueues a delivery for every group, including groups only other instances run.
    Column("group_name", String(200), primary_key=True),
    Column("kind", String(200), primary_key=True),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
)

timers = Table(
    "reactive_timers",
    metadata,
    # A durable timer: fires `topic`'s handler with `payload` at `due_at`, once per
    # cluster; recurring timers (every / cron) are re-armed after each firing.
    Column("topic", String(200), primary_key=True),
    Column("key", String(500), primary_key=True),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("every_seconds", Float, nullable=True),
    Column("cron", String(200), nullable=True),
    Column("payload", JSON, nullable=True),
    # TimerStatus: scheduled, or dead (a one-shot timer that failed on every attempt).
    Column("status", String(16), nullable=False),
    # When the row may be claimed next: due_at, a retry's backoff, or a lease expiry.
    Column("available_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_owner", String(200), nullable=True),
    Column("lease_expires_at", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    # Bumped whenever the timer is (re-)armed: a firing that finishes after a re-arm
    # leaves the new schedule alone.
    Column("version", Integer, nullable=False, default=1),
    Column("fired_count", Integer, nullable=False, default=0),
    Column("last_fired_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_reactive_timers_due", "topic", "available_at"),
)

CORE_TABLES = frozenset(metadata.tables)
