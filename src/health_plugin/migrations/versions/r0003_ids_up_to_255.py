"""Check ids follow the core's identifier rule: up to 255 characters (were 200).

Revision ID: 0003
Revises: 0002

Widens every `configuration_id` column and the checks' primary key.

On PostgreSQL the columns are altered in place (a longer `varchar` needs no rewrite).
SQLite stores text whatever length a column declares, so only the declarations change:
the tables' `CREATE TABLE` text is edited in `sqlite_master` (SQLite's documented way
for a change that leaves the stored rows as they are), the schema version bumped so
that other connections reload it. Rebuilding the tables instead would drop the checks
table under the associations' foreign key, which SQLite refuses while foreign keys are
enforced.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("health_check_configurations", "id"),
    ("health_system_associations", "configuration_id"),
    ("health_check_runs", "configuration_id"),
    ("health_check_state_transitions", "configuration_id"),
    ("health_check_run_aggregates", "configuration_id"),
)


def _resize(length_from: int, length_to: int) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        for table, column in _COLUMNS:
            op.alter_column(table, column, existing_type=sa.String(length_from),
                            type_=sa.String(length_to), existing_nullable=False)
        return
    version = int(bind.exec_driver_sql("PRAGMA schema_version").scalar_one())
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        for table, column in _COLUMNS:
            sql = bind.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                (table,)).scalar_one()
            declaration = re.compile(
                rf"(^|[\s(,])(\"?{column}\"?\s+)VARCHAR\({length_from}\)", re.MULTILINE)
            changed, count = declaration.subn(rf"\g<1>\g<2>VARCHAR({length_to})", sql)
            if count != 1:
                raise RuntimeError(
                    f"{table}.{column}: expected one declaration VARCHAR({length_from}) in "
                    f"its CREATE TABLE, found {count}: {sql!r}")
            bind.exec_driver_sql(
                "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
                (changed, table))
        bind.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
    finally:
        bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    _resize(200, 255)


def downgrade() -> None:
    _resize(255, 200)
