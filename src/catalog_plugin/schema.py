"""The catalog's own table: dependency edges between systems.

Systems themselves are store-backed entities (the framework's `entity_state`), so the
only plugin table is the edge list, declared non-reactive `bookkeeping`.
"""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, DateTime, Index, MetaData, String, Table

metadata = MetaData()

catalog_dependencies = Table(
    "catalog_dependencies",
    metadata,
    Column("source_system_id", String(500), primary_key=True),
    Column("target_system_id", String(500), primary_key=True),
    Column("impact", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint(
        "impact IN ('informational', 'degraded', 'critical')",
        name="ck_catalog_dependencies_impact",
    ),
    CheckConstraint(
        "source_system_id <> target_system_id", name="ck_catalog_dependencies_no_self_edge"
    ),
    Index("ix_catalog_dependencies_target", "target_system_id", "source_system_id"),
)
