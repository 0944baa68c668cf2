"""The SLO plugin's tables.

`slo_objectives` backs the computed `slo` kind together with the downtime events and
streaks; the events are also kept as history (`bookkeeping`), as are the daily
snapshots, the achievements and the maintenance windows.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    text,
)

metadata = MetaData()

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
_BigId = BigInteger().with_variant(Integer(), "sqlite")
_Stamp = DateTime(timezone=True)

slo_objectives = Table(
    "slo_objectives",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("system_id", String(255), nullable=False),
    Column("health_check_configuration_id", String(255), nullable=True),
    Column("target", Float, nullable=False),
    Column("window_days", Integer, nullable=False),
    Column("dependency_exclusion", String(16), nullable=False),
    Column("excluded_dependency_ids", JSON, nullable=False),
    Column("burn_rate_thresholds", JSON, nullable=False),
    Column("exclude_maintenance", Boolean, nullable=False),
    Column("created_at", _Stamp, nullable=False),
    Column("updated_at", _Stamp, nullable=False),
    CheckConstraint("target > 0 AND target <= 100", name="ck_slo_objectives_target"),
    CheckConstraint("window_days BETWEEN 1 AND 3650", name="ck_slo_objectives_window"),
    CheckConstraint("dependency_exclusion IN ('strict', 'self-only')",
                    name="ck_slo_objectives_exclusion"),
    Index("ix_slo_objectives_system", "system_id", "id"),
)

slo_downtime_events = Table(
    "slo_downtime_events",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("objective_id", String(255), nullable=False),
    Column("started_at", _Stamp, nullable=False),
    Column("ended_at", _Stamp, nullable=True),
    Column("duration_seconds", Float, nullable=True),
    Column("attribution", String(16), nullable=False),
    Column("upstream_system_id", String(255), nullable=True),
    Column("upstream_system_name", String(500), nullable=True),
    CheckConstraint("attribution IN ('self', 'upstream')", name="ck_slo_events_attribution"),
    # The open event of an objective (at most one), and an objective's events by start.
    Index("ix_slo_events_open", "objective_id", unique=True,
          sqlite_where=text("ended_at IS NULL"), postgresql_where=text("ended_at IS NULL")),
    Index("ix_slo_events_objective_start", "objective_id", "started_at", "id"),
)

slo_snapshots = Table(
    "slo_snapshots",
    metadata,
    Column("objective_id", String(255), primary_key=True),
    Column("date", Date, primary_key=True),
    Column("availability", Float, nullable=False),
    Column("budget_remaining_percent", Float, nullable=False),
    Column("consumed_minutes", Float, nullable=False),
    Column("is_breaching", Boolean, nullable=False),
    Column("streak_days", Integer, nullable=False),
    Column("taken_at", _Stamp, nullable=False),
)

slo_streaks = Table(
    "slo_streaks",
    metadata,
    Column("objective_id", String(255), primary_key=True),
    Column("current_streak", Integer, nullable=False),
    Column("best_streak", Integer, nullable=False),
    Column("best_streak_end", Date, nullable=True),
    Column("last_date", Date, nullable=True),
)

slo_achievements = Table(
    "slo_achievements",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    # The `slo-achievement` entity's id (see milestones.achievement_key).
    Column("key", String(255), nullable=False, unique=True),
    Column("system_id", String(255), nullable=False),
    Column("achievement", String(32), nullable=False),
    Column("unlocked_at", _Stamp, nullable=False),
    UniqueConstraint("system_id", "achievement", name="uq_slo_achievements_system"),
    Index("ix_slo_achievements_unlocked", "unlocked_at", "id"),
)

slo_maintenance_windows = Table(
    "slo_maintenance_windows",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("system_id", String(255), nullable=False),
    Column("starts_at", _Stamp, nullable=False),
    Column("ends_at", _Stamp, nullable=False),
    Column("cancelled", Boolean, nullable=False),
    CheckConstraint("ends_at > starts_at", name="ck_slo_maintenance_order"),
    Index("ix_slo_maintenance_system", "system_id", "starts_at"),
)

slo_digests = Table(
    "slo_digests",
    metadata,
    Column("week", String(16), primary_key=True),
    Column("digest", JSON, nullable=False),
    Column("sent_at", _Stamp, nullable=False),
)

ENTITY_TABLES = (slo_objectives.name, slo_downtime_events.name, slo_streaks.name)
"""The tables the `slo` kind is assembled from."""
ACHIEVEMENT_TABLES = (slo_achievements.name,)
DIGEST_TABLES = (slo_digests.name,)
