"""The SLO plugin's tables.

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

_Stamp = sa.DateTime(timezone=True)
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "slo_objectives",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("system_id", sa.String(255), nullable=False),
        sa.Column("health_check_configuration_id", sa.String(255), nullable=True),
        sa.Column("target", sa.Float(), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("dependency_exclusion", sa.String(16), nullable=False),
        sa.Column("excluded_dependency_ids", sa.JSON(), nullable=False),
        sa.Column("burn_rate_thresholds", sa.JSON(), nullable=False),
        sa.Column("exclude_maintenance", sa.Boolean(), nullable=False),
        sa.Column("created_at", _Stamp, nullable=False),
        sa.Column("updated_at", _Stamp, nullable=False),
        sa.CheckConstraint("target > 0 AND target <= 100", name="ck_slo_objectives_target"),
        sa.CheckConstraint("window_days BETWEEN 1 AND 3650", name="ck_slo_objectives_window"),
        sa.CheckConstraint("dependency_exclusion IN ('strict', 'self-only')",
                           name="ck_slo_objectives_exclusion"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_slo_objectives_system", "slo_objectives", ["system_id", "id"])
    op.create_table(
        "slo_downtime_events",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("objective_id", sa.String(255), nullable=False),
        sa.Column("started_at", _Stamp, nullable=False),
        sa.Column("ended_at", _Stamp, nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("attribution", sa.String(16), nullable=False),
        sa.Column("upstream_system_id", sa.String(255), nullable=True),
        sa.Column("upstream_system_name", sa.String(500), nullable=True),
        sa.CheckConstraint("attribution IN ('self', 'upstream')",
                           name="ck_slo_events_attribution"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_slo_events_open", "slo_downtime_events", ["objective_id"],
                    unique=True, sqlite_where=sa.text("ended_at IS NULL"),
                    postgresql_where=sa.text("ended_at IS NULL"))
    op.create_index("ix_slo_events_objective_start", "slo_downtime_events",
                    ["objective_id", "started_at", "id"])
    op.create_table(
        "slo_snapshots",
        sa.Column("objective_id", sa.String(255), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("availability", sa.Float(), nullable=False),
        sa.Column("budget_remaining_percent", sa.Float(), nullable=False),
        sa.Column("consumed_minutes", sa.Float(), nullable=False),
        sa.Column("is_breaching", sa.Boolean(), nullable=False),
        sa.Column("streak_days", sa.Integer(), nullable=False),
        sa.Column("taken_at", _Stamp, nullable=False),
        sa.PrimaryKeyConstraint("objective_id", "date"),
    )
    op.create_table(
        "slo_streaks",
        sa.Column("objective_id", sa.String(255), nullable=False),
        sa.Column("current_streak", sa.Integer(), nullable=False),
        sa.Column("best_streak", sa.Integer(), nullable=False),
        sa.Column("best_streak_end", sa.Date(), nullable=True),
        sa.Column("last_date", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("objective_id"),
    )
    op.create_table(
        "slo_achievements",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("system_id", sa.String(255), nullable=False),
        sa.Column("achievement", sa.String(32), nullable=False),
        sa.Column("unlocked_at", _Stamp, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
        sa.UniqueConstraint("system_id", "achievement", name="uq_slo_achievements_system"),
    )
    op.create_index("ix_slo_achievements_unlocked", "slo_achievements", ["unlocked_at", "id"])
    op.create_table(
        "slo_maintenance_windows",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("system_id", sa.String(255), nullable=False),
        sa.Column("starts_at", _Stamp, nullable=False),
        sa.Column("ends_at", _Stamp, nullable=False),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
        sa.CheckConstraint("ends_at > starts_at", name="ck_slo_maintenance_order"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_slo_maintenance_system", "slo_maintenance_windows",
                    ["system_id", "starts_at"])
    op.create_table(
        "slo_digests",
        sa.Column("week", sa.String(16), nullable=False),
        sa.Column("digest", sa.JSON(), nullable=False),
        sa.Column("sent_at", _Stamp, nullable=False),
        sa.PrimaryKeyConstraint("week"),
    )


def downgrade() -> None:
    raise NotImplementedError("SLO migrations only go forward: restore a backup")
