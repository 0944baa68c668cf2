"""`reactive` on PostgreSQL, in-process: a clear error without the driver, the demo on a
database of its own, and a schema other than `public` chosen in the URL."""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from reactive_core._cli.main import run

CONFIG = """\
systems:
  - {id: api, name: Orders API}
checks:
  - id: api-tcp
    strategy: tcp
    config: {host: 127.0.0.1, port: 9}
associations:
  - {system: api, check: api-tcp}
"""


@pytest.fixture(autouse=True)
def _catalog_and_health(monkeypatch: pytest.MonkeyPatch) -> None:
    """The installed catalog and health plugins, whatever else is installed."""
    for name in ("REACTIVE_DATABASE_URL", "REACTIVE_DISABLE_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REACTIVE_PLUGINS", "catalog,health")


@pytest.mark.parametrize("argv", [["changes"], ["serve"], ["demo"], ["db", "upgrade"]],
                         ids=" ".join)
def test_a_postgresql_url_without_the_driver_says_which_extra_to_install(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` now fails

    status = run(["--database-url", "postgresql://reactive@127.0.0.1/reactive", *argv])

    out, err = capsys.readouterr()
    assert (status, out) == (2, "")
    assert err.startswith("error: database postgresql+psycopg://reactive@127.0.0.1/reactive "
                          "needs the PostgreSQL driver psycopg, which cannot be imported (")
    assert err.rstrip().endswith("install reactive-core's 'postgres' extra: "
                                 "pip install 'reactive-core[postgres]'")
    assert "Traceback" not in err


def test_another_postgresql_driver_is_refused_naming_the_one_expected(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = run(["--database-url", "postgresql+psycopg2cffi://reactive@127.0.0.1/reactive",
                  "changes"])

    err = capsys.readouterr().err
    assert status == 2
    assert "needs the PostgreSQL driver psycopg2cffi, which cannot be imported" in err
    assert "expected the psycopg driver (postgresql+psycopg://...)" in err


@pytest.mark.postgres
def test_demo_runs_on_an_empty_postgresql_database_and_refuses_a_used_one(
    pg_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    plain = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)

    assert run(["demo", "--seconds", "0", "--database-url", plain]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"reactive demo on {make_url(pg_url).render_as_string()}\n")
    assert "deliveries: 21 (21 done)" in out

    assert run(["status", "--database-url", plain, "--json"]) == 2  # db ends unhealthy
    capsys.readouterr()
    assert run(["demo", "--seconds", "0", "--database-url", plain]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "already holds changes: `reactive demo` expected an empty database" in err


@pytest.mark.postgres
def test_a_schema_chosen_with_search_path_in_the_url_holds_every_table(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    conninfo = make_url(pg_url).set(drivername="postgresql").render_as_string(
        hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA reactive_app")
    url = f"{conninfo}?options=-csearch_path%3Dreactive_app"
    config = tmp_path / "health.yaml"
    config.write_text(CONFIG, encoding="utf-8")

    assert run(["apply", "-f", str(config), "--database-url", url]) == 0
    assert run(["status", "--database-url", url]) == 0
    out = capsys.readouterr().out
    assert "created check api-tcp (tcp every 60s)" in out
    assert "\napi     Orders API  healthy  1/1" in out

    with psycopg.connect(conninfo) as conn:
        schemas = {schema for (schema,) in conn.execute(
            "SELECT DISTINCT table_schema FROM information_schema.tables "
            "WHERE table_name IN ('entity_changes', 'health_check_runs', "
            "'alembic_version_reactive_core')")}
    assert schemas == {"reactive_app"}
    # Without the search_path, the database's default schema holds nothing of it.
    assert run(["changes", "--database-url", conninfo]) == 2
    assert "has no reactive-core tables" in capsys.readouterr().err
