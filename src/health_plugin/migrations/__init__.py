"""The health plugin's Alembic script directory (`registry.add_tables(..., migrations=)`)."""
