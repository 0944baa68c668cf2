"""The automation engine's Alembic history (component `automation`)."""
