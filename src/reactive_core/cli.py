"""The `reactive` command line: run a host, apply config, inspect logs and deliveries.

Global options (`--database-url`, `--plugin`, `-v`) may come before or after the
command. Errors raised as `ReactiveCoreError` print `error: <message>` and exit 2.

Only `serve` (and `demo`) run a host's workers: the broadcast feed, the work-queue
dispatcher, scheduled jobs and health checks. `apply` is a client (`workers=False`):
it writes in one transaction and leaves the deliveries it causes to the serving
instances. The inspecting commands (`status`, `transitions`, `changes`,
`deliveries`, `doctor`) load the plugins and read the database without starting
anything, so looking at a database never handles its deliveries, runs its jobs or
its checks.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from . import _tables as tables
from ._config import apply_config_file
from ._db import resolve_database_url
from ._doctor import doctor
from ._errors import ConfigError, ReactiveCoreError
from ._host import Host
from ._schema import CORE_TABLES

logger = logging.getLogger("reactive_core.cli")

EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR = 0, 1, 2
HEALTH_KIND = "health"
"""The health plugin's kind (`health_plugin.HEALTH_KIND`), which `status` lists."""


# -- options --------------------------------------------------------------------------

def _global_options(parser: argparse.ArgumentParser, *, after_command: bool = False) -> None:
    """`--database-url`, `--plugin`, `-v`; after the command they land in `sub_*` dests."""
    prefix = "sub_" if after_command else ""

    def default(value: object) -> object:
        return argparse.SUPPRESS if after_command else value

    parser.add_argument(
        "--database-url", dest=f"{prefix}database_url", metavar="URL", default=default(None),
        help="database to use (default: $REACTIVE_DATABASE_URL or sqlite:///./reactive.db)")
    parser.add_argument(
        "--plugin", dest=f"{prefix}plugins", metavar="MODULE:ATTR", action="append",
        default=default([]),
        help="also load this plugin object (repeatable), besides the installed entry points")
    parser.add_argument(
        "-v", "--verbose", dest=f"{prefix}verbose", action="count", default=default(0),
        help="log more (repeat for debug output)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `reactive`."""
    parser = argparse.ArgumentParser(
        prog="reactive", description="Run and inspect a reactive-core host.")
    _global_options(parser)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, after_command=True)
    listing = argparse.ArgumentParser(add_help=False)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", parents=[common], help="run the host until stopped")
    serve.add_argument("--lease-seconds", type=float, metavar="S",
                       help="work-queue lease length (host config lease_seconds)")
    serve.add_argument("--poll-interval", type=float, metavar="S",
                       help="backstop poll of feed and queue (host config poll_interval)")

    apply = commands.add_parser("apply", parents=[common],
                                help="declare what a config file says (idempotent)")
    apply.add_argument("-f", "--file", required=True, metavar="FILE",
                       help="YAML config file; applied in one transaction")

    commands.add_parser("status", parents=[common, listing],
                        help="each system's health: status, healthy checks, since when")

    transitions = commands.add_parser("transitions", parents=[common, listing],
                                      help="the per-field transition log, newest last")
    transitions.add_argument("--kind", metavar="K")
    transitions.add_argument("--id", dest="entity_id", metavar="ID")
    transitions.add_argument("--field", metavar="F")
    transitions.add_argument("--limit", type=_positive, default=100, metavar="N",
                             help="show the newest N rows (default 100)")

    changes = commands.add_parser("changes", parents=[common, listing],
                                  help="the change feed, newest last")
    changes.add_argument("--kind", metavar="K")
    changes.add_argument("--id", dest="entity_id", metavar="ID")
    changes.add_argument("--after", type=int, default=0, metavar="SEQ",
                         help="only changes with a seq above SEQ")
    changes.add_argument("--limit", type=_positive, default=100, metavar="N",
                         help="show the newest N changes (default 100)")

    deliveries = commands.add_parser("deliveries", parents=[common, listing],
                                     help="work-queue deliveries, newest first")
    deliveries.add_argument("--dead", action="store_true", help="only dead letters")
    deliveries.add_argument("--status", choices=["pending", "done", "dead"])
    deliveries.add_argument("--group", metavar="G")
    deliveries.add_argument("--limit", type=_positive, default=100, metavar="N")
    deliveries.add_argument("--replay", type=int, metavar="ID",
                            help="re-queue the dead-lettered delivery ID")

    commands.add_parser("doctor", parents=[common, listing],
                        help="check plugin tables, declarations and dead letters")

    demo = commands.add_parser(
        "demo", parents=[common],
        help="a self-contained run of the catalog and health checks, printing what happens")
    demo.add_argument("--seconds", type=float, default=10.0, metavar="N",
                      help="pace the demo to take about N seconds (default 10; 0 = as fast as "
                           "it goes)")
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


def _merge_globals(args: argparse.Namespace) -> argparse.Namespace:
    """Fold the options given after the command into the global ones."""
    args.plugins = [*args.plugins, *getattr(args, "sub_plugins", [])]
    args.verbose = args.verbose + getattr(args, "sub_verbose", 0)
    args.database_url = getattr(args, "sub_database_url", None) or args.database_url
    return args


def load_plugin(spec: str) -> object:
    """Import `MODULE:ATTR` (or a plugin module `MODULE`); a class is instantiated."""
    module_name, _, attr = spec.partition(":")
    if not module_name or (":" in spec and not attr):
        raise ConfigError(f"--plugin {spec!r}: expected MODULE:ATTR, e.g. 'my_app.plugins:plugin'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"--plugin {spec!r}: cannot import module {module_name!r}: "
            f"{type(exc).__name__}: {exc}") from exc
    for part in attr.split(".") if attr else ():
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(
                f"--plugin {spec!r}: module {module_name!r} has no attribute {attr!r}: "
                f"expected the name of a plugin object") from None
    if isinstance(obj, type):
        try:
            obj = obj()
        except Exception as exc:
            raise ConfigError(f"--plugin {spec!r}: cannot instantiate class {attr!r} without "
                              f"arguments: {exc}") from exc
    return obj


# -- hosts ----------------------------------------------------------------------------

def _database_url(args: argparse.Namespace) -> str:
    return resolve_database_url(args.database_url)


def _make_host(args: argparse.Namespace, config: dict[str, Any]) -> Host:
    plugins = [load_plugin(spec) for spec in args.plugins]
    return Host(database_url=_database_url(args), plugins=plugins, entry_points=True,
                config=config)


@asynccontextmanager
async def _inspecting(args: argparse.Namespace) -> AsyncIterator[Host]:
    """A host whose plugins are loaded but whose workers never start (read, replay)."""
    host = _make_host(args, {"workers": False})
    url = host.db.url
    try:
        host.load_plugins()
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists():
            raise ConfigError(f"no database at {parsed.database!r}: expected an existing "
                              "SQLite file (run `reactive apply` or `reactive serve` first)")
        existing = await host.table_names()
        if "entity_changes" not in existing:
            raise ConfigError(f"database {tables.display_url(url)} has no reactive-core tables: "
                              "expected one that `reactive serve` or `reactive apply` set up")
        if missing := sorted(CORE_TABLES - existing):
            raise ConfigError(
                f"database {tables.display_url(url)} lacks the reactive-core tables "
                f"{', '.join(missing)} of this version: run `reactive serve` or `reactive apply` "
                "once to create them")
        yield host
    finally:
        await host.db.close()


# -- commands -------------------------------------------------------------------------

async def cmd_serve(args: argparse.Namespace) -> int:
    """Run the host until SIGINT or SIGTERM, then stop it cleanly."""
    config: dict[str, Any] = {}
    if args.lease_seconds is not None:
        config["lease_seconds"] = args.lease_seconds
    if args.poll_interval is not None:
        config["poll_interval"] = args.poll_interval
    host = _make_host(args, config)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with host:
            url = tables.display_url(host.db.url)
            logger.info("plugins: %s", ", ".join(host.plugin_names) or "none")
            print(f"reactive serving on {url} as {host.instance_id}", flush=True)
            async for signum in signals:
                logger.info("received %s; shutting down", signal.Signals(signum).name)
                break
    logger.info("stopped")
    return EXIT_OK


async def cmd_apply(args: argparse.Namespace) -> int:
    """Apply one config file in one transaction; print what changed."""
    async with _make_host(args, {"workers": False}) as host:
        lines = await apply_config_file(host, args.file)
    for line in lines:
        print(line)
    if not lines:
        print("no changes")
    return EXIT_OK


async def cmd_status(args: argparse.Namespace) -> int:
    """Each system's health, from the health plugin's checks."""
    async with _inspecting(args) as host:
        await _require_health(host)
        rows = await tables.system_statuses(host)
    now = datetime.now(UTC)
    print(tables.to_json(rows) if args.json else tables.status_table(rows, now=now))
    return EXIT_OK


async def _require_health(host: Host) -> None:
    """A clear error unless the health plugin is loaded and its tables exist."""
    kind = host.registry.kinds.get(HEALTH_KIND)
    if kind is None:
        raise ConfigError(
            "`reactive status` needs the health plugin, which is not loaded: expected the "
            "installed `health` plugin enabled (not excluded by REACTIVE_PLUGINS or "
            "REACTIVE_DISABLE_PLUGINS), or --plugin health_plugin:plugin")
    if missing := sorted(set(kind.tables) - await host.table_names()):
        raise ConfigError(
            f"database {tables.display_url(host.db.url)} lacks the health plugin's tables "
            f"{', '.join(missing)}: run `reactive apply` or `reactive serve` once with the "
            "health plugin loaded to create them")


async def cmd_transitions(args: argparse.Namespace) -> int:
    """List transition rows."""
    async with _inspecting(args) as host:
        rows = await host.transitions(kind=args.kind, entity_id=args.entity_id,
                                      field=args.field, limit=args.limit)
    print(tables.to_json(rows) if args.json else tables.transitions_table(rows))
    return EXIT_OK


async def cmd_changes(args: argparse.Namespace) -> int:
    """List the newest changes of the feed."""
    async with _inspecting(args) as host:
        # `Host.changes` pages forward from a seq; the newest N are the tail.
        rows = await host.changes(kind=args.kind, entity_id=args.entity_id,
                                  after_seq=args.after)
    rows = rows[-args.limit:]
    print(tables.to_json(rows) if args.json else tables.changes_table(rows))
    return EXIT_OK


async def cmd_deliveries(args: argparse.Namespace) -> int:
    """List deliveries, or replay a dead letter."""
    async with _inspecting(args) as host:
        if args.replay is not None:
            row = await host.replay(args.replay)
            if not args.json:
                print(f"delivery {row.id} re-queued: a running `reactive serve` will retry it")
            rows = [row]
        else:
            rows = await host.deliveries(dead=args.dead, status=args.status, group=args.group,
                                         limit=args.limit)
    if args.json:
        print(tables.to_json(rows[0] if args.replay is not None else rows))
    else:
        print(tables.deliveries_table(rows))
    return EXIT_OK


async def cmd_doctor(args: argparse.Namespace) -> int:
    """Report plugin tables, declarations and dead letters; exit 1 on problems."""
    async with _inspecting(args) as host:
        report = await doctor(host)
    print(tables.doctor_json(report) if args.json else tables.doctor_text(report))
    return EXIT_OK if report.ok else EXIT_PROBLEMS


async def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo of the catalog and health plugins (see `reactive_core._demo`)."""
    from ._demo import run_demo

    plugins = [load_plugin(spec) for spec in args.plugins]
    return await run_demo(database_url=args.database_url, seconds=args.seconds,
                          plugins=plugins)


COMMANDS: dict[str, Callable[[argparse.Namespace], Awaitable[int]]] = {
    "serve": cmd_serve,
    "apply": cmd_apply,
    "status": cmd_status,
    "transitions": cmd_transitions,
    "changes": cmd_changes,
    "deliveries": cmd_deliveries,
    "doctor": cmd_doctor,
    "demo": cmd_demo,
}


# -- entry point ----------------------------------------------------------------------

def _setup_logging(command: str, verbose: int) -> None:
    base = logging.INFO if command == "serve" else logging.WARNING
    level = max(logging.DEBUG, base - 10 * verbose)
    # httpx logs every request at INFO: one line per health check run is noise.
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")


def run(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, run the command, and return the exit status."""
    args = _merge_globals(build_parser().parse_args(argv))
    _setup_logging(args.command, args.verbose)
    command = COMMANDS[args.command]
    try:
        return anyio.run(command, args)
    except ReactiveCoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except SQLAlchemyError as exc:
        logger.debug("database error", exc_info=True)
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        url = tables.display_url(_database_url(args))
        print(f"error: database {url}: {detail}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (`reactive changes | head`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point of `reactive`."""
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
