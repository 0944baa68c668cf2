"""Durable timers replace job runs; deliveries get a `ready` head flag; seq AUTOINCREMENT.

Revision ID: 0002
Revises: 0001

* `entity_changes.seq` is AUTOINCREMENT on SQLite (a table rebuild), so a seq is never
  handed out twice, even after retention pruned the newest rows.
* `entity_deliveries.ready` marks the head of each (group, kind, entity) queue: a
  pending row is ready exactly when it has the lowest id among the pending rows of its
  queue (the row 0.1.0 would have claimed next); finished rows are not ready. The
  partial indexes are replaced by ones on the heads; lease owners get 200 characters.
* `job_runs` is dropped (scheduled jobs are durable timers now: they re-arm
  themselves at start-up) and `reactive_timers` is created.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None

_deliveries = sa.table(
    "entity_deliveries", sa.column("id", sa.BigInteger()), sa.column("group_name"),
    sa.column("kind"), sa.column("entity_id"), sa.column("status"),
    sa.column("ready", sa.Boolean()))


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("entity_changes", recreate="always",
                                  table_kwargs={"sqlite_autoincrement": True}):
            pass

    op.drop_index("ix_entity_deliveries_pending_entity", table_name="entity_deliveries")
    op.drop_index("ix_entity_deliveries_pending", table_name="entity_deliveries")
    op.add_column("entity_deliveries", sa.Column("ready", sa.Boolean(), nullable=True))
    d = _deliveries
    heads = (sa.select(sa.func.min(d.c.id)).where(d.c.status == "pending")
             .group_by(d.c.group_name, d.c.kind, d.c.entity_id))
    op.execute(d.update().values(ready=False))
    op.execute(d.update().where(d.c.id.in_(heads))
               .values(ready=True))
    with op.batch_alter_table("entity_deliveries") as batch:
        batch.alter_column("ready", existing_type=sa.Boolean(), nullable=False)
        batch.alter_column("lease_owner", existing_type=sa.String(100), type_=sa.String(200),
                           existing_nullable=True)
    due = sa.text("status = 'pending' AND ready")
    pending = sa.text("status = 'pending'")
    op.create_index("ix_entity_deliveries_due", "entity_deliveries",
                    ["group_name", "kind", "available_at", "id"],
                    postgresql_where=due, sqlite_where=due)
    op.create_index("ix_entity_deliveries_entity", "entity_deliveries",
                    ["kind", "entity_id", "group_name", "id"],
                    postgresql_where=pending, sqlite_where=pending)

    op.drop_table("job_runs")
    op.create_table(
        "reactive_timers",
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(500), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("every_seconds", sa.Float(), nullable=True),
        sa.Column("cron", sa.String(200), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("fired_count", sa.Integer(), nullable=False),
        sa.Column("last_fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("topic", "key"),
    )
    op.create_index("ix_reactive_timers_due", "reactive_timers", ["topic", "available_at"])


def downgrade() -> None:
    raise NotImplementedError("reactive-core migrations only go forward: restore a backup")
