"""The HTTP plugin's Alembic history (component `http`)."""
