"""The core's Alembic script directory: `versions/` holds its revisions (see `_store.migrate`)."""
