"""The automation engine's tables: runs with their traces, the wake index of waiting
runs, and the hits of window gates. Rules themselves are entities (`automation-rule`);
holds, delays, waits and queued runs are durable timers plus these rows."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

_Stamp = sa.DateTime(timezone=True)
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

automation_runs = sa.Table(
    "automation_runs", metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("rule_id", sa.String(255), nullable=False),
    sa.Column("occurrence", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("rule_digest", sa.String(64), nullable=False),
    sa.Column("trigger", sa.JSON(), nullable=False),
    sa.Column("conditions", sa.JSON(), nullable=False),
    sa.Column("trace", sa.JSON(), nullable=False),
    sa.Column("cursor", sa.JSON(), nullable=False),
    sa.Column("waiting", sa.JSON(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("owner", sa.String(255), nullable=True),
    sa.Column("lease_expires_at", _Stamp, nullable=True),
    sa.Column("created_at", _Stamp, nullable=False),
    sa.Column("started_at", _Stamp, nullable=True),
    sa.Column("updated_at", _Stamp, nullable=False),
    sa.Column("finished_at", _Stamp, nullable=True),
    sa.UniqueConstraint("rule_id", "occurrence", name="uq_automation_runs_occurrence"),
    sa.Index("ix_automation_runs_rule", "rule_id", "id"),
    sa.Index("ix_automation_runs_rule_status", "rule_id", "status", "id"),
)

automation_waits = sa.Table(
    "automation_waits", metadata,
    sa.Column("run_id", _BigId, nullable=False),
    sa.Column("kind", sa.String(255), nullable=False),
    sa.Column("entity_id", sa.String(255), nullable=False),
    sa.PrimaryKeyConstraint("run_id", "kind", "entity_id"),
    sa.Index("ix_automation_waits_ref", "kind", "entity_id"),
)

automation_window_hits = sa.Table(
    "automation_window_hits", metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("rule_id", sa.String(255), nullable=False),
    sa.Column("trigger", sa.Integer(), nullable=False),
    sa.Column("partition", sa.String(255), nullable=False),
    sa.Column("occurred_at", _Stamp, nullable=False),
    sa.Index("ix_automation_window_hits", "rule_id", "trigger", "partition", "occurred_at"),
)

automation_window_latches = sa.Table(
    "automation_window_latches", metadata,
    sa.Column("rule_id", sa.String(255), nullable=False),
    sa.Column("trigger", sa.Integer(), nullable=False),
    sa.Column("partition", sa.String(255), nullable=False),
    sa.Column("fired_at", _Stamp, nullable=False),
    sa.PrimaryKeyConstraint("rule_id", "trigger", "partition"),
)

automation_load_errors = sa.Table(
    "automation_load_errors", metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("origin", sa.String(1000), nullable=False),
    sa.Column("path", sa.String(1000), nullable=True),
    sa.Column("line", sa.Integer(), nullable=True),
    sa.Column("rule_id", sa.String(255), nullable=True),
    sa.Column("message", sa.Text(), nullable=False),
    sa.Column("recorded_at", _Stamp, nullable=False),
    sa.Index("ix_automation_load_errors_origin", "origin"),
)
