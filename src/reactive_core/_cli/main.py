"""The `reactive` command line: run a host, apply config, inspect logs, queues and timers.

Global options (`--database-url`, `--plugin`, `-v`) may come before or after the
command. Errors raised as `ReactiveCoreError` print `error: <message>` and exit 2.

Plugins add commands of their own (hook `reactive_cli_commands`; the health plugin
adds `status`), so the parser is built after the plugins are loaded.

Only `serve` (and `demo`) run a host's workers: the broadcast feed, the work-queue
dispatcher, timers, scheduled jobs. `apply` is a client (`workers=False`): it writes in
one transaction and leaves the deliveries it causes to the serving instances. The
inspecting commands load the plugins and read the database without starting anything,
so looking at a database never handles its deliveries or fires its timers.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from .._entities.changes import EntityChange
from .._entities.state import state_json
from .._errors import ConfigError, ReactiveCoreError
from .._host.configfile import (
    ParsedConfig,
    apply_documents,
    decode_config,
    parse_config,
    read_config_file,
)
from .._host.doctor import doctor
from .._host.host import Host
from .._store.database import resolve_database_url
from .._store.migrate import (
    CORE_HISTORY,
    require_current,
)
from .._timers.timers import TimerStatus
from . import tables
from .commands import EXIT_ABANDONED, EXIT_ERROR, EXIT_OK, EXIT_PROBLEMS, CliCommand, CliContext
from .db import cmd_db, require_driver, require_file
from .demo import run_demo
from .descriptions import add_version_option
from .logs import setup_logging, summary_loop
from .parser import FOLLOW_POLL_SECONDS, _global_options, build_parser
from .serve import ForcedExit

logger = logging.getLogger("reactive_core.cli")

FOLLOW_PAGE = 1000


def _merge_globals(args: argparse.Namespace) -> argparse.Namespace:
    """Fold the options given after the command into the global ones."""
    args.plugins = [*args.plugins, *getattr(args, "sub_plugins", [])]
    args.verbose = args.verbose + getattr(args, "sub_verbose", 0)
    args.database_url = getattr(args, "sub_database_url", None) or args.database_url
    return args


def load_plugin(spec: str) -> object:
    """Import `MODULE:ATTR` (or a plugin module `MODULE`): a class, factory or object."""
    module_name, _, attr = spec.partition(":")
    if not module_name or (":" in spec and not attr):
        raise ConfigError(f"--plugin {spec!r}: expected MODULE:ATTR, e.g. 'my_app.plugins:Plugin'")
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
                f"expected the name of a plugin class or object") from None
    return obj


# -- hosts ----------------------------------------------------------------------------

def _make_host(args: argparse.Namespace, config: dict[str, Any],
               database_url: str | None = None) -> Host:
    plugins = [load_plugin(spec) for spec in args.plugins]
    url = database_url or resolve_database_url(args.database_url)
    require_driver(url)
    return Host(database_url=url, plugins=plugins, entry_points=True, config=config)


@asynccontextmanager
async def _inspecting(host: Host, *, plugin_tables: bool = False) -> AsyncIterator[Host]:
    """`host` (plugins loaded, workers never started) once its database is known to be
    set up and at this version's schema (with `plugin_tables`, the plugins' too); closed
    afterwards. Never migrates: a database that is behind is refused."""
    url = host.database_url
    try:
        host.load_plugins()
        require_file(url)
        existing = await host.table_names()
        if "entity_changes" not in existing:
            raise ConfigError(f"database {tables.display_url(url)} has no reactive-core tables: "
                              "expected one that `reactive serve` or `reactive apply` set up")
        if plugin_tables:
            await host.read(require_current, [CORE_HISTORY, *host.registry.histories],
                            host.registry.unversioned_metadatas)
        else:
            await host.read(require_current, [CORE_HISTORY])
        yield host
    finally:
        await host.close()


# -- commands -------------------------------------------------------------------------

def _new_sqlite_file(url: str) -> Path | None:
    """The SQLite file `url` names, when it does not exist yet (a command creates it)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    path = Path(parsed.database)
    return None if path.exists() else path


async def cmd_serve(args: argparse.Namespace, _host: Host) -> int:
    """Run the host until SIGINT or SIGTERM, then stop it within its shutdown deadline."""
    config: dict[str, Any] = {}
    for option, key in (("lease_seconds", "lease_seconds"), ("poll_interval", "poll_interval"),
                        ("shutdown_timeout", "shutdown_timeout_seconds")):
        if getattr(args, option) is not None:
            config[key] = getattr(args, option)
    if not args.migrate:
        config["migrate"] = False
    if args.rules is not None:
        if not Path(args.rules).is_dir():
            print(f"reactive serve: --rules {args.rules}: not a folder: expected a folder "
                  f"of rule files (*.yaml)", file=sys.stderr)
            return EXIT_ERROR
        config.setdefault("plugins", {})["automation"] = {
            "rules_dir": str(Path(args.rules).resolve())}
    if args.http is not None:
        config.setdefault("plugins", {})["http"] = {"enabled": True, "listen": args.http}
    host = _make_host(args, config)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with host:
            logger.info("plugins: %s", ", ".join(host.plugin_names) or "none")
            print(f"reactive serving on {tables.display_url(host.database_url)} as "
                  f"{host.instance_id}", flush=True)
            if args.summary_seconds > 0:
                host.task_group.start_soon(summary_loop, host, args.summary_seconds)

            async for signum in signals:
                logger.info("received %s; stopping (running handlers get %gs to finish; a "
                            "second signal cuts them off)", signal.Signals(signum).name,
                            host.config.shutdown_timeout_seconds)
                break
            ForcedExit(host).arm()
    if host.abandoned:
        logger.error("stopped, cutting off: %s", ", ".join(host.abandoned))
        return EXIT_ABANDONED
    logger.info("stopped")
    return EXIT_OK


def _read_documents(args: argparse.Namespace, host: Host) -> list[ParsedConfig]:
    """Every `-f` file (`-` is standard input, read once), read and validated."""
    sections = list(host.registry.config_sections.values())
    max_bytes = host.config.config_max_bytes
    parsed: list[ParsedConfig] = []
    for name in args.files:
        if name == "-":
            if any(p.source == "<stdin>" for p in parsed):
                raise ConfigError("-f - is given twice: expected standard input once")
            source = "<stdin>"
            text = decode_config(sys.stdin.buffer.read(max_bytes + 1), source=source,
                                 max_bytes=max_bytes)
        else:
            source = str(name)
            text = read_config_file(name, max_bytes=max_bytes)
        parsed.append(parse_config(text, sections, source=source, max_bytes=max_bytes))
    return parsed


def _remove_sqlite_file(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def cmd_apply(args: argparse.Namespace, _host: Host) -> int:
    """Apply config files in order in one transaction; print what changed.

    The files are read and validated before the database is touched, and a SQLite file
    that this apply created is removed again when the apply is refused (and after a dry
    run): a bad file leaves no database behind.
    """
    host = _make_host(args, {"workers": False})
    host.load_plugins()
    parsed = _read_documents(args, host)
    created = _new_sqlite_file(host.database_url)
    try:
        async with host:
            lines = await apply_documents(host, parsed, prune=args.prune,
                                          dry_run=args.dry_run)
    except BaseException:
        if created is not None:
            _remove_sqlite_file(created)
        raise
    if args.dry_run and created is not None:
        _remove_sqlite_file(created)
    prefix = "would: " if args.dry_run else ""
    for line in lines:
        print(prefix + line)
    if not lines:
        print("no changes")
    return EXIT_OK


async def cmd_transitions(args: argparse.Namespace, host: Host) -> int:
    """List transition rows."""
    async with _inspecting(host):
        rows = await host.transitions(kind=args.kind, entity_id=args.entity_id,
                                      field=args.field, limit=args.limit,
                                      after_id=args.after, before_id=args.before)
    print(tables.to_json(rows) if args.json else tables.transitions_table(rows))
    return EXIT_OK


async def cmd_changes(args: argparse.Namespace, host: Host) -> int:
    """List the newest changes of the feed (paged in SQL); with `--follow`, go on."""
    if args.follow:
        return await _follow_changes(args, host)
    async with _inspecting(host):
        rows = await host.changes(kind=args.kind, entity_id=args.entity_id,
                                  after_seq=args.after, before_seq=args.before,
                                  limit=args.limit, newest=not args.after)
    print(tables.changes_json(rows) if args.json else tables.changes_table(rows))
    return EXIT_OK


async def _follow_changes(args: argparse.Namespace, host: Host) -> int:
    """`changes --follow`: the page `changes` shows, then every change committed after
    it, read from the log by seq (so none is missed or shown twice), one line each,
    until SIGINT or SIGTERM (exit 0)."""
    if args.before is not None:
        raise ConfigError("--follow with --before: expected --follow to start from the "
                          "newest changes or from --after SEQ")

    def emit(rows: list[EntityChange]) -> None:
        for change in rows:
            print(json.dumps(tables.change_json(change), ensure_ascii=False) if args.json
                  else tables.change_line(change))
        sys.stdout.flush()

    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with _inspecting(host):
            rows = await host.changes(kind=args.kind, entity_id=args.entity_id,
                                      after_seq=args.after, limit=args.limit,
                                      newest=not args.after)
            emit(rows)
            last = rows[-1].seq if rows else args.after
            async with anyio.create_task_group() as group:

                async def stop() -> None:
                    async for _signum in signals:
                        group.cancel_scope.cancel()
                        return

                group.start_soon(stop)
                while True:
                    await anyio.sleep(FOLLOW_POLL_SECONDS)
                    while True:
                        rows = await host.changes(kind=args.kind, entity_id=args.entity_id,
                                                  after_seq=last, limit=FOLLOW_PAGE)
                        if rows:
                            emit(rows)
                            last = rows[-1].seq
                        if len(rows) < FOLLOW_PAGE:
                            break
    return EXIT_OK


async def cmd_get(args: argparse.Namespace, host: Host) -> int:
    """Print one entity's current state as JSON; exit 1 when it does not exist."""
    handle = host.entity(args.kind)  # an unknown kind: the error lists the known ones
    async with _inspecting(host, plugin_tables=True):
        state = await handle.get(args.entity_id)
    if state is None:
        print(f"reactive get: no {args.kind} entity with id {args.entity_id!r}: expected "
              f"the id of an existing one (`reactive changes --kind {args.kind}` shows "
              f"what happened to them)", file=sys.stderr)
        return EXIT_PROBLEMS
    print(tables.to_json({"kind": args.kind, "id": args.entity_id,
                          "state": state_json(state)}))
    return EXIT_OK


async def cmd_deliveries(args: argparse.Namespace, host: Host) -> int:
    """List deliveries, or replay a dead letter."""
    async with _inspecting(host):
        if args.replay is not None:
            row = await host.replay(args.replay)
            if not args.json:
                print(f"delivery {row.id} re-queued: a running `reactive serve` will retry it")
            rows = [row]
        else:
            rows = await host.deliveries(dead=args.dead, status=args.status, group=args.group,
                                         limit=args.limit, before=args.before,
                                         after=args.after)
    if args.json:
        print(tables.to_json(rows[0] if args.replay is not None else rows))
    else:
        print(tables.deliveries_table(rows))
    return EXIT_OK


async def cmd_timers(args: argparse.Namespace, host: Host) -> int:
    """List durable timers."""
    async with _inspecting(host):
        rows = await host.timers.list(args.topic, limit=args.limit,
                                      status=TimerStatus.DEAD if args.dead else None)
    print(tables.to_json(rows) if args.json
          else tables.timers_table(rows, now=host.clock()))
    return EXIT_OK


async def cmd_doctor(args: argparse.Namespace, host: Host) -> int:
    """Report plugin tables, declarations and dead letters; exit 1 on problems."""
    async with _inspecting(host):
        report = await doctor(host)
    print(tables.doctor_json(report) if args.json else tables.doctor_text(report))
    return EXIT_OK if report.ok else EXIT_PROBLEMS


async def cmd_demo(args: argparse.Namespace, _host: Host) -> int:
    """Run the demo steps of the loaded plugins (see `reactive_core._cli.demo`), on a
    temporary SQLite file or on the given database, which must hold no changes yet."""
    if args.database_url is not None:
        await _require_no_changes(_make_host(args, {"workers": False}))
    return await run_demo(
        host_factory=lambda url: _make_host(args, {"poll_interval": 0.2}, database_url=url),
        database_url=args.database_url, seconds=args.seconds)


async def _require_no_changes(host: Host) -> None:
    """`ConfigError` when `host`'s database already has changes: the demo's story (its
    systems created, their health turning) only plays out on a database of its own."""
    try:
        if "entity_changes" in await host.table_names() and await host.changes(limit=1):
            raise ConfigError(
                f"database {tables.display_url(host.database_url)} already holds changes: "
                "`reactive demo` expected an empty database (create a new one, or leave out "
                "--database-url to run on a temporary SQLite file)")
    finally:
        await host.close()


async def cmd_plugin(args: argparse.Namespace, host: Host) -> int:
    """Run a command a plugin added, on the inspecting host its plugin belongs to."""
    command: CliCommand = args.plugin_command
    needs = command.needs_database
    if not (needs(args) if callable(needs) else needs):
        try:
            status = await command.run(CliContext(args=args, host=host))
        finally:
            await host.close()
        return EXIT_OK if status is None else status
    async with _inspecting(host, plugin_tables=True):
        status = await command.run(CliContext(args=args, host=host))
    return EXIT_OK if status is None else status


COMMANDS: dict[str, Callable[[argparse.Namespace, Host], Awaitable[int]]] = {
    "serve": cmd_serve,
    "apply": cmd_apply,
    "transitions": cmd_transitions,
    "changes": cmd_changes,
    "get": cmd_get,
    "deliveries": cmd_deliveries,
    "timers": cmd_timers,
    "doctor": cmd_doctor,
    "db": cmd_db,
    "demo": cmd_demo,
}


# -- entry point ----------------------------------------------------------------------

def log_level(command: str, verbose: int) -> int:
    """The logging level of `command` with `verbose` times `-v`: `serve` starts at INFO,
    the other commands at WARNING; each `-v` is one level more, down to DEBUG."""
    base = logging.INFO if command == "serve" else logging.WARNING
    return max(logging.DEBUG, base - 10 * verbose)


def _setup_logging(args: argparse.Namespace) -> None:
    setup_logging(log_level(args.command, args.verbose),
                  getattr(args, "log_format", None) or "text")


def _pre_parse(argv: Sequence[str]) -> argparse.Namespace:
    """The global options, wherever they stand, before the full parser exists."""
    pre = argparse.ArgumentParser(prog="reactive", add_help=False)
    _global_options(pre)
    add_version_option(pre)  # answered before any plugin is loaded
    known, _ = pre.parse_known_args(argv)
    return known


def run(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, run the command, and return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(argv)
    except SystemExit as exc:
        # argparse's own exits: --help and --version (0), a usage error (2, already
        # explained on stderr).
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR


def _run(argv: list[str]) -> int:
    database_url = None
    try:
        early = _pre_parse(argv)
        database_url = early.database_url
        # The host that inspecting and plugin commands use; its plugins add commands.
        host = _make_host(early, {"workers": False})
        host.load_plugins()
        plugin_commands = [c for cs in host.hook.reactive_cli_commands() for c in cs]
        args = _merge_globals(build_parser(plugin_commands).parse_args(argv))
        database_url = args.database_url
        _setup_logging(args)
        if getattr(args, "plugin_command", None) is not None and args.command not in COMMANDS:
            return anyio.run(cmd_plugin, args, host)
        return anyio.run(COMMANDS[args.command], args, host)
    except ReactiveCoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except SQLAlchemyError as exc:
        logger.debug("database error", exc_info=True)
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        url = tables.display_url(resolve_database_url(database_url))
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
