"""What the automation tests share: a `gauge` kind with a deriver, a settable clock, a
host running the engine, a way to let everything due happen, and a real HTTP receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict

from reactive_core import EntityChange, Host, hookimpl
from reactive_core.automation.plugin import AutomationPlugin
from reactive_core.automation.runs import Run, list_runs

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class Gauge(BaseModel):
    model_config = ConfigDict(frozen=True)

    value: float | str | None = None
    status: str = "up"
    systemId: str = "sys-1"


def derive_gauge(change: EntityChange) -> list[str]:
    before = (change.prev or {}).get("status")
    after = (change.next or {}).get("status")
    return ["gauge.tripped"] if after == "down" and before != "down" else []


class Gauges:
    """A store-backed `gauge` kind whose changes derive `gauge.tripped`."""

    name = "gauges"

    @hookimpl
    def reactive_register(self, registry: Any) -> None:
        registry.define_entity("gauge", state=Gauge)
        registry.register_change_deriver("gauge", derive_gauge)


def host_for(url: str, clock: Clock, *, rules_dir: Path | None = None,
             instance_id: str | None = None, extra: tuple[object, ...] = (),
             **settings: Any) -> Host:
    automation: dict[str, Any] = {"max_backoff_seconds": 0.01, **settings}
    if rules_dir is not None:
        automation["rules_dir"] = str(rules_dir)
        automation.setdefault("watch_seconds", 3600)
    return Host(database_url=url, clock=clock, entry_points=False, instance_id=instance_id,
                plugins=[AutomationPlugin, Gauges, *extra],
                config={"poll_interval": 0.05, "retry_base_seconds": 0.01,
                        "run_jobs": False, "plugins": {"automation": automation}})


@asynccontextmanager
async def running(url: str, clock: Clock, **kwargs: Any) -> AsyncIterator[World]:
    async with host_for(url, clock, **kwargs) as host:
        yield World(host, clock)


class World:
    def __init__(self, host: Host, clock: Clock) -> None:
        self.host = host
        self.clock = clock

    @property
    def automation(self) -> AutomationPlugin:
        plugin = self.host.plugin("automation")
        assert isinstance(plugin, AutomationPlugin)
        return plugin

    async def set(self, gauge_id: str, **fields: Any) -> None:
        def apply(_tx: Any, prev: Gauge | None) -> Gauge:
            base = prev.model_dump() if prev else {}
            return Gauge(**{**base, **fields})

        await self.host.entity("gauge").mutate(gauge_id, apply)
        await self.settle()

    async def settle(self, rounds: int = 400) -> None:
        """Let every delivery and every timer due by the clock run to its end."""
        host = self.host
        quiet = 0
        for _ in range(rounds):
            await host.drain()
            host.timer_runner.wake()
            await anyio.sleep(0.01)
            due = [t for t in await host.timers.list(limit=10_000)
                   if t.due_at <= self.clock() and t.status == "scheduled"]
            busy = bool(due) or bool(host.timer_runner.firing)
            quiet = 0 if busy else quiet + 1
            if quiet >= 3:
                return
        raise AssertionError("timers kept firing: the world never settled")

    async def later(self, **delta: float) -> None:
        self.clock.advance(**delta)
        await self.settle()

    async def runs(self, rule_id: str | None = None) -> list[Run]:
        """Runs oldest first."""
        return list(reversed(await self.host.read(list_runs, rule_id=rule_id, limit=1000)))

    async def load(self, text: str, folder: Path) -> list[str]:
        (folder / "rules.yaml").write_text(text)
        return await self.automation.sync_folder(folder)


class Receiver:
    """A real HTTP server on 127.0.0.1 recording every request it gets."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.requests.append({
                    "path": self.path, "headers": dict(self.headers),
                    "body": json.loads(body) if body else None})
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@contextmanager
def receiver(status: int = 200) -> Iterator[Receiver]:
    r = Receiver(status)
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()
