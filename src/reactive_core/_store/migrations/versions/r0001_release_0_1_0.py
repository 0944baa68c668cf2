"""The core's tables as release 0.1.0 created them (`create_all`, before migrations).

Revision ID: 0001
Revises: (none)

A database made by 0.1.0 has exactly these tables and no version table; it is stamped
with this revision and upgraded from here, keeping its data.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table(
        "entity_state",
        sa.Column("kind", sa.String(200), nullable=False),
        sa.Column("entity_id", sa.String(500), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "entity_id"),
    )
    op.create_table(
        "entity_changes",
        sa.Column("seq", _BigId, autoincrement=True, nullable=False),
        sa.Column("change_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(200), nullable=False),
        sa.Column("entity_id", sa.String(500), nullable=False),
        sa.Column("prev", sa.JSON(), nullable=True),
        sa.Column("next", sa.JSON(), nullable=True),
        sa.Column("delta", sa.JSON(), nullable=False),
        sa.Column("changed_fields", sa.JSON(), nullable=False),
        sa.Column("actor_type", sa.String(100), nullable=False),
        sa.Column("actor_id", sa.String(500), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("change_id"),
    )
    op.create_index("ix_entity_changes_entity", "entity_changes", ["kind", "entity_id", "seq"])
    op.create_index("ix_entity_changes_occurred_at", "entity_changes", ["occurred_at"])
    op.create_index("ix_entity_changes_txid", "entity_changes", ["txid"])
    op.create_table(
        "entity_transitions",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(200), nullable=False),
        sa.Column("entity_id", sa.String(500), nullable=False),
        sa.Column("field", sa.String(200), nullable=False),
        sa.Column("from_value", sa.Text(), nullable=True),
        sa.Column("to_value", sa.Text(), nullable=True),
        sa.Column("transitioned_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_entity_transitions_lookup", "entity_transitions",
                    ["kind", "entity_id", "field", "transitioned_at"])
    op.create_table(
        "entity_deliveries",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.Column("group_name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(200), nullable=False),
        sa.Column("entity_id", sa.String(500), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(100), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_entity_deliveries_pending_entity", "entity_deliveries",
                    ["group_name", "kind", "entity_id", "id"],
                    postgresql_where=_PENDING, sqlite_where=_PENDING)
    op.create_index("ix_entity_deliveries_pending", "entity_deliveries", ["id"],
                    postgresql_where=_PENDING, sqlite_where=_PENDING)
    op.create_index("ix_entity_deliveries_status", "entity_deliveries", ["status", "id"])
    op.create_table(
        "work_queue_routes",
        sa.Column("group_name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(200), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_name", "kind"),
    )
    op.create_table(
        "job_runs",
        sa.Column("job", sa.String(200), nullable=False),
        sa.Column("slot", sa.String(40), nullable=False),
        sa.Column("instance", sa.String(100), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("job", "slot"),
        sa.UniqueConstraint("job", "slot", name="uq_job_runs_slot"),
    )


def downgrade() -> None:
    raise NotImplementedError("reactive-core migrations only go forward: restore a backup")
