"""The ASGI application of `reactive serve`: the core's routes, each plugin's routes
(hook `reactive_http_routes`), the status page, errors as problem documents."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import problems

if TYPE_CHECKING:
    from .._host.host import Host
    from .settings import HttpSettings


class BodyLimit:
    """Refuse request bodies larger than `limit` bytes (413), declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        response = problems.problem(413, "Request too large",
                                    f"the request body is larger than {self.limit:,} bytes",
                                    kind="too-large")
        await response({"type": "http"}, _nothing, send)


class _NoCache:
    """Static files revalidated on every load, so an upgrade's page is seen at once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_no_cache(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (b"cache-control", b"no-cache")]
            await send(message)

        await self.app(scope, receive, send_no_cache)


class _TooLarge(Exception):
    pass


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


def build_app(host: Host, settings: HttpSettings, *, public_reads: bool) -> ASGIApp:
    """The application serving `host`."""
    app = FastAPI(title="reactive-core", version=_version(),
                  description="Entities, health, SLOs and automation of one reactive-core "
                              "cluster. Reads may be public on a loopback address; writes "
                              "need a bearer token of scope write.")
    app.state.host = host
    app.state.settings = settings
    app.state.public_reads = public_reads
    app.state.token_cache = {}
    problems.install(app)
    from .routes import router as core_router
    app.include_router(core_router)
    from .metrics import router as metrics_router
    app.include_router(metrics_router)
    for routers in host.hook.reactive_http_routes(host=host):
        for router in routers or ():
            if not isinstance(router, APIRouter):
                raise TypeError(f"reactive_http_routes returned {router!r}: expected "
                                "fastapi.APIRouter objects")
            app.include_router(router)
    static = resources.files(__package__).joinpath("static")
    app.mount("/", _NoCache(StaticFiles(directory=str(static), html=True)), name="status-page")
    wrapped: ASGIApp = app
    if settings.cors_origins:
        wrapped = CORSMiddleware(wrapped, allow_origins=list(settings.cors_origins),
                                 allow_methods=["GET", "POST", "PUT", "DELETE"],
                                 allow_headers=["Authorization", "Content-Type",
                                                "Last-Event-ID"])
    return BodyLimit(wrapped, settings.max_body_bytes)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("reactive-core")
    except PackageNotFoundError:  # running from a source tree
        return "0"

