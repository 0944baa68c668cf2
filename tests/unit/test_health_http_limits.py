"""HTTP checks cannot be turned against the host: bounded bodies, headers that stay with
their origin across redirects, no body excerpts stored unless asked for."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import httpx
import pytest
from anyio.abc import SocketAttribute

from health_plugin import HealthStatus, StrategyContext
from health_plugin.strategies import HttpCheckConfig, HttpStrategy

pytestmark = pytest.mark.anyio

Respond = Callable[[bytes, anyio.abc.SocketStream], Awaitable[None]]


@asynccontextmanager
async def server(respond: Respond) -> AsyncIterator[str]:
    """A tiny HTTP/1.1 server on 127.0.0.1; `respond(request_head, stream)` answers."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(SocketAttribute.local_port)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            head = b""
            try:
                while b"\r\n\r\n" not in head:
                    head += await stream.receive()
                await respond(head, stream)
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield f"http://127.0.0.1:{port}/"
        tg.cancel_scope.cancel()


async def run(**config: object) -> tuple[HealthStatus, dict[str, object]]:
    async with httpx.AsyncClient(trust_env=False) as http:
        outcome = await HttpStrategy().run(HttpCheckConfig.model_validate(config),
                                           StrategyContext(http=http))
    return outcome.status, outcome.result


async def test_an_endless_body_is_read_only_up_to_the_limit(anyio_backend: str) -> None:
    sent = 0

    async def endless(_head: bytes, stream: anyio.abc.SocketStream) -> None:
        nonlocal sent
        await stream.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        while True:  # never ends: ~1 GB unless the client stops reading
            await stream.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
            if sent > 1 << 30:
                return

    async with server(endless) as url:
        status, result = await run(url=url, body_contains="needle", max_body_bytes=100_000,
                                   timeout_seconds=10)
    assert status is HealthStatus.UNHEALTHY
    assert result["error"] == "body does not contain 'needle'"
    assert result["body_truncated_at"] == 100_000
    assert "body_excerpt" not in result  # not stored unless asked for
    assert sent < 20 * 65536  # the client stopped reading long before


async def test_configured_headers_do_not_follow_a_redirect_to_another_origin(
    anyio_backend: str,
) -> None:
    seen: dict[str, bytes] = {}

    async def record(name: str) -> Respond:
        async def respond(head: bytes, stream: anyio.abc.SocketStream) -> None:
            seen[name] = head
            await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return respond

    async with server(await record("elsewhere")) as elsewhere:
        async def redirect(head: bytes, stream: anyio.abc.SocketStream) -> None:
            seen.setdefault("first", head)
            target = elsewhere if b"GET / " in head else "/"
            await stream.send(f"HTTP/1.1 302 Found\r\nLocation: {target}\r\n"
                              "Content-Length: 0\r\n\r\n".encode())

        async with server(redirect) as first:
            status, result = await run(url=first, follow_redirects=True,
                                       headers={"X-Api-Key": "s3cret"})
    assert status is HealthStatus.HEALTHY and result["status_code"] == 200
    assert b"x-api-key: s3cret" in seen["first"].lower()
    assert b"s3cret" not in seen["elsewhere"]


async def test_redirect_loops_and_excerpts_on_request(anyio_backend: str) -> None:
    async def loop(_head: bytes, stream: anyio.abc.SocketStream) -> None:
        await stream.send(b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n")

    async with server(loop) as url:
        status, result = await run(url=url, follow_redirects=True, max_redirects=3)
    assert status is HealthStatus.UNHEALTHY
    assert str(result["error"]).startswith("TooManyRedirects: more than 3 redirects")

    async def teapot(_head: bytes, stream: anyio.abc.SocketStream) -> None:
        await stream.send(b"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 5\r\n\r\nshort")

    async with server(teapot) as url:
        _, result = await run(url=url, store_body_excerpt=True)
    assert result["body_excerpt"] == "short"
