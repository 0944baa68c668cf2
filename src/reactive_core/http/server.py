"""uvicorn, run inside the host's task group (the host's signals stay the host's)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # `reactive serve` handles SIGINT/SIGTERM and stops the host, which stops us

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_started is not None:
            self.on_started(self.bound_port())

    on_started: Callable[[int], None] | None = None

    def bound_port(self) -> int:
        for server in self.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return int(self.config.port)


def make_server(app: Any, *, host: str, port: int, max_body: int) -> _Server:
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            lifespan="off", h11_max_incomplete_event_size=max_body,
                            timeout_graceful_shutdown=2)
    return _Server(config)
