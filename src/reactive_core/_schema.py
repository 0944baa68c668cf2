"""The framework's own tables: entity state, the change feed, transitions, deliveries, jobs."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
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
    # pending (waiting, leased or backing off), done, dead
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("available_at", DateTime(timezone=True), nullable=False),
    Column("lease_owner", String(100), nullable=True),
    Column("lease_expires_at", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    # Pending rows are few and hot; finished ones pile up until retention. Partial
    # indexes keep claiming independent of the finished backlog.
    Index("ix_entity_deliveries_pending_entity", "group_name", "kind", "entity_id", "id",
          postgresql_where=text("status = 'pending'"), sqlite_where=text("status = 'pending'")),
    Index("ix_entity_deliveries_pending", "id",
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

job_runs = Table(
    "job_runs",
    metadata,
    Column("job", String(200), primary_key=True),
    Column("slot", String(40), primary_key=True),
    Column("instance", String(100), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("error", Text, nullable=True),
    UniqueConstraint("job", "slot", name="uq_job_runs_slot"),
)

CORE_TABLES = frozenset(metadata.tables)
