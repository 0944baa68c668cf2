"""`reactive db`: schema migrations from the command line (`upgrade`, `current`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .._errors import ConfigError
from .._host.host import Host
from .._store.migrate import (
    CORE_HISTORY,
    ComponentRevision,
    schema_status,
    upgrade_in,
)
from . import tables
from .commands import EXIT_OK, EXIT_PROBLEMS

DRIVER_EXTRAS = {"psycopg": "postgres"}
"""The extra of reactive-core that installs each database driver it supports."""


def require_driver(url: str) -> None:
    """`ConfigError` naming what to install when the driver of a PostgreSQL `url` cannot
    be imported (rather than a traceback from inside SQLAlchemy). A URL that is not
    valid is left for the database to refuse."""
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() != "postgresql":
            return
        dialect = parsed.get_dialect()
    except ArgumentError:
        return
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        driver = parsed.get_driver_name()
        extra = DRIVER_EXTRAS.get(driver)
        if extra is not None:
            hint = (f"install reactive-core's '{extra}' extra: "
                    f"pip install 'reactive-core[{extra}]'")
        else:
            hint = ("expected the psycopg driver (postgresql+psycopg://...), which "
                    "reactive-core's 'postgres' extra installs: "
                    "pip install 'reactive-core[postgres]'")
        raise ConfigError(f"database {tables.display_url(url)} needs the PostgreSQL driver "
                          f"{driver}, which cannot be imported ({exc}): {hint}") from exc


def require_file(url: str) -> None:
    """`ConfigError` when `url` names a SQLite file that does not exist (reading would
    create an empty one)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists():
        raise ConfigError(f"no database at {parsed.database!r}: expected an existing "
                          "SQLite file (run `reactive apply` or `reactive serve` first)")


async def cmd_db(args: argparse.Namespace, host: Host) -> int:
    """`db upgrade`: apply pending migrations; `db current`: where each component stands."""
    histories = [CORE_HISTORY, *host.registry.histories]
    try:
        if args.db_action == "current":
            require_file(host.database_url)
            revisions = await host.read(schema_status, histories)
            print(_revisions_json(revisions) if args.json else tables.render_table(
                ["component", "current", "head", "status"],
                [(r.component, r.current or ("unversioned" if r.unversioned else "-"), r.head,
                  "up to date" if r.up_to_date else "behind") for r in revisions]))
            return EXIT_OK if all(r.up_to_date for r in revisions) else EXIT_PROBLEMS
        before = {s.component: s for s in await host.read(schema_status, histories)}
        report = await host.run(upgrade_in, histories,
                                unversioned=host.registry.unversioned_metadatas)
    finally:
        await host.close()
    upgraded = {step.component: step for step in report.upgraded}
    for component, status in before.items():
        step = upgraded.get(component)
        if step is None:
            print(f"{component}: {status.head} (up to date)")
        elif step.from_revision == step.to_revision:
            print(f"{component}: {step.to_revision} (stamped: its tables were made before it "
                  "had a version history)")
        else:
            stamped = (" (stamped first: its tables were made before it had a version "
                       "history)") if step.stamped else ""
            print(f"{component}: {step.from_revision or 'none'} {tables.arrow()} "
                  f"{step.to_revision}{stamped}")
    if report.created_tables:
        print(f"created plugin tables: {', '.join(report.created_tables)}")
    return EXIT_OK


def _revisions_json(revisions: Sequence[ComponentRevision]) -> str:
    return tables.to_json([{"component": r.component, "current": r.current, "head": r.head,
                            "unversioned": r.unversioned, "up_to_date": r.up_to_date}
                           for r in revisions])
