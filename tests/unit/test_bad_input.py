"""Bad input at the write path's door: refused with a clear error naming kind, id and
field, nothing written; what `mutate` returns is what a later `get` reads."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from reactive_core import (
    Actor,
    DatabaseBusy,
    Host,
    InvalidEntityState,
    InvalidIdentifier,
    hookimpl,
)

pytestmark = pytest.mark.anyio


class Doc(BaseModel):
    model_config = ConfigDict(frozen=True)

    title: str = "t"
    score: float = 0.0
    numbers: set[int] = set()
    extra: dict[Any, Any] = {}


class Other(BaseModel):
    title: str = "other"


class Docs:
    name = "docs"

    @hookimpl
    def reactive_register(self, registry: Any) -> None:
        registry.define_entity("doc", state=Doc)


def make_host(url: str, **config: Any) -> Host:
    return Host(database_url=url, plugins=[Docs], entry_points=False,
                config={"run_jobs": False, "workers": False, **config})


@pytest.fixture
async def host(sqlite_url: str, anyio_backend: str) -> AsyncIterator[Host]:
    async with make_host(sqlite_url) as running:
        yield running


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"x": value}
    return value


def cyclic() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["self"] = value
    return value


@pytest.mark.parametrize(("next_state", "message"), [
    (Doc(score=float("nan")), r"doc:d cannot be stored: field score: NaN and infinity"),
    (Doc(score=float("-inf")), r"field score: NaN and infinity"),
    (Doc(extra={"v": float("inf")}), r"field extra.v: NaN and infinity"),
    (Doc(extra={1: "a", "1": "b"}), r"field extra: \{1: 'a', '1': 'b'\} would read back as"),
    (Doc(extra={"tags": {"a", "b"}}), r"field extra: .* would read back as \{'tags': \["),
    (Doc(extra={"raw": b"\xff"}), r"field extra\.raw: b'\\xff' is not representable as JSON"),
    (Doc(extra={"o": object()}), r"field extra\.o: .* is not representable as JSON"),
    (Doc(extra={"big": 10**5000}), r"field extra\.big: an int of about 5,001 digits"),
    ({"title": "x", "extra": cyclic()}, r"doc:d .*field extra\.self(\.self)?: holds itself"),
    ({"title": "x", "extra": nested(5000)}, r"doc:d .*field extra\.x\.x.*: nests more than 250"),
    (Doc(title="nul\x00"), r"field title: 'nul\\x00' holds a NUL character"),
    (Doc(extra={"s": ["\ud800"]}), r"field extra\.s\.0: '\\ud800' holds a lone surrogate"),
    (Other(), r"next state of doc:d must be a Doc or a mapping, received Other"),
])
async def test_what_cannot_be_stored_faithfully_is_refused_and_nothing_is_written(
    host: Host, next_state: Any, message: str,
) -> None:
    docs = host.entity("doc")
    await docs.mutate("d", lambda tx, prev: Doc(title="kept"))
    with pytest.raises(InvalidEntityState, match=message):
        await docs.mutate("d", lambda tx, prev: next_state)
    assert await docs.get("d") == Doc(title="kept")
    assert len(await host.changes()) == 1


async def test_what_mutate_returns_is_what_get_reads(host: Host) -> None:
    docs = host.entity("doc")
    written = await docs.mutate("d", lambda tx, prev: Doc(numbers={3, 1, 2},
                                                          extra={"k": [1, {"a": None}]}))
    assert await docs.get("d") == written
    assert written.numbers == {1, 2, 3}


@pytest.mark.parametrize("entity_id", [
    "", " padded", "padded ", "new\nline", "nul\x00", "zero\u200bwidth", "lone\ud800",
    "x" * 256, 42, None,
])
async def test_bad_entity_ids_are_refused_alike_everywhere(host: Host, entity_id: Any) -> None:
    with pytest.raises(InvalidEntityState, match=r"entity id of kind 'doc': .* expected "
                                                 r"printable text of 1 to 255 characters"):
        await host.entity("doc").mutate(entity_id, lambda tx, prev: Doc())
    assert await host.changes() == []


async def test_actors_and_reasons_are_checked(host: Host) -> None:
    docs = host.entity("doc")
    with pytest.raises(InvalidIdentifier, match=r"Actor type must be non-empty text, received "
                                                r"None"):
        Actor(None, None)  # type: ignore[arg-type]
    with pytest.raises(InvalidEntityState, match=r"actor id 'u\\n1' holds the non-printable"):
        await docs.mutate("d", lambda tx, prev: Doc(), actor=Actor("user", "u\n1"))
    with pytest.raises(InvalidEntityState, match=r"reason must be text or None, received dict"):
        await docs.mutate("d", lambda tx, prev: Doc(), reason={"why": 1})  # type: ignore[arg-type]
    with pytest.raises(InvalidEntityState, match=r"reason has 10001 characters"):
        await docs.mutate("d", lambda tx, prev: Doc(), reason="x" * 10_001)
    assert await host.changes() == []
    await docs.mutate("d", lambda tx, prev: Doc(), actor=Actor("user", "u1"), reason="fine")
    (change,) = await host.changes()
    assert (change.actor, change.reason) == (Actor("user", "u1"), "fine")


async def test_a_database_locked_past_the_busy_timeout_is_a_clear_retryable_error(
    sqlite_url: str, anyio_backend: str,
) -> None:
    async with make_host(sqlite_url, busy_timeout_seconds=0.2) as host:
        path = sqlite_url.removeprefix("sqlite:///")
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(DatabaseBusy, match="stayed locked by another writer") as info:
                await host.entity("doc").mutate("d", lambda tx, prev: Doc())
            assert info.value.retryable is True
        finally:
            holder.rollback()
            holder.close()
        await host.entity("doc").mutate("d", lambda tx, prev: Doc())  # works again
