"""What `reactive --help`, `reactive COMMAND --help` and `reactive --version` say.

Each built-in command has a one-line `help` (in the list of commands) where the parser
adds it, and a longer description here, shown by its own `--help`. A command a plugin
adds is described by its `CliCommand.help`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from collections.abc import Mapping

DISTRIBUTION = "reactive-core"

EPILOG = """\
exit status: 0 success; 1 problems found (doctor, db current, a demo that did not
complete; status: a system degraded); 2 an error, printed as `error: ...` (status: also
a system unhealthy); 3 serve had to cut off work still running when it stopped; 130
interrupted; 141 the reader of the output went away."""

VERBOSE_HELP = ("log more, one level per -v: commands log warnings, -v adds info and -vv "
                "debug; serve logs info, so there -v already gives debug")

DESCRIPTIONS: Mapping[str, str] = {
    "serve": "Run the host with its workers: the broadcast feed, the work-queue dispatcher, "
             "durable timers, scheduled jobs and the plugins' checks, until SIGINT or "
             "SIGTERM. Pending schema migrations are applied first (unless --no-migrate). "
             "Exit status 0 after a clean stop, 3 when work still running had to be cut "
             "off.",
    "apply": "Declare what a YAML config file says (the sections the loaded plugins "
             "define: systems, dependencies, checks, associations, ...) in one "
             "transaction, and print what changed; applying the same file again changes "
             "nothing. -f may be repeated (-f - reads standard input): the files apply in "
             "order in one transaction. --dry-run prints what would change and stores "
             "nothing; --prune also removes what the files no longer declare. Runs no "
             "handler and no check: the deliveries and timers it causes are left to a "
             "running `reactive serve`.",
    "transitions": "The per-field transition log: the newest N rows (or a page of them), "
                   "oldest first, each a field of an entity going from one value to "
                   "another. Times are UTC.",
    "changes": "The change feed: the newest N changes (or a page of them), oldest first, "
               "with what changed, who changed it and why. Times are UTC. --follow keeps "
               "printing new changes until interrupted.",
    "deliveries": "Work-queue deliveries, newest first: group, entity, status, attempts "
                  "and last error. --replay re-queues a dead letter for a running "
                  "`reactive serve` to retry.",
    "timers": "Durable timers and scheduled jobs, soonest first: when each is due (UTC), "
              "its schedule, status and last error.",
    "doctor": "Check the database against the loaded plugins: plugin tables that back no "
              "entity kind and are not declared, stale declarations, work-queue groups "
              "with a backlog that no running instance handles, dead letters. Exit status "
              "1 when there is a problem.",
    "db": "The database schema: the core's and each plugin's Alembic migrations.",
    "upgrade": "Apply pending migrations, the core's and then each plugin's, under the "
               "cluster-wide schema lock; print one line per component.",
    "current": "Each component's current revision, its head, and whether it is up to date; "
               "exit status 1 when one is behind.",
    "demo": "A self-contained run of what the loaded plugins do, printing what happens. "
            "Runs on a temporary SQLite file, or on the empty database given with "
            "--database-url (SQLite or PostgreSQL), which keeps the history afterwards. "
            "Exit status 1 when a step's story did not complete.",
}


def package_version() -> str:
    """The installed version of reactive-core (its package metadata), else
    `reactive_core.__version__` when the package has one, else `unknown`."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        import reactive_core

        return str(getattr(reactive_core, "__version__", "unknown"))


def add_version_option(parser: argparse.ArgumentParser) -> None:
    """`--version`: print `reactive <version>` and exit 0."""
    parser.add_argument("--version", action="version", version=f"reactive {package_version()}",
                        help="print the version of reactive-core and exit")


def describe(parsers: Mapping[str, argparse.ArgumentParser]) -> None:
    """Give each command's parser (and its sub-commands') its description, falling back
    to the command's one-line help (what a plugin's command has)."""
    for name, parser in parsers.items():
        parser.description = parser.description or DESCRIPTIONS.get(name)
        for action in parser._actions:  # `db upgrade`, `db current`
            if isinstance(action, argparse._SubParsersAction):
                describe(action.choices)
