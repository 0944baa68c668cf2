"""The health plugin's tables.

The `health` entity is computed from `health_system_associations` (which checks
count for a system, with their thresholds) and `health_check_runs` (the newest 100
runs per check). Every row that `read` depends on is scoped to one system, so each
write can happen inside that system's own `mutate`: that is why an association
carries `check_paused`, a copy of its configuration's `paused` flag, written per
system when a check is paused or resumed.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

metadata = MetaData()

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
_BigId = BigInteger().with_variant(Integer(), "sqlite")
_STATUSES = "'healthy', 'degraded', 'unhealthy'"

health_check_configurations = Table(
    "health_check_configurations",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("name", String(500), nullable=False),
    Column("strategy", String(100), nullable=False),
    Column("config", JSON, nullable=False),
    Column("interval_seconds", Float, nullable=False),
    Column("paused", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("interval_seconds > 0", name="ck_health_check_interval_positive"),
)

health_system_associations = Table(
    "health_system_associations",
    metadata,
    Column("system_id", String(500), primary_key=True),
    Column(
        "configuration_id", String(255),
        ForeignKey("health_check_configurations.id", name="fk_health_assoc_config"),
        primary_key=True,
    ),
    Column("enabled", Boolean, nullable=False),
    Column("thresholds", JSON, nullable=True),
    Column("check_paused", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_health_assoc_config", "configuration_id", "system_id"),
)

health_check_runs = Table(
    "health_check_runs",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("system_id", String(500), nullable=False),
    Column("configuration_id", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("latency_ms", Float, nullable=True),
    Column("result", JSON, nullable=False),
    Column("timestamp", DateTime(timezone=True), nullable=False),
    CheckConstraint(f"status IN ({_STATUSES})", name="ck_health_run_status"),
    # Covers the evaluation read (newest runs of a pair, status only).
    Index("ix_health_runs_newest", "system_id", "configuration_id", "timestamp", "id", "status"),
    Index("ix_health_runs_timestamp", "timestamp"),
)

health_check_state_transitions = Table(
    "health_check_state_transitions",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("system_id", String(500), nullable=False),
    Column("configuration_id", String(255), nullable=False),
    Column("from_status", String(16), nullable=True),
    Column("to_status", String(16), nullable=False),
    Column("run_id", BigInteger, nullable=True),
    Column("transitioned_at", DateTime(timezone=True), nullable=False),
    Index("ix_health_state_transitions_pair", "system_id", "configuration_id",
          "transitioned_at", "id"),
)

health_check_run_aggregates = Table(
    "health_check_run_aggregates",
    metadata,
    Column("system_id", String(500), primary_key=True),
    Column("configuration_id", String(255), primary_key=True),
    Column("bucket_start", DateTime(timezone=True), primary_key=True),
    Column("run_count", Integer, nullable=False),
    Column("healthy_count", Integer, nullable=False),
    Column("latency_sum_ms", Float, nullable=False),
    Column("latency_count", Integer, nullable=False),
    Column("p95_latency_ms", Float, nullable=True),
)

ENTITY_TABLES = (health_check_configurations.name, health_system_associations.name)
"""The tables the `health` kind is assembled from (besides the raw runs)."""
