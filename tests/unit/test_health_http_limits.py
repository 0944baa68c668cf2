"""HTTP checks cannot be turned against the host: bounded bodies (endless, or compressed
to expand a thousandfold: peak traced memory stays near the byte cap), headers that stay
with their origin across redirects, no body excerpts stored unless asked for."""

from __future__ import annotations

import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio
import anyio.abc
import httpx
import pytest
from anyio.abc import SocketAttribute

from health_plugin import CheckConfiguration, HealthStatus, StrategyContext
from health_plugin.executor import CheckExecutor
from health_plugin.models import HealthSettings
from health_plugin.strategies import BUILTIN_STRATEGIES, HttpCheckConfig, HttpStrategy

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


async def execute(**config: object) -> tuple[HealthStatus, dict[str, object]]:
    """Run an `http` check the way the scheduler does: through the executor's client."""
    executor = CheckExecutor(settings=HealthSettings(), offered=lambda: [BUILTIN_STRATEGIES])
    await executor.open()
    try:
        outcome = await executor.execute(CheckConfiguration(
            id="c1", name="c1", strategy="http", config=config, interval_seconds=60,
            paused=False))
    finally:
        await executor.close()
    return outcome.status, outcome.result


MB = 1024 * 1024


@contextmanager
def traced_peak() -> Iterator[list[int]]:
    """Trace allocations (all threads) inside the block; the box then holds the peak."""
    box = [0]
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        yield box
    finally:
        box[0] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


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
        with traced_peak() as peak:
            status, result = await run(url=url, body_contains="needle", max_body_bytes=100_000,
                                       timeout_seconds=10)
    assert status is HealthStatus.UNHEALTHY
    assert result["error"] == "body does not contain 'needle'"
    assert result["body_truncated_at"] == 100_000
    assert "body_excerpt" not in result  # not stored unless asked for
    assert sent < 20 * 65536  # the client stopped reading long before
    assert peak[0] < 4 * MB  # the server's chunks and the client's buffers, no more


def packer(wbits: int) -> Callable[[bytes], bytes]:
    def pack(data: bytes) -> bytes:
        squeeze = zlib.compressobj(9, zlib.DEFLATED, wbits)
        return squeeze.compress(data) + squeeze.flush()
    return pack


gzip, deflate, raw_deflate = (packer(zlib.MAX_WBITS | 16), packer(zlib.MAX_WBITS),
                              packer(-zlib.MAX_WBITS))


def zeros_bomb(wbits: int, megabytes: int = 128) -> bytes:
    """`megabytes` MiB of zeros, compressed a MiB at a time (never all in memory)."""
    squeeze, block = zlib.compressobj(9, zlib.DEFLATED, wbits), bytes(MB)
    return b"".join(squeeze.compress(block) for _ in range(megabytes)) + squeeze.flush()


def compressed(coding: str, body: bytes) -> Respond:
    async def respond(_head: bytes, stream: anyio.abc.SocketStream) -> None:
        await stream.send(f"HTTP/1.1 200 OK\r\nContent-Encoding: {coding}\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return respond


@pytest.mark.parametrize(("coding", "bomb"), [
    ("gzip", lambda: zeros_bomb(zlib.MAX_WBITS | 16)),
    ("deflate", lambda: zeros_bomb(-zlib.MAX_WBITS)),
    ("gzip, gzip", lambda: gzip(zeros_bomb(zlib.MAX_WBITS | 16))),
], ids=["gzip", "raw-deflate", "gzip-twice"])
async def test_a_compressed_body_is_inflated_only_up_to_the_limit(
    anyio_backend: str, coding: str, bomb: Callable[[], bytes],
) -> None:
    body = bomb()
    assert len(body) < 300_000  # 128 MiB once inflated
    async with server(compressed(coding, body)) as url:
        with traced_peak() as peak:
            status, result = await execute(url=url, body_contains="needle",
                                           max_body_bytes=100_000)
    assert (status, result["error"]) == (HealthStatus.UNHEALTHY,
                                         "body does not contain 'needle'")
    assert result["body_truncated_at"] == 100_000
    assert peak[0] < 8 * MB  # not the 64 MiB httpx inflates one network read into


@pytest.mark.parametrize(("coding", "pack"), [
    ("gzip", gzip), ("x-gzip", gzip), ("deflate", deflate),
    ("deflate", raw_deflate), ("gzip, deflate", lambda data: deflate(gzip(data))),
    ("identity", lambda data: data),
], ids=["gzip", "x-gzip", "zlib-deflate", "raw-deflate", "gzip-then-deflate", "identity"])
async def test_compressed_bodies_are_still_read_right(
    anyio_backend: str, coding: str, pack: Callable[[bytes], bytes],
) -> None:
    text = b"<html>" + b"padding " * 50_000 + b"status: all good</html>"
    async with server(compressed(coding, pack(text))) as url:
        status, result = await execute(url=url, body_contains="all good",
                                       max_body_bytes=len(text))
    assert (status, result) == (HealthStatus.HEALTHY, {"status_code": 200})


async def test_a_corrupt_compressed_body_is_a_failed_run(anyio_backend: str) -> None:
    async with server(compressed("gzip", b"\x1f\x8b not gzip at all")) as url:
        status, result = await execute(url=url)
    assert status is HealthStatus.UNHEALTHY
    assert str(result["error"]).startswith("DecodingError: gzip body cannot be inflated")


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
            assert first.split(":")[:2] == elsewhere.split(":")[:2]  # only the port differs
            status, result = await run(url=first, follow_redirects=True,
                                       headers={"X-Api-Key": "s3cret",
                                                "Authorization": "Bearer t0ken"})
    assert status is HealthStatus.HEALTHY and result["status_code"] == 200
    assert b"x-api-key: s3cret" in seen["first"].lower()
    assert b"authorization: bearer t0ken" in seen["first"].lower()
    assert seen["elsewhere"].startswith(b"GET / HTTP/1.1")  # the redirect was followed
    assert b"s3cret" not in seen["elsewhere"] and b"x-api-key" not in seen["elsewhere"].lower()
    assert b"t0ken" not in seen["elsewhere"] and b"authorization" not in seen["elsewhere"].lower()


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
