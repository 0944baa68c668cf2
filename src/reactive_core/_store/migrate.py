"""Schema migrations: one Alembic version history per component (the core, each plugin).

A *component* is the core (`reactive_core`) or a plugin that declared its tables with
`registry.add_tables(metadata, migrations=...)`. Each has its own Alembic script
directory (a `versions/` folder of revision files) and its own version table
(`alembic_version_<component>`), so plugins ship and number their revisions
independently of the core and of each other.

Upgrading runs in one unit of work under the cluster-wide schema lock (a PostgreSQL
advisory lock; on SQLite the single writer): the core's history first, then each
plugin's in plugin order (a plugin revision may read or write core tables), then the
tables of plugins without a history are created if absent. Instances starting together
therefore migrate once: the others wait for the lock and find nothing left to do.

A database made before a component had a history (by `create_all`) holds its tables but
no version table: it is stamped with the component's first revision, which must
describe exactly that schema, and upgraded from there with its data. A fresh database
runs every revision. Revisions only go forward: there is no downgrade command.

Alembic is driven directly (`MigrationContext` with the unit of work's connection,
`ScriptDirectory`), so a script directory needs no `alembic.ini` and no `env.py`. It
is imported only when something is to be migrated: checking that a database is up to
date reads the version tables and the revision files' ids, nothing more.
"""

from __future__ import annotations

import ast
import functools
import importlib.resources
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, MetaData, text
from sqlalchemy import inspect as sa_inspect

from .._errors import ConfigError
from .backend import backend_for
from .schema import metadata as core_metadata

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

CORE_COMPONENT = "reactive_core"
"""The component name of the core's own history."""

UPGRADE_COMMAND = "reactive db upgrade"


class HistoryError(ConfigError):
    """A migrations location that is not a usable Alembic script directory."""


def resolve_location(location: str | os.PathLike[str]) -> Path:
    """The script directory `location` names: a path, or `"package:folder"` inside an
    installed package. `HistoryError` unless it exists and holds a `versions/` folder."""
    spec = os.fspath(location)
    match = re.fullmatch(r"([A-Za-z_][\w.]*):([^:]+)", spec)
    if isinstance(location, str) and match and not os.path.isabs(spec):
        package, folder = match.groups()
        try:
            root = importlib.resources.files(package)
        except (ImportError, TypeError) as exc:
            raise HistoryError(f"migrations {spec!r}: cannot import package {package!r} "
                               f"({type(exc).__name__}: {exc})") from exc
        path = Path(str(root.joinpath(folder)))
    else:
        path = Path(spec)
    if not (path / "versions").is_dir():
        raise HistoryError(
            f"migrations {spec!r} resolve to {str(path)!r}, which has no versions/ folder: "
            "expected an Alembic script directory (a path, or 'package:folder') whose "
            "versions/ folder holds the revision files")
    return path.resolve()


@functools.cache
def _script(directory: Path) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(directory))


@functools.cache
def _graph(directory: Path) -> tuple[list[str], list[str], list[str]] | None:
    """The (heads, bases, every revision) of a script directory, read from each revision file's
    `revision` and `down_revision` literals without importing it: reading where a
    database stands never loads Alembic (a tenth of a second per process). None when a
    file does not spell them as literals; then Alembic reads them."""
    downs: dict[str, tuple[str, ...]] = {}
    for path in sorted((directory / "versions").glob("*.py")):
        if path.name.startswith(("__init__", ".#")):
            continue
        found: dict[str, Any] = {}
        try:
            for node in ast.parse(path.read_bytes()).body:
                target = (node.targets[0] if isinstance(node, ast.Assign)
                          and len(node.targets) == 1 else getattr(node, "target", None))
                value = getattr(node, "value", None)
                if (isinstance(node, (ast.Assign, ast.AnnAssign)) and value is not None
                        and isinstance(target, ast.Name)
                        and target.id in ("revision", "down_revision")):
                    found[target.id] = ast.literal_eval(value)
        except (SyntaxError, ValueError):
            return None
        revision, down = found.get("revision"), found.get("down_revision")
        if not isinstance(revision, str) or "down_revision" not in found:
            return None
        parents = (down,) if isinstance(down, str) else tuple(down or ())
        if not all(isinstance(p, str) for p in parents):
            return None
        downs[revision] = parents
    referenced = {p for parents in downs.values() for p in parents}
    return ([r for r in downs if r not in referenced], [r for r, p in downs.items() if not p],
            list(downs))


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    """One component's version history: its script directory and today's tables."""

    component: str
    directory: Path
    metadata: MetaData

    @property
    def version_table(self) -> str:
        """The table recording this component's revision (`alembic_version_<component>`)."""
        return "alembic_version_" + re.sub(r"\W", "_", self.component.lower())

    @property
    def script(self) -> ScriptDirectory:
        """The Alembic script directory (loaded once per process)."""
        return _script(self.directory)

    @property
    def head(self) -> str:
        """The newest revision."""
        return self._one(self._ends()[0], "head")

    @property
    def base(self) -> str:
        """The first revision: the schema the component had before it had a history."""
        return self._one(self._ends()[1], "base")

    def check(self) -> None:
        """`HistoryError` unless the revisions form one line (one base, one head)."""
        heads, bases, _ = self._ends()
        self._one(heads, "head")
        self._one(bases, "base")

    @property
    def revisions(self) -> list[str]:
        """Every revision of the history."""
        return self._ends()[2]

    def _ends(self) -> tuple[list[str], list[str], list[str]]:
        graph = _graph(self.directory)
        if graph is not None:
            return graph
        from alembic.util import CommandError

        try:
            script = self.script
            return (list(script.get_heads()), list(script.get_bases()),
                    [rev.revision for rev in script.walk_revisions()])
        except CommandError as exc:
            raise HistoryError(f"migrations of {self.component!r} in {str(self.directory)!r} "
                               f"do not load: {exc}") from exc

    def _one(self, revisions: Sequence[str], what: str) -> str:
        if len(revisions) != 1:
            raise HistoryError(
                f"migrations of {self.component!r} in {str(self.directory)!r} have "
                f"{len(revisions)} {what} revisions ({', '.join(revisions) or 'none'}): "
                f"expected exactly one (merge branches with `alembic merge`)")
        return revisions[0]


CORE_HISTORY = History(component=CORE_COMPONENT,
                       directory=Path(__file__).resolve().parent / "migrations",
                       metadata=core_metadata)


@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentRevision:
    """Where one component's schema stands."""

    component: str
    current: str | None
    """The revision in its version table; None when it has none (fresh, or made before
    the component had a history — see `unversioned`)."""
    head: str
    base: str
    unversioned: bool = False
    """Its tables exist without a version table (made before it had a history): they
    are at the first revision, which `upgrade` stamps before going on."""
    unknown: bool = False
    """`current` is no revision of this version's history: a newer release (or another
    branch) migrated the database, and this version cannot work with it."""

    @property
    def up_to_date(self) -> bool:
        """True when the schema is at the head revision."""
        return self.current == self.head

    @property
    def revision(self) -> str | None:
        """The revision the schema is at: `current`, or the first one when unversioned."""
        return self.base if self.unversioned else self.current

    def describe(self) -> str:
        """E.g. `health at 0001 (head 0002)`, `catalog at none (head 0001)` (no tables)."""
        if self.unversioned:
            return (f"{self.component} at {self.base} (head {self.head}; its tables were "
                    "made before it had a version history)")
        if self.unknown:
            return (f"{self.component} at {self.current}, a revision this version does not "
                    f"know (its head is {self.head}): a newer release migrated it")
        return f"{self.component} at {self.current or 'none'} (head {self.head})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Upgrade:
    """What `upgrade_in` did to one component."""

    component: str
    from_revision: str | None
    to_revision: str
    stamped: bool
    """The tables predated the history and the first revision was stamped first."""


def revision_of(tx: Connection, history: History) -> ComponentRevision:
    """Where `history`'s component stands in the database of `tx` (reads only)."""
    tables = set(sa_inspect(tx).get_table_names())
    current = None
    if history.version_table in tables:
        rows = tx.execute(text(f"SELECT version_num FROM {history.version_table}")).scalars()
        current = ",".join(sorted(rows)) or None
    return ComponentRevision(
        component=history.component, current=current, head=history.head, base=history.base,
        unversioned=current is None and bool(tables & set(history.metadata.tables)),
        unknown=current is not None and current not in history.revisions)


def schema_status(tx: Connection, histories: Sequence[History]) -> list[ComponentRevision]:
    """Every component's revision, in upgrade order (reads only: never migrates)."""
    return [revision_of(tx, history) for history in histories]


def missing_tables(tx: Connection, metadatas: Sequence[MetaData]) -> list[str]:
    """Tables of `metadatas` (plugins without a history) the database lacks."""
    existing = set(sa_inspect(tx).get_table_names())
    return sorted(name for md in metadatas for name in md.tables if name not in existing)


def require_current(tx: Connection, histories: Sequence[History],
                    unversioned: Sequence[MetaData] = ()) -> None:
    """`ConfigError` naming each component that is behind, and what to run."""
    statuses = schema_status(tx, histories)
    _refuse_unknown(statuses)
    behind = [s.describe() for s in statuses if not s.up_to_date]
    if missing := missing_tables(tx, unversioned):
        behind.append(f"plugin tables {', '.join(missing)} missing")
    if behind:
        raise ConfigError(
            f"the database schema is behind this version of reactive-core: "
            f"{'; '.join(behind)}. Run `{UPGRADE_COMMAND}` first (hosts apply migrations "
            f"when they start, unless started with migrate=False / --no-migrate)")


def _refuse_unknown(statuses: Sequence[ComponentRevision]) -> None:
    if unknown := [s.describe() for s in statuses if s.unknown]:
        raise ConfigError(f"the database schema is ahead of this version of reactive-core: "
                          f"{'; '.join(unknown)}. Run the release (core and plugins) that "
                          "migrated it, or a newer one")


@dataclass(frozen=True, slots=True, kw_only=True)
class SchemaUpgrade:
    """What `upgrade_in` did: the components it upgraded, the plugin tables it created."""

    upgraded: list[Upgrade]
    created_tables: list[str]


def upgrade_in(tx: Connection, histories: Sequence[History],
               unversioned: Sequence[MetaData] = ()) -> SchemaUpgrade:
    """Bring every component to its head inside `tx`, under the schema lock.

    `histories` run in order (the core's first); then the tables of `unversioned`
    metadatas are created if absent. Reports what changed (nothing when up to date).
    """
    backend_for("postgresql" if tx.dialect.name == "postgresql" else "sqlite").schema_lock(tx)
    statuses = schema_status(tx, histories)
    _refuse_unknown(statuses)
    upgraded = [_upgrade_one(tx, history, status)
                for history, status in zip(histories, statuses, strict=True)
                if not status.up_to_date]
    created = missing_tables(tx, unversioned)
    for md in unversioned:
        md.create_all(tx)
    return SchemaUpgrade(upgraded=upgraded, created_tables=created)


def _upgrade_one(tx: Connection, history: History, status: ComponentRevision) -> Upgrade:
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    head = history.head
    script = history.script

    def steps(heads: Any, _context: MigrationContext) -> Any:
        return script._upgrade_revs(head, heads)

    context = MigrationContext.configure(tx, opts={
        "version_table": history.version_table, "target_metadata": history.metadata,
        "render_as_batch": tx.dialect.name == "sqlite", "fn": steps})
    if status.unversioned:
        context.stamp(script, history.base)
    with Operations.context(context):
        context.run_migrations()
    return Upgrade(component=history.component, from_revision=status.revision,
                   to_revision=head, stamped=status.unversioned)
