"""Who may do what: reads are public on a loopback address, else they need a token;
every write needs a token of scope `write` (401 without one, 403 with a read-only one)."""

from __future__ import annotations

import ipaddress
import time
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request

from .tokens import Scope, TokenInfo, verify_in

if TYPE_CHECKING:
    from .._host.host import Host

CACHE_SECONDS = 5.0
"""How long a verified token is trusted without asking the database again (a revoked
token stops working within this time)."""


def is_loopback(address: str) -> bool:
    """Whether `address` (a host name or IP) only accepts local connections."""
    if address in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def host_of(request: Request) -> Host:
    """The host the request is served by."""
    host: Host = request.app.state.host
    return host


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "the Authorization header must be `Bearer <token>`",
                            headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


async def _verify(request: Request, token: str) -> TokenInfo:
    cache: dict[str, tuple[float, TokenInfo | None]] = request.app.state.token_cache
    now = time.monotonic()
    hit = cache.get(token)
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        info = hit[1]
    else:
        info = await host_of(request).read(verify_in, token)
        if len(cache) > 10_000:
            cache.clear()
        cache[token] = (now, info)
    if info is None:
        raise HTTPException(401, "the bearer token is not valid (unknown or revoked)",
                            headers={"WWW-Authenticate": "Bearer"})
    return info


async def reader(request: Request) -> TokenInfo | None:
    """Reads: anyone on a loopback address; elsewhere a token (either scope), in the
    Authorization header or, for a browser's `EventSource` that cannot send headers, as
    the `access_token` query parameter (accepted on reads only)."""
    token = _bearer(request) or request.query_params.get("access_token") or None
    if token is None:
        if request.app.state.public_reads:
            return None
        raise HTTPException(401, "reading from this address needs a bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    return await _verify(request, token)


async def writer(request: Request) -> TokenInfo:
    """Writes: a token of scope `write`."""
    token = _bearer(request)
    if token is None:
        raise HTTPException(401, "this request changes something: it needs a bearer token "
                            "of scope write (`reactive token create NAME`)",
                            headers={"WWW-Authenticate": "Bearer"})
    info = await _verify(request, token)
    if info.scope is not Scope.WRITE:
        raise HTTPException(403, f"token {info.name!r} is read-only: this request needs a "
                            "token of scope write")
    return info


ReadAccess = Annotated[TokenInfo | None, Depends(reader)]
WriteAccess = Annotated[TokenInfo, Depends(writer)]
