"""`GET /api/events` of a real server on 127.0.0.1 (in-process host, SQLite): a client
that goes away and comes back with `Last-Event-ID` gets every change exactly once, in
seq order; the `kind` and `id` filters; the stream ends when the server stops."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from pydantic import BaseModel, ConfigDict

from reactive_core import Host, hookimpl
from reactive_core.http.plugin import HttpPlugin

pytestmark = pytest.mark.anyio


class Meter(BaseModel):
    model_config = ConfigDict(frozen=True)

    value: int = 0


class Meters:
    """Two store-backed kinds, `meter` and `dial`."""

    name = "meters"

    @hookimpl
    def reactive_register(self, registry: Any) -> None:
        registry.define_entity("meter", state=Meter)
        registry.define_entity("dial", state=Meter)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory,
                 ) -> AsyncIterator[tuple[Host, httpx.AsyncClient]]:
    """One server for the module's tests (each uses entities of its own)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('sse')}/reactive.db"
    async with serving(url) as both:
        yield both


def http_host(url: str) -> Host:
    return Host(database_url=url, entry_points=False, plugins=[HttpPlugin, Meters],
                config={"poll_interval": 0.05, "run_jobs": False,
                        "plugins": {"http": {"enabled": True, "listen": "127.0.0.1:0"}}})


def client_of(host: Host) -> httpx.AsyncClient:
    plugin = host.plugin("http")
    assert isinstance(plugin, HttpPlugin) and plugin.url is not None
    return httpx.AsyncClient(base_url=plugin.url, trust_env=False, timeout=10)


@asynccontextmanager
async def serving(url: str) -> AsyncIterator[tuple[Host, httpx.AsyncClient]]:
    async with http_host(url) as host, client_of(host) as client:
        yield host, client


async def set_value(host: Host, kind: str, entity_id: str, value: int) -> int:
    write = await host.entity(kind).write(entity_id, lambda _tx, _prev: Meter(value=value))
    assert write.change is not None
    return write.change.seq


class Events:
    """The events of an open stream, read a few at a time (comments skipped)."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        self._lines = response.aiter_lines()

    async def next(self, count: int) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        fields: dict[str, str] = {}
        with anyio.fail_after(10):
            async for line in self._lines:
                if line == "":
                    if "data" in fields:
                        events.append({"id": int(fields["id"]), "event": fields["event"],
                                       "data": json.loads(fields["data"])})
                        if len(events) == count:
                            return events
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
        raise AssertionError(f"the stream ended after {len(events)} of {count} events")

    async def rest(self) -> list[str]:
        """The lines until the server ends the stream."""
        with anyio.fail_after(10):
            return [line async for line in self._lines]


async def test_a_client_that_reconnects_with_last_event_id_gets_every_change_once_in_order(
    served: tuple[Host, httpx.AsyncClient],
) -> None:
    host, client = served
    before = [await set_value(host, "meter", f"m{i}", i) for i in range(5)]
    async with client.stream("GET", "/api/events",
                             params={"after": before[0] - 1}) as response:
        first = await Events(response).next(3)
    seen = [e["id"] for e in first]
    assert seen == before[:3]
    assert first[0]["event"] == "change"
    assert first[0]["data"] == {
        **first[0]["data"], "seq": before[0], "kind": "meter", "entity_id": "m0",
        "prev": None, "next": {"value": 0}, "changed_fields": ["value"],
        "actor": {"type": "system", "id": "reactive-core"}}

    # While it is away: more changes, of both kinds.
    away = [await set_value(host, "dial", "d1", 1), await set_value(host, "meter", "m0", 9),
            await set_value(host, "meter", "m1", 8)]
    async with client.stream("GET", "/api/events",
                             headers={"Last-Event-ID": str(seen[-1])}) as response:
        events = Events(response)
        caught_up = await events.next(5)
        live = [await set_value(host, "meter", "m2", 7), await set_value(host, "dial", "d1", 2)]
        followed = await events.next(2)
    received = seen + [e["id"] for e in caught_up + followed]
    assert received == [*before, *away, *live]
    assert received == sorted(set(received))
    assert [e["data"]["delta"] for e in followed] == [{"value": 7}, {"value": 2}]

    # A stream whose client left drops its subscription.
    with anyio.fail_after(10):
        while host.registry.has_broadcast:
            await anyio.sleep(0.01)


async def test_the_kind_and_id_filters_and_the_after_cursor(
    served: tuple[Host, httpx.AsyncClient],
) -> None:
    host, client = served
    await set_value(host, "meter", "a", 1)
    dial = await set_value(host, "dial", "a", 1)
    await set_value(host, "meter", "b", 1)
    meter_a = await set_value(host, "meter", "a", 2)
    async with client.stream("GET", "/api/events",
                             params={"kind": "meter", "id": "a", "after": dial}) as response:
        events = Events(response)
        (only,) = await events.next(1)
        later = await set_value(host, "meter", "a", 3)
        await set_value(host, "meter", "b", 3)
        await set_value(host, "dial", "a", 3)
        again = await set_value(host, "meter", "a", 4)
        rest = await events.next(2)
    assert only["id"] == meter_a
    assert [e["id"] for e in rest] == [later, again]
    async with client.stream("GET", "/api/events", params={"kind": "dial"}) as response:
        # No cursor: only what is committed from now on.
        events = Events(response)
        now = await set_value(host, "dial", "b", 1)
        (fresh,) = await events.next(1)
    assert (fresh["id"], fresh["data"]["entity_id"]) == (now, "b")


async def test_a_bad_cursor_is_a_problem_naming_it(
    served: tuple[Host, httpx.AsyncClient],
) -> None:
    _host, client = served
    header = await client.get("/api/events", headers={"Last-Event-ID": "soon"})
    query = await client.get("/api/events", params={"after": -1})
    assert header.status_code == query.status_code == 422
    assert header.headers["content-type"] == "application/problem+json"
    assert "Last-Event-ID" in header.json()["detail"]
    assert "after" in query.json()["detail"]


async def test_the_stream_ends_when_the_server_stops(sqlite_url: str) -> None:
    opened, seen = anyio.Event(), anyio.Event()
    got: list[dict[str, Any]] = []
    rest: list[str] = []

    async def listen(host: Host) -> None:
        async with client_of(host) as client, client.stream("GET", "/api/events") as response:
            events = Events(response)
            opened.set()
            got.extend(await events.next(1))
            seen.set()
            rest.extend(await events.rest())

    async with anyio.create_task_group() as group:
        async with http_host(sqlite_url) as host:
            group.start_soon(listen, host)
            await opened.wait()
            seq = await set_value(host, "meter", "x", 1)
            with anyio.fail_after(10):
                await seen.wait()
        # The host stopped with the stream open: the stream ended, the listener returns.
    assert [e["id"] for e in got] == [seq]
    assert all(line == "" or line.startswith(":") for line in rest)


@pytest.mark.postgres
async def test_on_postgresql_a_lower_seq_committed_later_is_sent_first_and_not_missed(
    pg_url: str,
) -> None:
    # Transaction A takes a seq and stays open while B takes the next one and commits:
    # the stream must hold B back until A ends, then send A and B in seq order.
    taken: list[int] = []
    release = threading.Event()

    def slow_write(tx: Any) -> None:
        write = writer.entity("meter").write_in(tx, "slow", lambda _tx, _p: Meter(value=1))
        assert write.change is not None
        taken.append(write.change.seq)
        release.wait(20)

    writer = Host(database_url=pg_url, entry_points=False, plugins=[Meters],
                  config={"workers": False})
    async with serving(pg_url) as (host, client), writer:
        async with client.stream("GET", "/api/events") as response:
            events = Events(response)
            async with anyio.create_task_group() as group:
                group.start_soon(writer.run, slow_write)
                with anyio.fail_after(10):
                    while not taken:
                        await anyio.sleep(0.01)
                fast = await set_value(host, "meter", "fast", 1)
                assert fast > taken[0]
                await anyio.sleep(0.5)  # time for a stream that does not wait to send B
                release.set()
            received = await events.next(2)
    assert [(e["id"], e["data"]["entity_id"]) for e in received] == [
        (taken[0], "slow"), (fast, "fast")]


async def test_reads_accept_the_token_as_a_query_parameter_but_writes_do_not(
        tmp_path: Path) -> None:
    """An `EventSource` sends no headers: off loopback the stream takes `access_token`."""
    from reactive_core import Host
    from reactive_core.http.plugin import HttpPlugin
    from reactive_core.http.tokens import Scope, create_in

    async with Host(database_url=f"sqlite:///{tmp_path / 'q.db'}", entry_points=False,
                    plugins=[HttpPlugin],
                    config={"plugins": {"http": {"enabled": False}}}) as host:
        from datetime import UTC, datetime

        from reactive_core.http.app import build_app
        from reactive_core.http.settings import HttpSettings

        token = await host.run(create_in, "viewer", Scope.READ, datetime.now(UTC))
        app = build_app(host, HttpSettings(), public_reads=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/api/changes")).status_code == 401
            assert (await client.get(f"/api/changes?access_token={token}")).status_code == 200
            refused = await client.post(f"/api/deliveries/1/replay?access_token={token}")
            assert refused.status_code == 401


async def test_many_streams_share_one_reader_and_a_stream_older_than_its_ring_catches_up(
    served: tuple[Host, httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Five live streams get every change once, in order, from the shared reader; a
    stream resuming from before what the reader keeps reads the log itself, then joins."""
    from reactive_core.http.sse import ChangeHub

    monkeypatch.setattr(ChangeHub, "RING", 4)
    host, client = served
    start = await set_value(host, "meter", "hub-0", 0)
    async with anyio.create_task_group() as group:
        got: dict[int, list[int]] = {}

        async def listen(n: int) -> None:
            async with client.stream("GET", "/api/events", params={"after": start}) as response:
                got[n] = [e["id"] for e in await Events(response).next(12)]

        for n in range(5):
            group.start_soon(listen, n)
        await anyio.sleep(0.3)
        written = [await set_value(host, "meter", f"hub-{i % 3}", i) for i in range(1, 13)]
    assert all(ids == written for ids in got.values()), got
    async with client.stream("GET", "/api/events", params={"after": start}) as response:
        late = [e["id"] for e in await Events(response).next(12)]   # older than the ring (4)
    assert late == written
