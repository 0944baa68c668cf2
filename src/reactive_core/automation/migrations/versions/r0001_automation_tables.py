"""The automation engine's tables.

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
        "automation_runs",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
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
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rule_id", "occurrence", name="uq_automation_runs_occurrence"),
    )
    op.create_index("ix_automation_runs_rule", "automation_runs", ["rule_id", "id"])
    op.create_index("ix_automation_runs_rule_status", "automation_runs",
                    ["rule_id", "status", "id"])
    op.create_table(
        "automation_waits",
        sa.Column("run_id", _BigId, nullable=False),
        sa.Column("kind", sa.String(255), nullable=False),
        sa.Column("entity_id", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "kind", "entity_id"),
    )
    op.create_index("ix_automation_waits_ref", "automation_waits", ["kind", "entity_id"])
    op.create_table(
        "automation_window_hits",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.String(255), nullable=False),
        sa.Column("trigger", sa.Integer(), nullable=False),
        sa.Column("partition", sa.String(255), nullable=False),
        sa.Column("occurred_at", _Stamp, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_automation_window_hits", "automation_window_hits",
                    ["rule_id", "trigger", "partition", "occurred_at"])
    op.create_table(
        "automation_window_latches",
        sa.Column("rule_id", sa.String(255), nullable=False),
        sa.Column("trigger", sa.Integer(), nullable=False),
        sa.Column("partition", sa.String(255), nullable=False),
        sa.Column("fired_at", _Stamp, nullable=False),
        sa.PrimaryKeyConstraint("rule_id", "trigger", "partition"),
    )
    op.create_table(
        "automation_load_errors",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("origin", sa.String(1000), nullable=False),
        sa.Column("path", sa.String(1000), nullable=True),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column("rule_id", sa.String(255), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("recorded_at", _Stamp, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_automation_load_errors_origin", "automation_load_errors", ["origin"])


def downgrade() -> None:
    for table in ("automation_load_errors", "automation_window_latches",
                  "automation_window_hits", "automation_waits", "automation_runs"):
        op.drop_table(table)
