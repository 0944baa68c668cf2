"""Commands plugins add to `reactive` (hook `reactive_cli_commands`), and what they get.

A plugin returns `CliCommand`s; `reactive` adds each as a sub-command (with the global
options, and `--json` for a listing) and, when it is chosen, calls `run(ctx)` with a
`CliContext`: the parsed arguments, and the host whose plugin offered the command —
its plugins loaded, its database checked to exist, its workers never started (a
command looks at the database, it does not handle its deliveries). Output goes
through the context, so every command prints tables and JSON the same way.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._errors import RegistryError
from . import tables

if TYPE_CHECKING:
    from .._host.host import Host

_NAME = re.compile(r"^[a-z][a-z0-9-]*$")

EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR, EXIT_ABANDONED = 0, 1, 2, 3
"""`reactive`'s exit statuses: success; problems found (doctor, a schema behind); an
error; work cut off by a stop."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CliCommand:
    """A sub-command of `reactive` that a plugin contributes.

    `arguments(parser)` adds the command's own options to its `argparse` parser;
    `listing=True` adds `--json`. `run(ctx)` returns the exit status (None means 0).
    `needs_database` (a bool, or a function of the parsed arguments) False: the command
    runs without opening the database (`reactive rules check DIR`).
    """

    name: str
    help: str
    run: Callable[[CliContext], Awaitable[int | None]]
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    listing: bool = False
    needs_database: bool | Callable[[argparse.Namespace], bool] = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise RegistryError(f"CliCommand name must be lower-case words joined by '-', "
                                f"received {self.name!r}")
        if not callable(self.run):
            raise RegistryError(f"CliCommand {self.name!r}: run must be an async callable, "
                                f"received {self.run!r}")


class CliContext:
    """What a plugin's command runs with: its arguments, its host, and output helpers."""

    def __init__(self, *, args: argparse.Namespace, host: Host) -> None:
        self.args = args
        self.host = host

    @property
    def json(self) -> bool:
        """True when the user asked for JSON (`--json`)."""
        return bool(getattr(self.args, "json", False))

    def print(self, text: str = "") -> None:
        """Print a line (or several) to standard output."""
        print(text, flush=True)

    def emit(self, value: Any, table: Callable[[Any], str]) -> None:
        """Print `value` as JSON with `--json`, else as `table(value)`."""
        self.print(tables.to_json(value) if self.json else table(value))

    # Formatting, shared with the core's own listings. Times are UTC: a time column's
    # header is `utc("since")` (`SINCE (UTC)`), its values `fmt_time` / `fmt_since`.
    render_table = staticmethod(tables.render_table)
    fmt_time = staticmethod(tables.fmt_time)
    fmt_duration = staticmethod(tables.fmt_duration)

    utc = staticmethod(tables.utc)

    @staticmethod
    def fmt_since(since: datetime | None, now: datetime, *, future: bool = False) -> str:
        """`2025-06-01 12:00:03 (for 3m 12s)` (UTC: head the column with `utc(...)`), or
        with `future` `... (in 3m 12s)` / `... (3m 12s ago)`; `-` when unknown."""
        return tables.fmt_since(since, now, future=future)

    @staticmethod
    def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
        """Rows under upper-case headers, columns aligned (what every listing prints)."""
        return tables.render_table(headers, rows)
