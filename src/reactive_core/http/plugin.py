"""The HTTP API as the built-in plugin `http`: its token table, `reactive token`, and
the server it starts inside the host when enabled (`reactive serve` does)."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

import anyio

from .._clock import utcnow
from .._errors import ConfigError
from ..hookspecs import hookimpl
from .auth import is_loopback
from .settings import HttpSettings
from .tokens import Scope, count_in, create_in, list_in, metadata, revoke_in

if TYPE_CHECKING:
    from .._cli.commands import CliCommand, CliContext
    from .._host.host import Host
    from .._host.registry import Registry
    from .server import _Server

logger = logging.getLogger("reactive_core.http")


def split_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 in brackets) as (host, port), or `ConfigError`."""
    address, sep, port = listen.rpartition(":")
    if not sep or not address or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"http listen address {listen!r}: expected HOST:PORT, e.g. "
                          f"127.0.0.1:8400")
    return address.strip("[]"), int(port)


class HttpPlugin:
    """Built into every host; serves only when enabled."""

    name = "http"

    def __init__(self) -> None:
        self.settings = HttpSettings()
        self.url: str | None = None
        """`http://HOST:PORT` once the server listens."""
        self._server: _Server | None = None
        self._stopped: anyio.Event | None = None

    @hookimpl
    def reactive_register(self, registry: Registry, host: Host) -> None:
        self.settings = host.plugin_settings("http", HttpSettings)
        split_listen(self.settings.listen)
        registry.add_tables(metadata, migrations="reactive_core.http:migrations")
        registry.declare_non_reactive_state(
            "http_tokens", "sensitive", "bearer tokens of the HTTP API, stored hashed")

    @hookimpl
    async def reactive_startup(self, host: Host) -> None:
        if not (self.settings.enabled and host.config.workers):
            return
        address, port = split_listen(self.settings.listen)
        public_reads = is_loopback(address)
        if not public_reads and await host.read(count_in) == 0:
            raise ConfigError(
                f"refusing to serve HTTP on {self.settings.listen}, which is not a loopback "
                f"address, without any token: create one first (`reactive token create "
                f"NAME`), or bind to 127.0.0.1")
        from .app import build_app
        from .server import make_server
        server = make_server(build_app(host, self.settings, public_reads=public_reads),
                             host=address, port=port, max_body=self.settings.max_body_bytes)
        started = anyio.Event()

        def on_started(bound: int) -> None:
            shown = f"[{address}]" if ":" in address else address
            self.url = f"http://{shown}:{bound}"
            logger.info("HTTP API and status page on %s", self.url)
            started.set()

        server.on_started = on_started
        self._server = server
        self._stopped = anyio.Event()
        host.task_group.start_soon(self._serve, server, self._stopped)
        with anyio.fail_after(30):
            while not (started.is_set() or self._stopped.is_set()):
                await anyio.sleep(0.01)
        if not started.is_set():
            raise ConfigError(f"cannot serve HTTP on {self.settings.listen}: the address is "
                              f"in use or not available here (see the log above): expected a "
                              f"free HOST:PORT (--http), or --no-http")

    async def _serve(self, server: _Server, stopped: anyio.Event) -> None:
        try:
            await server.serve()
        except SystemExit:  # uvicorn exits when it cannot bind: the start-up reports it
            logger.error("the HTTP server could not listen on %s", self.settings.listen)
        except Exception:  # the host goes on without its API
            logger.exception("the HTTP server stopped")
        finally:
            stopped.set()

    @hookimpl
    async def reactive_shutdown(self, host: Host) -> None:
        if self._server is not None and self._stopped is not None:
            self._server.should_exit = True
            with anyio.move_on_after(5):  # open streams (SSE) are cut off after that
                await self._stopped.wait()

    @hookimpl
    def reactive_cli_commands(self) -> list[CliCommand]:
        from .._cli.commands import CliCommand
        return [CliCommand(name="token", run=_token, arguments=_token_arguments,
                           listing=True, help="create, list or revoke HTTP API tokens")]


def _token_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["create", "list", "revoke"],
                        help="create NAME (prints the token once), list, revoke NAME")
    parser.add_argument("name", nargs="?", metavar="NAME", help="the token's name")
    parser.add_argument("--read-only", action="store_true",
                        help="with create: a token that can only read")


async def _token(ctx: CliContext) -> int:
    args, host = ctx.args, ctx.host
    if args.action == "list":
        tokens = await host.read(list_in)
        ctx.emit([{"name": t.name, "scope": t.scope.value,
                   "created_at": t.created_at.isoformat()} for t in tokens],
                 lambda rows: ctx.table(["name", "scope", ctx.utc("created")], [
                     [r["name"], r["scope"], r["created_at"][:19].replace("T", " ")]
                     for r in rows]) if rows else "no tokens")
        return 0
    if not args.name:
        ctx.print(f"reactive token {args.action}: expected a NAME")
        return 2
    if args.action == "revoke":
        if not await host.run(revoke_in, args.name):
            ctx.print(f"reactive token revoke: no token named {args.name!r}")
            return 2
        ctx.print(f"token {args.name} revoked")
        return 0
    scope = Scope.READ if args.read_only else Scope.WRITE
    token = await host.run(create_in, args.name, scope, utcnow())
    ctx.emit({"name": args.name, "scope": scope.value, "token": token},
             lambda v: f"{v['token']}\n(token {v['name']}, scope {v['scope']}: shown once, "
                       f"stored hashed)")
    return 0
