"""The catalog's dependency edges, as release 0.1.0 created them (and still are).

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


def upgrade() -> None:
    op.create_table(
        "catalog_dependencies",
        sa.Column("source_system_id", sa.String(500), nullable=False),
        sa.Column("target_system_id", sa.String(500), nullable=False),
        sa.Column("impact", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("impact IN ('informational', 'degraded', 'critical')",
                           name="ck_catalog_dependencies_impact"),
        sa.CheckConstraint("source_system_id <> target_system_id",
                           name="ck_catalog_dependencies_no_self_edge"),
        sa.PrimaryKeyConstraint("source_system_id", "target_system_id"),
    )
    op.create_index("ix_catalog_dependencies_target", "catalog_dependencies",
                    ["target_system_id", "source_system_id"])


def downgrade() -> None:
    raise NotImplementedError("catalog migrations only go forward: restore a backup")
