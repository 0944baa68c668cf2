"""A flaky HTTP target on 127.0.0.1 for demos and tests: healthy, erroring, hanging, healthy.

`run_flaky_target()` starts a tiny HTTP/1.1 server on an ephemeral port and yields its
URL; it answers requests by a *plan* of phases, each `(behaviour, requests)`:

* `"ok"` — `200 OK`, body `ok`;
* `"error"` — `500 Internal Server Error`;
* `"hang"` — accept the request and never answer (until the client gives up or the
  server stops), i.e. a timeout for any check with a timeout below `hang_seconds`.

The default plan is 3 × ok, 3 × error, 2 × hang, then ok for ever (the last phase
repeats). Phases advance by request count, so a run is deterministic whatever the
check interval. `FlakyTarget` is the same server with its counters, for callers that
want to see what it served.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Literal, Self

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

Behaviour = Literal["ok", "error", "hang"]
Phase = tuple[Behaviour, int]

DEFAULT_PLAN: tuple[Phase, ...] = (("ok", 3), ("error", 3), ("hang", 2), ("ok", 1))
_BEHAVIOURS = ("ok", "error", "hang")
_RESPONSES = {
    "ok": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
          b"Connection: close\r\n\r\nok",
    "error": b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
             b"Content-Length: 5\r\nConnection: close\r\n\r\nerror",
}
_MAX_HEADER = 64 * 1024


def _check_plan(plan: Sequence[Phase]) -> tuple[Phase, ...]:
    checked: list[Phase] = []
    for phase in plan:
        if (not isinstance(phase, tuple) or len(phase) != 2 or phase[0] not in _BEHAVIOURS
                or not isinstance(phase[1], int) or phase[1] < 1):
            raise ValueError(f"a plan phase must be (behaviour, requests) with behaviour one "
                             f"of {', '.join(_BEHAVIOURS)} and requests >= 1, received {phase!r}")
        checked.append(phase)
    if not checked:
        raise ValueError("a plan needs at least one phase, received an empty plan")
    return tuple(checked)


class FlakyTarget:
    """The flaky server: `async with FlakyTarget(plan) as target: target.url`."""

    def __init__(self, plan: Sequence[Phase] = DEFAULT_PLAN, *, host: str = "127.0.0.1",
                 hang_seconds: float = 3600.0) -> None:
        self.plan = _check_plan(plan)
        self.host = host
        self.hang_seconds = hang_seconds
        self.url = ""
        self.requests = 0
        self.served: list[Behaviour] = []
        self._tg: anyio.abc.TaskGroup | None = None
        self._listener: anyio.abc.Listener[anyio.abc.SocketStream] | None = None

    def behaviour(self, index: int) -> Behaviour:
        """What the `index`-th request (0-based) gets."""
        for behaviour, count in self.plan:
            if index < count:
                return behaviour
            index -= count
        return self.plan[-1][0]

    async def __aenter__(self) -> Self:
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=0)
        port = listener.extra(SocketAttribute.local_port)
        self.url = f"http://{self.host}:{port}/"
        self._listener = listener
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(listener.serve, self._handle)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._tg is not None and self._listener is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        await self._listener.aclose()

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            data = b""
            try:
                while b"\r\n\r\n" not in data and len(data) < _MAX_HEADER:
                    data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return
            behaviour = self.behaviour(self.requests)
            self.requests += 1
            self.served.append(behaviour)
            if behaviour == "hang":
                with anyio.move_on_after(self.hang_seconds):
                    try:
                        while True:
                            await stream.receive()  # returns when the client hangs up
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        return
                return
            try:
                await stream.send(_RESPONSES[behaviour])
            except (anyio.BrokenResourceError, OSError):
                return


@asynccontextmanager
async def run_flaky_target(plan: Sequence[Phase] = DEFAULT_PLAN, *, host: str = "127.0.0.1",
                           hang_seconds: float = 3600.0) -> AsyncIterator[str]:
    """Run a `FlakyTarget` for the duration of the `async with`; yields its URL."""
    async with FlakyTarget(plan, host=host, hang_seconds=hang_seconds) as target:
        yield target.url
