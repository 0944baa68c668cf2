"""Shared fixtures: SQLite files in a temp dir, fresh PostgreSQL databases per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sqlite_url(tmp_path: os.PathLike[str]) -> str:
    return f"sqlite:///{tmp_path}/reactive.db"


def _pg_admin_url() -> str | None:
    url = os.environ.get("REACTIVE_TEST_PG_URL")
    if url:
        return url
    if os.environ.get("PGHOST") or os.environ.get("PGDATABASE") or os.environ.get("CI"):
        host = os.environ.get("PGHOST", "127.0.0.1")
        user = os.environ.get("PGUSER", "postgres")
        port = os.environ.get("PGPORT", "5432")
        password = os.environ.get("PGPASSWORD", "")
        auth = f"{user}:{password}@" if password else f"{user}@"
        return f"postgresql://{auth}{host}:{port}/{os.environ.get('PGDATABASE', 'postgres')}"
    return "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[str]:
    """A URL to a PostgreSQL server's maintenance database; skips (or fails under CI)."""
    url = _pg_admin_url()
    assert url is not None
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3):
            pass
    except Exception as exc:  # noqa: BLE001 - any failure means: not reachable
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"PostgreSQL is required under CI but not reachable at {url}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {url}: {exc}")
    yield url


@pytest.fixture
def pg_url(pg_admin: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"rc_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    admin = make_url(pg_admin.replace("postgresql://", "postgresql+psycopg://", 1))
    yield admin.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
