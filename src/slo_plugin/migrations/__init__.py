"""The SLO plugin's schema history (Alembic), applied at start like every component's."""
