"""The health plugin's tables as release 0.1.0 created them (`create_all`).

Revision ID: 0001
Revises: (none)
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


def upgrade() -> None:
    op.create_table(
        "health_check_configurations",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("strategy", sa.String(100), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("interval_seconds", sa.Float(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("interval_seconds > 0", name="ck_health_check_interval_positive"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "health_system_associations",
        sa.Column("system_id", sa.String(500), nullable=False),
        sa.Column("configuration_id", sa.String(200), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=True),
        sa.Column("check_paused", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["configuration_id"], ["health_check_configurations.id"],
                                name="fk_health_assoc_config"),
        sa.PrimaryKeyConstraint("system_id", "configuration_id"),
    )
    op.create_index("ix_health_assoc_config", "health_system_associations",
                    ["configuration_id", "system_id"])
    op.create_table(
        "health_check_runs",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("system_id", sa.String(500), nullable=False),
        sa.Column("configuration_id", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('healthy', 'degraded', 'unhealthy')",
                           name="ck_health_run_status"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_health_runs_newest", "health_check_runs",
                    ["system_id", "configuration_id", "timestamp", "id", "status"])
    op.create_index("ix_health_runs_timestamp", "health_check_runs", ["timestamp"])
    op.create_table(
        "health_check_state_transitions",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("system_id", sa.String(500), nullable=False),
        sa.Column("configuration_id", sa.String(200), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("transitioned_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_health_state_transitions_pair", "health_check_state_transitions",
                    ["system_id", "configuration_id", "transitioned_at", "id"])
    op.create_table(
        "health_check_run_aggregates",
        sa.Column("system_id", sa.String(500), nullable=False),
        sa.Column("configuration_id", sa.String(200), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_count", sa.Integer(), nullable=False),
        sa.Column("healthy_count", sa.Integer(), nullable=False),
        sa.Column("latency_sum_ms", sa.Float(), nullable=False),
        sa.Column("latency_count", sa.Integer(), nullable=False),
        sa.Column("p95_latency_ms", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("system_id", "configuration_id", "bucket_start"),
    )
    op.create_table(
        "health_check_schedule",
        sa.Column("configuration_id", sa.String(200), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["configuration_id"], ["health_check_configurations.id"],
                                name="fk_health_schedule_config"),
        sa.PrimaryKeyConstraint("configuration_id"),
    )
    op.create_index("ix_health_schedule_due", "health_check_schedule", ["next_run_at"])


def downgrade() -> None:
    raise NotImplementedError("health migrations only go forward: restore a backup")
