"""Bad input, case by case, at every door: the write path (`mutate`, `write`, `remove`),
config files applied through the real apply path, and the command line run in-process.

Each case is refused with a `ReactiveCoreError` subclass (the command line: exit status
2 and `error: ...` on stderr, no traceback) whose message names the place (kind, id and
field; file and line; the option) and what was expected, and every row of every table
of a seeded database is the same afterwards. The PostgreSQL run of the same write-path
and config cases is `tests/integration/test_bad_input_pg.py`.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Column, Connection, MetaData, String, Table, select

from catalog_plugin import CatalogPlugin
from health_plugin import HealthPlugin
from reactive_core import (
    Actor,
    ConfigError,
    Host,
    InvalidEntityState,
    InvalidIdentifier,
    ReactiveCoreError,
    UnknownEntityKind,
    apply_config_file,
    apply_config_text,
    hookimpl,
)
from reactive_core._cli.main import run as cli_run

# -- the plugin, the seed, the dump ------------------------------------------------------


class Doc(BaseModel):
    model_config = ConfigDict(frozen=True)

    title: str = "t"
    score: float = 0.0
    tags: list[str] = []
    extra: dict[Any, Any] = {}


class Note(BaseModel):
    model_config = ConfigDict(frozen=True)

    body: str
    weight: float = 1.0


class Other(BaseModel):
    model_config = ConfigDict(frozen=True)

    title: str = "other"


NOTES_METADATA = MetaData()
notes = Table("doc_notes", NOTES_METADATA,
              Column("id", String(255), primary_key=True), Column("body", String, nullable=False))


def read_notes(tx: Connection, ids: list[str]) -> dict[str, Note]:
    rows = tx.execute(select(notes).where(notes.c.id.in_(ids))).all()
    return {row.id: Note(body=row.body) for row in rows}


class Docs:
    """A store-backed kind (`doc`) and a computed one (`note`, backed by `doc_notes`)."""

    name = "docs"

    @hookimpl
    def reactive_register(self, registry: Any) -> None:
        registry.add_tables(NOTES_METADATA)
        registry.declare_non_reactive_state("doc_notes", "externally-owned", "test data")
        registry.define_entity("doc", state=Doc)
        registry.define_entity("note", state=Note, read=read_notes)


def make_host(url: str) -> Host:
    return Host(database_url=url, plugins=[Docs, CatalogPlugin, HealthPlugin],
                entry_points=False, config={"workers": False, "run_jobs": False})


SEED_CONFIG = """\
systems:
  - {id: web, name: Web shop, tags: [frontend], metadata: {tier: 1}}
  - {id: api, name: Orders API}
dependencies:
  - {source: web, target: api, impact: critical}
checks:
  - {id: ping, strategy: http, config: {url: "http://127.0.0.1:9/"}, interval_seconds: 30}
associations:
  - {system: web, check: ping}
"""


async def seed(url: str) -> None:
    """Entities, a tombstone, transitions, systems, a check and its timer, deliveries."""
    async with make_host(url) as host:
        docs = host.entity("doc")
        await docs.mutate("seed-1", lambda tx, prev: Doc(title="one", score=1.5, tags=["a"],
                                                         extra={"k": [1, 2]}))
        await docs.mutate("seed-1", lambda tx, prev: prev.model_copy(update={"score": 2.5}))
        await docs.mutate("seed-2", lambda tx, prev: Doc(title="two"))
        await docs.mutate("gone", lambda tx, prev: Doc(title="gone"))
        await docs.remove("gone", reason="seeded tombstone")

        def add_note(tx: Connection, prev: Note | None) -> Note | None:
            tx.execute(notes.insert().values(id="n1", body="first"))
            return read_notes(tx, ["n1"]).get("n1")

        await host.entity("note").mutate("n1", add_note)
        await apply_config_text(host, SEED_CONFIG)


Dump = dict[str, list[tuple[Any, ...]]]


def dump(url: str) -> Dump:
    """Every row of every table, each table's rows sorted: on SQLite every table of
    `sqlite_master` (its own bookkeeping included), on PostgreSQL every base table of
    every schema but the system ones."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            names = [row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            return {name: sorted(conn.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr)
                    for name in names}
        finally:
            conn.close()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE "
            "table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', "
            "'information_schema') ORDER BY 1, 2").fetchall()
        return {f"{schema}.{name}": sorted(
                    conn.execute(f'SELECT * FROM "{schema}"."{name}"').fetchall(), key=repr)
                for schema, name in tables}


def assert_seeded(rows: Dump) -> None:
    """The seed is there, so that "unchanged" means something."""
    for table, at_least in (("entity_state", 4), ("entity_changes", 8),
                            ("entity_transitions", 10), ("doc_notes", 1)):
        found = rows.get(table, rows.get(f"public.{table}"))
        assert found is not None and len(found) >= at_least, (table, found)


@pytest.fixture(scope="module")
def seeded_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One seeded SQLite file per module; each case works on a copy of it."""
    path = tmp_path_factory.mktemp("seeded") / "reactive.db"
    anyio.run(seed, f"sqlite:///{path}")
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    assert_seeded(dump(f"sqlite:///{path}"))
    return path


@pytest.fixture
def db(seeded_sqlite: Path, tmp_path: Path) -> str:
    target = tmp_path / "db" / "reactive.db"
    target.parent.mkdir()
    shutil.copyfile(seeded_sqlite, target)
    return f"sqlite:///{target}"


# -- cases -------------------------------------------------------------------------------

Act = Callable[[Host, Path], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Case:
    """A bad input: what to do, the error expected, and what its message must say.

    `says` are regular expressions, each searched in the message; `{file}` stands for
    the (escaped) path of the config file the case wrote.
    """

    act: Act
    error: type[ReactiveCoreError]
    says: tuple[str, ...]


def params(table: Mapping[str, Case]) -> list[Any]:
    return [pytest.param(case, id=name) for name, case in table.items()]


def assert_says(message: str, says: tuple[str, ...], file: Path | None = None) -> None:
    for pattern in says:
        if file is not None:
            pattern = pattern.replace("{file}", re.escape(str(file)))
        assert re.search(pattern, message), f"{pattern!r} not found in {message!r}"


async def check_refused(url: str, workdir: Path, case: Case) -> None:
    """Run `case` on a host of `url`: refused as expected, not a row changed."""
    async with make_host(url) as host:
        before = dump(url)
        assert_seeded(before)
        with pytest.raises(ReactiveCoreError) as info:
            await case.act(host, workdir)
        after = dump(url)
    assert isinstance(info.value, case.error), repr(info.value)
    assert_says(str(info.value), case.says, workdir / CONFIG_NAME)
    assert after == before


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"x": value}
    return value


def cyclic() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["self"] = value
    return value


def mutate(value: object, *, kind: str = "doc", entity_id: str = "seed-1",
           **options: Any) -> Act:
    """`host.entity(kind).mutate(entity_id, apply)` where `apply` returns `value`."""
    async def act(host: Host, _workdir: Path) -> object:
        return await host.entity(kind).mutate(entity_id, lambda tx, prev: value, **options)
    return act


def with_actor(make_actor: Callable[[], object]) -> Act:
    """A mutate whose actor is made inside the act (constructing it may be the error)."""
    async def act(host: Host, _workdir: Path) -> object:
        return await host.entity("doc").mutate("seed-1", lambda tx, prev: Doc(title="new"),
                                               actor=make_actor())  # type: ignore[arg-type]
    return act


def on_id(method: str, entity_id: object, kind: str = "doc") -> Act:
    """`mutate`, `write` or `remove` of `kind:entity_id` (apply writes a valid state)."""
    async def act(host: Host, _workdir: Path) -> object:
        handle = host.entity(kind)
        if method == "remove":
            return await handle.remove(entity_id)  # type: ignore[arg-type]
        call = handle.mutate if method == "mutate" else handle.write
        return await call(entity_id, lambda tx, prev: Doc(title="new"))  # type: ignore[arg-type]
    return act


def note_then(value: object) -> Act:
    """A computed kind's apply that writes the plugin's row, then returns `value`."""
    async def act(host: Host, _workdir: Path) -> object:
        def apply(tx: Connection, prev: Note | None) -> object:
            tx.execute(notes.insert().values(id="n2", body="written by the plugin"))
            return value
        return await host.entity("note").mutate("n2", apply)
    return act


STATE = "doc:seed-1"
NOT_FINITE = r"NaN and infinity cannot be stored"
ID_RULE = r"expected printable text of 1 to 255 characters"

WRITE_CASES: dict[str, Case] = {
    "nan-in-a-float-field": Case(mutate(Doc(score=float("nan"))), InvalidEntityState,
                                 (STATE, r"field score: ", NOT_FINITE)),
    "inf-in-a-float-field": Case(mutate(Doc(score=float("inf"))), InvalidEntityState,
                                 (STATE, r"field score: ", NOT_FINITE)),
    "minus-inf-in-a-float-field": Case(mutate({"score": float("-inf")}), InvalidEntityState,
                                       (STATE, r"field score: ", NOT_FINITE)),
    "inf-deep-in-a-dict": Case(mutate(Doc(extra={"v": [1.0, float("inf")]})),
                               InvalidEntityState, (STATE, r"field extra\.v\.1: ", NOT_FINITE)),
    "nan-in-a-plugin-kind": Case(
        mutate({"name": "Web", "metadata": {"load": float("nan")}}, kind="catalog-system",
               entity_id="web"),
        InvalidEntityState, (r"catalog-system:web", r"field metadata\.load: ", NOT_FINITE)),
    "another-model-type": Case(mutate(Other()), InvalidEntityState, (
        STATE, r"must be a Doc or a mapping, received Other")),
    "keys-1-and-'1'": Case(mutate(Doc(extra={1: "a", "1": "b"})), InvalidEntityState, (
        STATE, r"field extra: \{1: 'a', '1': 'b'\} would read back as")),
    "a-set": Case(mutate(Doc(extra={"s": {3, 1}})), InvalidEntityState, (
        STATE, r"field extra: .* would read back as \{'s': \[")),
    "10**5000": Case(mutate(Doc(extra={"big": 10**5000})), InvalidEntityState, (
        STATE, r"field extra\.big: an int of about 5,001 digits has more digits than JSON "
               r"numbers are read back with \(at most 4,300\): expected JSON values")),
    "a-cyclic-structure": Case(mutate({"title": "x", "extra": cyclic()}), InvalidEntityState, (
        STATE, r"field extra\.self(\.self)?: holds itself \(a reference cycle\)")),
    "5000-deep-nesting": Case(mutate({"title": "x", "extra": nested(5000)}),
                              InvalidEntityState, (STATE, r"field extra\.x\.x\.x.*: nests more than 250 levels")),
    "bytes-in-a-field": Case(mutate(Doc(extra={"raw": b"\xff\xfe"})), InvalidEntityState, (
        STATE, r"field extra\.raw: b'\\xff\\xfe' is not representable as JSON")),
    "bytes-as-the-state": Case(mutate(b"title"), InvalidEntityState, (
        STATE, r"must be a Doc or a mapping, received bytes")),
    "an-object-in-a-field": Case(mutate(Doc(extra={"o": object()})), InvalidEntityState, (
        STATE, r"field extra\.o: <object object at .*> is not representable as JSON")),
    "an-object-as-the-state": Case(mutate(object()), InvalidEntityState, (
        STATE, r"must be a Doc or a mapping, received object")),
    "a-list-as-the-state": Case(mutate([("title", "x")]), InvalidEntityState, (
        STATE, r"must be a Doc or a mapping, received list")),
    "none-from-apply": Case(mutate(None), InvalidEntityState, (
        r"apply for doc:seed-1 returned None: expected the next state")),
    "a-wrong-field-type": Case(mutate({"score": "high"}), InvalidEntityState, (
        STATE, r"field score: Input should be a valid number")),
    "a-missing-required-field": Case(
        mutate({"description": "no name"}, kind="catalog-system", entity_id="web"),
        InvalidEntityState, (r"catalog-system:web", r"field name: Field required")),
    "an-unknown-field-of-a-strict-kind": Case(
        mutate({"name": "Web", "colour": "red"}, kind="catalog-system", entity_id="web"),
        InvalidEntityState, (r"catalog-system:web", r"field colour: Extra inputs")),
    "nul-in-a-text-field": Case(mutate(Doc(title="a\x00b")), InvalidEntityState, (
        STATE, r"field title: 'a\\x00b' holds a NUL character at position 1",
        r"expected text without NUL")),
    "nul-in-a-mapping-key": Case(mutate(Doc(extra={"ok": {"k\x00": 1}})), InvalidEntityState, (
        STATE, r"field extra\.ok\.'k\\x00': the key 'k\\x00' holds a NUL character")),
    "lone-surrogate-in-a-text-field": Case(mutate(Doc(title="a\ud800")), InvalidEntityState, (
        STATE, r"field title: 'a\\ud800' holds a lone surrogate at position 1")),
    "lone-surrogate-in-a-list": Case(mutate(Doc(tags=["ok", "\udfff"])), InvalidEntityState, (
        STATE, r"field tags\.1: '\\udfff' holds a lone surrogate")),
    "a-computed-kind's-bad-state-rolls-back-the-plugin's-write": Case(
        note_then({"body": "x", "weight": float("nan")}), InvalidEntityState, (
            r"note:n2", r"field weight: ", NOT_FINITE)),
    "a-computed-kind's-apply-returning-another-type": Case(
        note_then(Doc()), InvalidEntityState, (
            r"note:n2", r"must be a Note or a mapping, received Doc")),
    "a-dict-as-reason": Case(mutate(Doc(), reason={"why": 1}), InvalidEntityState, (
        STATE, r"reason must be text or None, received dict")),
    "a-reason-too-long": Case(mutate(Doc(), reason="x" * 10_001), InvalidEntityState, (
        STATE, r"reason has 10001 characters, expected at most 10000")),
    "nul-in-the-reason": Case(mutate(Doc(), reason="why\x00"), InvalidEntityState, (
        STATE, r"reason holds a NUL character")),
    "lone-surrogate-in-the-reason": Case(mutate(Doc(), reason="why\ud800"), InvalidEntityState, (
        STATE, r"reason ", r"surrogate")),
    "actor-None-None": Case(with_actor(lambda: Actor(None, None)),  # type: ignore[arg-type]
                            InvalidIdentifier, (
        r"Actor type must be non-empty text, received None", r'Actor\("user", "alice"\)')),
    "actor-not-an-Actor": Case(with_actor(lambda: ("user", "u1")), InvalidEntityState, (
        STATE, r"actor must be an Actor\(type, id\), received tuple")),
    "actor-id-with-a-newline": Case(with_actor(lambda: Actor("user", "u\n1")),
                                    InvalidEntityState, (
        STATE, r"actor id 'u\\n1' holds the non-printable", ID_RULE)),
    "actor-id-with-nul": Case(with_actor(lambda: Actor("user", "u\x001")), InvalidEntityState, (
        STATE, r"actor id .* holds the non-printable character U\+0000", ID_RULE)),
    "actor-id-of-256-characters": Case(with_actor(lambda: Actor("user", "u" * 256)),
                                       InvalidEntityState, (
        STATE, r"actor id .* has 256 characters", ID_RULE)),
    "actor-type-of-101-characters": Case(with_actor(lambda: Actor("t" * 101, "u1")),
                                         InvalidEntityState, (
        STATE, r"actor type .* has 101 characters", r"1 to 100 characters")),
    "actor-id-with-a-lone-surrogate": Case(with_actor(lambda: Actor("user", "u\ud800")),
                                           InvalidEntityState, (
        STATE, r"actor id .* holds the non-printable", ID_RULE)),
    "unknown-kind": Case(on_id("mutate", "seed-1", kind="nope"), UnknownEntityKind, (
        r"'nope'", r"expected one of the declared kinds \(catalog-system, doc, health, note\)")),
    "unknown-kind-with-nul": Case(on_id("remove", "seed-1", kind="do\x00c"), UnknownEntityKind, (
        r"'do\\x00c'", r"expected one of")),
}

BAD_IDS: dict[str, tuple[object, str]] = {
    "nul": ("se\x00ed", r"holds the non-printable character"),
    "lone-surrogate": ("seed\ud800", r"holds the non-printable character"),
    "leading-space": (" seed-1", r"starts or ends with whitespace"),
    "trailing-space": ("seed-1 ", r"starts or ends with whitespace"),
    "tab": ("seed\t1", r"holds the non-printable character"),
    "escape": ("seed\x1b[31m", r"holds the non-printable character"),
    "zero-width-space": ("seed\u200b1", r"holds the non-printable character"),
    "256-characters": ("x" * 256, r"has 256 characters"),
    "empty": ("", r"is empty"),
    "not-text": (42, r"is a int, not text"),
}

for _method in ("mutate", "write", "remove"):
    for _name, (_bad, _why) in BAD_IDS.items():
        WRITE_CASES[f"{_method}-id-{_name}"] = Case(on_id(_method, _bad), InvalidEntityState, (
            r"entity id of kind 'doc': ", _why, ID_RULE))


@pytest.mark.anyio
@pytest.mark.parametrize("case", params(WRITE_CASES))
async def test_a_bad_write_is_refused_naming_kind_id_and_field_and_changes_no_row(
    db: str, tmp_path: Path, case: Case, anyio_backend: str,
) -> None:
    await check_refused(db, tmp_path, case)


async def check_reads_find_nothing(url: str, entity_id: object) -> None:
    """Reads of an id that can never have been written find nothing (no driver error),
    and read nothing into the database."""
    async with make_host(url) as host:
        before = dump(url)
        docs = host.entity("doc")
        bad: Any = entity_id
        assert await docs.get(bad) is None
        assert await docs.get_many(["seed-1", bad]) == {"seed-1": await docs.get("seed-1")}
        assert await host.entity("note").get(bad) is None
        assert await host.entity("catalog-system").get_many([bad]) == {}
        assert await docs.in_state_since(bad, "title") is None
        assert await docs.in_state_since("seed-1", f"sc{entity_id}ore") is None
        assert await docs.in_state_for(bad, "title") == timedelta(0)
        assert await docs.transition_count(bad, "title", timedelta(days=1)) == 0
        assert await docs.transition_count("seed-1", f"sc{entity_id}ore", timedelta(days=1)) == 0
        assert await docs.transition_count("seed-1", "score", timedelta(days=1)) == 2
        after = dump(url)
    assert after == before


READ_IDS = {"nul": "seed\x001", "lone-surrogate": "seed\ud8001", "256-characters": "s" * 256}


@pytest.mark.anyio
@pytest.mark.parametrize("entity_id", [pytest.param(v, id=k) for k, v in READ_IDS.items()])
async def test_reads_of_an_id_that_cannot_exist_find_nothing(
    db: str, entity_id: str, anyio_backend: str,
) -> None:
    await check_reads_find_nothing(db, entity_id)


# -- config files ------------------------------------------------------------------------

CONFIG_NAME = "bad.yaml"


def config(content: str | bytes) -> Act:
    """Write `content` to a file and apply it the way `reactive apply -f` does."""
    async def act(host: Host, workdir: Path) -> object:
        path = workdir / CONFIG_NAME
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return await apply_config_file(host, path)
    return act


def config_path(make: Callable[[Path], Path]) -> Act:
    """Apply whatever path `make(workdir)` gives (missing files, directories, devices)."""
    async def act(host: Host, workdir: Path) -> object:
        return await apply_config_file(host, make(workdir))
    return act


SYSTEM = "systems:\n  - {{id: {id}, name: X}}\n"
CHECK = ("checks:\n  - id: c1\n    strategy: http\n    config: {{url: 'http://127.0.0.1:9/'}}\n"
         "    interval_seconds: {interval}\n")
FILE = r"{file}"

CONFIG_CASES: dict[str, Case] = {
    "malformed-yaml": Case(config("systems:\n  - {id: a, name: A\n"), ConfigError, (
        FILE + r":3: not valid YAML: ",)),
    "tab-indentation": Case(config("systems:\n\t- {id: a, name: A}\n"), ConfigError, (
        FILE + r":2: not valid YAML: ",)),
    "two-documents": Case(config("systems: []\n---\nsystems: []\n"), ConfigError, (
        FILE + r":2: not valid YAML: expected a single document in the stream, but found "
               r"another document",)),
    "a-python-tag": Case(config("systems: !!python/object:os.system {}\n"), ConfigError, (
        FILE + r":1: not valid YAML: .*constructor",)),
    "a-list-at-the-top": Case(config("- {id: a, name: A}\n"), ConfigError, (
        FILE + r":1: expected a mapping of sections .*systems.*, received list",)),
    "a-section-not-a-list": Case(config("systems: {id: a, name: A}\n"), ConfigError, (
        FILE + r":1: section 'systems' must be a list of items, received dict",)),
    "wrong-type-name": Case(config("systems:\n  - id: a\n    name: [1, 2]\n"), ConfigError, (
        FILE + r":3: systems\[0\]\.name: Input should be a valid string",)),
    "wrong-type-tags": Case(config("systems:\n  - {id: a, name: A, tags: 5}\n"), ConfigError, (
        FILE + r":2: systems\[0\]\.tags: Input should be a valid list",)),
    "unknown-key-in-an-item": Case(config("systems:\n  - {id: a, name: A, colour: red}\n"),
                                   ConfigError, (
        FILE + r":2: systems\[0\]\.colour: unknown field",)),
    "unknown-section": Case(config("systems: []\nnonsense: []\n"), ConfigError, (
        FILE + r":2: unknown section 'nonsense': expected one of associations, checks, "
               r"dependencies, systems",)),
    "section-of-a-plugin-not-loaded": Case(config("slos:\n  - {id: s1}\n"), ConfigError, (
        FILE + r":1: unknown section 'slos': expected one of ",)),
    "duplicate-top-level-key": Case(config("systems: []\nchecks: []\nsystems: []\n"),
                                    ConfigError, (
        FILE + r":3: key 'systems' is given twice in one mapping \(first at line 1\)",)),
    "duplicate-item-key": Case(config("systems:\n  - {id: a, name: A, name: B}\n"),
                               ConfigError, (FILE + r":2: key 'name' is given twice",)),
    "duplicate-system-id": Case(config("systems:\n  - {id: a, name: A}\n  - {id: a, name: B}\n"),
                                ConfigError, (
        FILE + r":3: systems\[1\] \(id 'a'\) is already declared by systems\[0\]",)),
    "non-utf8-bytes": Case(config("systems:\n  - {id: cafe, name: Café}\n".encode("latin-1")),
                           ConfigError, (
        FILE + r":2: byte 0xe9 at offset \d+ is not UTF-8: expected a UTF-8 text file",)),
    "utf16-file": Case(config("systems: []\n".encode("utf-16")), ConfigError, (
        FILE + r":1: byte 0xff at offset 0 is not UTF-8",)),
    "system-id-with-nul": Case(config(SYSTEM.format(id='"we\\0b"')), ConfigError, (
        FILE + r":2: systems\[0\]\.id: ", ID_RULE)),
    "system-id-with-spaces": Case(config(SYSTEM.format(id="' web'")), ConfigError, (
        FILE + r":2: systems\[0\]\.id: ", r"whitespace")),
    "system-id-of-256-characters": Case(config(SYSTEM.format(id="x" * 256)), ConfigError, (
        FILE + r":2: systems\[0\]\.id: ", r"255")),
    "system-id-with-a-tab": Case(config(SYSTEM.format(id='"a\\tb"')), ConfigError, (
        FILE + r":2: systems\[0\]\.id: ", ID_RULE)),
    "system-id-with-a-lone-surrogate": Case(config(SYSTEM.format(id='"a\\ud800"')),
                                            ConfigError, (
        FILE + r":2: not valid YAML: .*found invalid Unicode character escape code",)),
    "system-id-with-a-zero-width-space": Case(config(SYSTEM.format(id='"a\\u200bb"')),
                                              ConfigError, (
        FILE + r":2: systems\[0\]\.id: ", ID_RULE)),
    "system-metadata-nan": Case(config("systems:\n  - id: a\n    name: A\n"
                                       "    metadata: {load: .nan}\n"), ConfigError, (
        FILE + r":\d: systems\[0\]", r"metadata\.load", NOT_FINITE)),
    "check-interval-zero": Case(config(CHECK.format(interval=0)), ConfigError, (
        FILE + r":5: checks\[0\]\.interval_seconds: Input should be greater than 0 \(received",)),
    "check-interval-negative": Case(config(CHECK.format(interval=-5)), ConfigError, (
        FILE + r":5: checks\[0\]\.interval_seconds: Input should be greater than 0 \(received",)),
    "check-interval-text": Case(config(CHECK.format(interval="soon")), ConfigError, (
        FILE + r":5: checks\[0\]\.interval_seconds: Input should be a valid number",)),
    "check-interval-nan": Case(config(CHECK.format(interval=".nan")), ConfigError, (
        FILE + r":5: checks\[0\]\.interval_seconds: ",)),
    "check-interval-a-year": Case(config(CHECK.format(interval=86_400 * 365)), ConfigError, (
        FILE + r":5: checks\[0\]\.interval_seconds: Input should be less than or equal",)),
    "check-unknown-strategy": Case(config("checks:\n  - {id: c1, strategy: smoke}\n"),
                                   ConfigError, (
        FILE + r":2: checks\[0\]", r"smoke", r"expected one of|http")),
    "check-bad-url": Case(config("checks:\n  - id: c1\n    strategy: http\n"
                                 "    config: {url: 'ftp://x'}\n"), ConfigError, (
        FILE + r":4: checks\[0\]", r"expected an http:// or https:// URL")),
    "check-id-with-nul": Case(config('checks:\n  - {id: "c\\0", strategy: tcp}\n'),
                              ConfigError, (FILE + r":2: checks\[0\]\.id: ", ID_RULE)),
    "association-unknown-system": Case(config("associations:\n  - {system: nope, check: ping}\n"),
                                       ConfigError, (
        FILE + r":2: associations\[0\]", r"unknown system 'nope'", r"expected a system")),
    "association-unknown-check": Case(config("associations:\n  - {system: web, check: nope}\n"),
                                      ConfigError, (
        FILE + r":2: associations\[0\]", r"unknown check 'nope'", r"expected a check")),
    "dependency-source-with-nul": Case(
        config('dependencies:\n  - {source: "web\\0", target: api}\n'), ConfigError, (
            FILE + r":2: dependencies\[0\]", r"'web\\x00'")),
    "association-system-with-nul": Case(
        config('associations:\n  - {system: "web\\0", check: ping}\n'), ConfigError, (
            FILE + r":2: associations\[0\]", r"'web\\x00'")),
    "association-check-with-nul": Case(
        config('associations:\n  - {system: web, check: "ping\\0"}\n'), ConfigError, (
            FILE + r":2: associations\[0\]", r"'ping\\x00'")),
    "dependency-unknown-impact": Case(
        config("dependencies:\n  - {source: web, target: api, impact: fatal}\n"), ConfigError, (
            FILE + r":2: dependencies\[0\]\.impact: Input should be ",)),
    "dependency-unknown-target": Case(
        config("systems:\n  - {id: new, name: New}\ndependencies:\n"
               "  - {source: web, target: payments}\n"), ConfigError, (
            FILE + r":4: dependencies\[0\]", r"'payments'")),
    "recursive-alias": Case(config("systems:\n  - &me {id: x, name: X, metadata: {s: *me}}\n"),
                            ConfigError, (
        FILE + r":2: a YAML alias refers to a node that contains it",)),
    "alias-bomb": Case(config("systems:\n  - id: b\n    name: B\n    metadata:\n"
                              "      a: &a [x,x,x,x,x,x,x,x,x,x]\n"
                              + "".join(f"      {n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n"
                                        for p, n in zip("abcdefgh", "bcdefghi", strict=True))),
                       ConfigError, (FILE + r": the document expands to more than 100,000",)),
    "file-over-the-size-limit": Case(config("# padding\n" * 110_000), ConfigError, (
        FILE + r"' has 1,100,000 bytes: expected at most 1,048,576",)),
    "missing-file": Case(config_path(lambda d: d / "missing.yaml"), ConfigError, (
        r"cannot read config file '.*missing\.yaml': No such file",)),
    "a-directory": Case(config_path(lambda d: d), ConfigError, (
        r"cannot read config file '.*': Is a directory",)),
    "an-endless-device": Case(config_path(lambda d: Path("/dev/zero")), ConfigError, (
        r"config file '/dev/zero' has more than 1,048,576 bytes: expected at most",)),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", params(CONFIG_CASES))
async def test_a_bad_config_file_is_refused_naming_file_and_line_and_changes_no_row(
    db: str, tmp_path: Path, case: Case, anyio_backend: str,
) -> None:
    await check_refused(db, tmp_path, case)


# -- the command line, in-process -----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CliCase:
    """`reactive ARGS` (`{db}`: the seeded database's URL; `{dir}`: a scratch folder)."""

    args: tuple[str, ...]
    says: tuple[str, ...]
    prepare: Callable[[Path], None] | None = None


def invoke(argv: list[str]) -> int:
    """`run(argv)`'s exit status (a usage error returns 2, never raises SystemExit)."""
    return cli_run(argv)


CLI_CASES: dict[str, CliCase] = {
    "unknown-command": CliCase(("frobnicate", "--database-url", "{db}"), (
        r"argument COMMAND: invalid choice: 'frobnicate'", r"choose from",)),
    "no-command": CliCase(("--database-url", "{db}"), (
        r"the following arguments are required: COMMAND",)),
    "limit-zero": CliCase(("changes", "--database-url", "{db}", "--limit", "0"), (
        r"argument --limit: expected a positive integer, received '0'",)),
    "limit-negative": CliCase(("timers", "--database-url", "{db}", "--limit", "-5"), (
        r"argument --limit: expected a positive integer, received '-5'",)),
    "limit-not-a-number": CliCase(("changes", "--database-url", "{db}", "--limit", "ten"), (
        r"argument --limit: expected a positive integer, received 'ten'",)),
    "before-not-a-number": CliCase(("changes", "--database-url", "{db}", "--before", "x"), (
        r"argument --before: expected a whole number \(a seq or an id from a listing\), "
        r"received 'x'",)),
    "status-not-a-choice": CliCase(("deliveries", "--database-url", "{db}", "--status", "lost"), (
        r"argument --status: invalid choice: 'lost'",)),
    "apply-without-a-file": CliCase(("apply", "--database-url", "{db}"), (
        r"the following arguments are required: -f/--file",)),
    "changes-on-a-missing-sqlite-file": CliCase(
        ("changes", "--database-url", "sqlite:///{dir}/missing.db"), (
            r"no database at '.*missing\.db': expected an existing SQLite file",)),
    "changes-on-a-file-that-is-not-a-database": CliCase(
        ("changes", "--database-url", "sqlite:///{dir}/junk.db"), (
            r"database .*junk\.db", r"not a database"),
        prepare=lambda d: (d / "junk.db").write_bytes(b"this is not SQLite\n" * 100)),
    "changes-on-an-empty-sqlite-file": CliCase(
        ("changes", "--database-url", "sqlite:///{dir}/empty.db"), (
            r"has no reactive-core tables: expected one that", ),
        prepare=lambda d: sqlite3.connect(d / "empty.db").close()),
    "apply-of-a-missing-file": CliCase(
        ("apply", "--database-url", "{db}", "-f", "{dir}/missing.yaml"), (
            r"cannot read config file '.*missing\.yaml': No such file",)),
    "apply-of-a-bad-file": CliCase(
        ("apply", "--database-url", "{db}", "-f", "{dir}/bad.yaml"), (
            r"bad\.yaml:3: systems\[1\]\.name: Field required",),
        prepare=lambda d: (d / "bad.yaml").write_text(
            "systems:\n  - {id: fresh, name: Fresh}\n  - {id: nameless}\n", encoding="utf-8")),
    "database-url-not-a-url": CliCase(("changes", "--database-url", "not a url"), (
        r"database URL 'not a url' is not valid: expected e\.g\. 'sqlite:///",)),
    "database-url-unknown-dialect": CliCase(("changes", "--database-url", "nosuchdb://x/y"), (
        r"database URL 'nosuchdb://x/y' names backend 'nosuchdb': expected sqlite or "
        r"postgresql",)),
    "database-url-unreachable-postgres": CliCase(
        ("changes", "--database-url", "postgresql://postgres@127.0.0.1:1/x"), (
            r"database postgresql\+psycopg://postgres@127\.0\.0\.1:1/x: ",
            r"connection failed: .*Connection refused")),
    "plugin-that-does-not-import": CliCase(
        ("changes", "--database-url", "{db}", "--plugin", "no_such_module:Plugin"), (
            r"--plugin 'no_such_module:Plugin': cannot import module 'no_such_module'",)),
    "replay-of-an-unknown-delivery": CliCase(
        ("deliveries", "--database-url", "{db}", "--replay", "999999"), (
            r"delivery 999999 does not exist: expected the id of a dead-lettered delivery",)),
}


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("REACTIVE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("REACTIVE_PLUGINS", "catalog,health")
    yield


@pytest.mark.parametrize("case", [pytest.param(c, id=n) for n, c in CLI_CASES.items()])
def test_a_bad_command_line_exits_2_naming_the_option_and_changes_no_row(
    db: str, tmp_path: Path, case: CliCase, cli_env: None, capsys: pytest.CaptureFixture[str],
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    if case.prepare is not None:
        case.prepare(scratch)
    before = dump(db)
    before_files = sorted(p.name for p in scratch.iterdir())
    argv = [arg.replace("{db}", db).replace("{dir}", str(scratch)) for arg in case.args]

    status = invoke(argv)

    out, err = capsys.readouterr()
    assert status == 2, (out, err)
    assert "Traceback" not in err and "Traceback" not in out
    assert re.search(r"^(reactive( [a-z]+)?: )?error: ", err, re.MULTILINE), err
    assert_says(err, case.says)
    assert dump(db) == before
    assert sorted(p.name for p in scratch.iterdir()) == before_files  # no file created
