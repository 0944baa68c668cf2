"""The `reactive` argument parser: global options, every built-in command's options,
and the commands plugins add (hook `reactive_cli_commands`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn

from .._errors import PluginLoadError
from .commands import CliCommand
from .descriptions import EPILOG, VERBOSE_HELP, add_version_option, describe
from .logs import LOG_FORMATS, SUMMARY_SECONDS

FOLLOW_POLL_SECONDS = 0.5
"""How often `reactive changes --follow` looks for new changes."""


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
        help="also load this plugin (a class, factory or object; repeatable), besides the "
             "installed entry points")
    parser.add_argument(
        "-v", "--verbose", dest=f"{prefix}verbose", action="count", default=default(0),
        help=VERBOSE_HELP)


class _Parser(argparse.ArgumentParser):
    """Says where commands come from when one is unknown."""

    def error(self, message: str) -> NoReturn:
        if "invalid choice" in message and "COMMAND" in message:
            message += (" — plugins add commands (the health plugin adds `status`): is the "
                        "plugin that adds it installed and enabled (REACTIVE_PLUGINS, "
                        "REACTIVE_DISABLE_PLUGINS, --plugin)?")
        super().error(message)


def build_parser(plugin_commands: Sequence[CliCommand] = ()) -> argparse.ArgumentParser:
    """The argument parser of `reactive`, with the commands plugins add."""
    parser = _Parser(prog="reactive", description="Run and inspect a reactive-core host.",
                     epilog=EPILOG)
    _global_options(parser)
    add_version_option(parser)
    common = _Parser(add_help=False)
    _global_options(common, after_command=True)
    listing = _Parser(add_help=False)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     help="what to do (each command has its own --help)")

    serve = commands.add_parser("serve", parents=[common], help="run the host until stopped")
    serve.add_argument("--lease-seconds", type=float, metavar="S",
                       help="work-queue lease length (host config lease_seconds)")
    serve.add_argument("--poll-interval", type=float, metavar="S",
                       help="backstop poll of feed and queue (host config poll_interval)")
    serve.add_argument("--shutdown-timeout", type=float, metavar="S",
                       help="on SIGTERM/SIGINT, how long running handlers may finish before "
                            "they are cut off (host config shutdown_timeout_seconds); a "
                            "second signal cuts them off at once")
    serve.add_argument("--no-migrate", dest="migrate", action="store_false",
                       help="refuse to start on a database that is behind instead of "
                            "migrating it (host config migrate); run `reactive db upgrade` "
                            "as a deployment step of its own")
    serve.add_argument("--http", metavar="HOST:PORT", default="127.0.0.1:8400",
                       help="serve the HTTP API, the status page and /metrics there "
                            "(default 127.0.0.1:8400; port 0 picks a free one); a "
                            "non-loopback address needs a token (`reactive token create`)")
    serve.add_argument("--no-http", dest="http", action="store_const", const=None,
                       help="serve no HTTP")
    serve.add_argument("--rules", metavar="DIR",
                       help="load automation rules from the YAML files in DIR and reload "
                            "them when a file changes (plugin setting automation.rules_dir)")
    serve.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                       help="log lines as text (default) or as JSON objects, one per line, "
                            "with time, level, logger, message and structured fields")
    serve.add_argument("--summary-seconds", type=_not_negative, default=SUMMARY_SECONDS,
                       metavar="S",
                       help=f"log a one-line summary every S seconds (default "
                            f"{SUMMARY_SECONDS:g}; 0 = never): systems by status, objectives "
                            f"breaching, queue pending, dead letters, rule runs")

    apply = commands.add_parser("apply", parents=[common],
                                help="declare what a config file says (idempotent)")
    apply.add_argument("-f", "--file", dest="files", action="append", required=True,
                       metavar="FILE",
                       help="YAML config file (`-` reads standard input); repeatable: the "
                            "files apply in order, all in one transaction")
    apply.add_argument("--dry-run", action="store_true",
                       help="validate and apply inside a transaction that is rolled back: "
                            "print what would change (`would: ...`), store nothing")
    apply.add_argument("--prune", action="store_true",
                       help="then remove what the files no longer declare (systems, "
                            "dependencies, checks, associations, objectives, maintenance "
                            "windows, rules applied from config files)")

    transitions = commands.add_parser("transitions", parents=[common, listing],
                                      help="the per-field transition log, newest last")
    transitions.add_argument("--kind", metavar="K", help="only rows of entity kind K")
    transitions.add_argument("--id", dest="entity_id", metavar="ID",
                             help="only rows of the entity with id ID")
    transitions.add_argument("--field", metavar="F", help="only rows of the field F")
    transitions.add_argument("--after", type=_cursor, metavar="ID",
                             help="the N rows with an id above ID (to page forward)")
    transitions.add_argument("--before", type=_cursor, metavar="ID",
                             help="the newest N rows with an id below ID (to page back)")
    transitions.add_argument("--limit", type=_positive, default=100, metavar="N",
                             help="show the newest N rows (default 100)")

    changes = commands.add_parser("changes", parents=[common, listing],
                                  help="the change feed, newest last")
    changes.add_argument("--kind", metavar="K", help="only changes of entity kind K")
    changes.add_argument("--id", dest="entity_id", metavar="ID",
                         help="only changes of the entity with id ID")
    changes.add_argument("--after", type=_cursor, default=0, metavar="SEQ",
                         help="the N changes with a seq above SEQ (to page forward)")
    changes.add_argument("--before", type=_cursor, metavar="SEQ",
                         help="the newest N changes with a seq below SEQ (to page back)")
    changes.add_argument("--limit", type=_positive, default=100, metavar="N",
                         help="show the newest N changes (default 100)")
    changes.add_argument("--follow", action="store_true",
                         help="then keep printing new changes as they are committed, one "
                              f"line each (polled every {FOLLOW_POLL_SECONDS:g} s), until "
                              "SIGINT or SIGTERM; with --json, one JSON object per line")

    get = commands.add_parser(
        "get", parents=[common], help="one entity's current state, as JSON",
        description="One entity's current state, as JSON: {kind, id, state}. An unknown "
                    "kind is an error naming the declared kinds; exit status 1 when the "
                    "entity does not exist.")
    get.add_argument("kind", metavar="KIND", help="the entity kind (e.g. catalog-system)")
    get.add_argument("entity_id", metavar="ID", help="the entity's id")

    deliveries = commands.add_parser("deliveries", parents=[common, listing],
                                     help="work-queue deliveries, newest first")
    deliveries.add_argument("--dead", action="store_true", help="only dead letters")
    deliveries.add_argument("--status", choices=["pending", "done", "dead"],
                            help="only deliveries with this status")
    deliveries.add_argument("--group", metavar="G", help="only deliveries of work-queue group G")
    deliveries.add_argument("--limit", type=_positive, default=100, metavar="N",
                            help="show the newest N deliveries (default 100)")
    deliveries.add_argument("--after", type=_cursor, metavar="ID",
                            help="the N deliveries with an id above ID (to page forward)")
    deliveries.add_argument("--before", type=_cursor, metavar="ID",
                            help="the newest N deliveries with an id below ID (to page back)")
    deliveries.add_argument("--replay", type=_cursor, metavar="ID",
                            help="re-queue the dead-lettered delivery ID")

    timers = commands.add_parser("timers", parents=[common, listing],
                                 help="durable timers, soonest first")
    timers.add_argument("--topic", metavar="T",
                        help="only timers of topic T (a scheduled job's is job:<name>)")
    timers.add_argument("--dead", action="store_true", help="only timers that gave up")
    timers.add_argument("--limit", type=_positive, default=100, metavar="N",
                        help="show the soonest N timers (default 100)")

    commands.add_parser("doctor", parents=[common, listing],
                        help="check plugin tables, declarations and dead letters")

    db = commands.add_parser("db", help="the database schema: each component's migrations")
    db_actions = db.add_subparsers(dest="db_action", metavar="ACTION", required=True,
                                   help="what to do with the schema")
    db_actions.add_parser("upgrade", parents=[common],
                          help="apply pending migrations (the core's, then each plugin's)")
    db_actions.add_parser("current", parents=[common, listing],
                          help="each component's revision and head; exit 1 when behind")

    demo = commands.add_parser(
        "demo", parents=[common],
        help="a self-contained run of what the installed plugins do, printing what happens")
    demo.add_argument("--seconds", type=float, default=10.0, metavar="N",
                      help="pace the demo to take about N seconds (default 10; 0 = as fast as "
                           "it goes)")

    for command in plugin_commands:
        if command.name in commands.choices:
            raise PluginLoadError(
                f"a plugin adds the command {command.name!r}, which already exists: expected "
                "a command name unique among the built-in and plugin commands")
        sub = commands.add_parser(command.name, parents=[common, *([listing] * command.listing)],
                                  help=command.help, description=command.help)
        if command.arguments is not None:
            command.arguments(sub)
        sub.set_defaults(plugin_command=command)
    describe(commands.choices)
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


def _not_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds, 0 or more, received {text!r}")
    return value


def _cursor(text: str) -> int:
    """A paging cursor: a seq or an id, a whole number."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a whole number (a seq or an id from a listing), received {text!r}")
    return value


