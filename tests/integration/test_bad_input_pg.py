"""The bad-input table of `tests/unit/test_bad_input_table.py` on PostgreSQL.

PostgreSQL refuses at the driver what SQLite stores (NUL characters, lone surrogates,
strings over a column's length): every write-path and config-file case must still be
refused by our own error, with the same message, before the driver sees the value, and
leave every row of every table as it was.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import psycopg
import pytest
from sqlalchemy.engine import make_url

from unit.test_bad_input_table import (
    CONFIG_CASES,
    READ_IDS,
    WRITE_CASES,
    Case,
    assert_seeded,
    check_reads_find_nothing,
    check_refused,
    dump,
    params,
    seed,
)

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


@pytest.fixture(scope="module")
def seeded_pg(pg_admin: str) -> Iterator[str]:
    """One seeded database for the module: no case may change it, and each case checks
    that it did not (all rows of all tables, before and after)."""
    name = f"rc_test_bad_input_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    admin = make_url(pg_admin.replace("postgresql://", "postgresql+psycopg://", 1))
    url = admin.set(database=name).render_as_string(hide_password=False)
    try:
        anyio.run(seed, url)
        assert_seeded(dump(url))
        yield url
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("case", params(WRITE_CASES))
async def test_a_bad_write_is_refused_before_postgresql_sees_it(
    seeded_pg: str, tmp_path: Path, case: Case, anyio_backend: str,
) -> None:
    await check_refused(seeded_pg, tmp_path, case)


@pytest.mark.parametrize("case", params(CONFIG_CASES))
async def test_a_bad_config_file_is_refused_before_postgresql_sees_it(
    seeded_pg: str, tmp_path: Path, case: Case, anyio_backend: str,
) -> None:
    await check_refused(seeded_pg, tmp_path, case)


@pytest.mark.parametrize("entity_id", [pytest.param(v, id=k) for k, v in READ_IDS.items()])
async def test_reads_of_an_id_postgresql_cannot_hold_find_nothing(
    seeded_pg: str, entity_id: str, anyio_backend: str,
) -> None:
    await check_reads_find_nothing(seeded_pg, entity_id)
