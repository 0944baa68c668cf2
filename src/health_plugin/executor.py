"""Running one check with its strategy: the strategies on offer, the shared HTTP client,
and the time limit, so that a broken or hanging strategy is a failed run, not an error.

The HTTP client inflates compressed bodies (gzip, deflate) in pieces of at most
`INFLATED_PIECE` bytes: httpx inflates each chunk read from the network whole, and
64 KiB of gzip can hold 64 MiB of zeros, so a target could make a check that reads
only `max_body_bytes` of its body hold far more than that in memory.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import anyio
import httpx
from pydantic import ValidationError

from .evaluator import HealthStatus
from .models import CheckConfiguration, HealthSettings
from .strategies import CheckOutcome, Strategy, StrategyContext, collect_strategies

logger = logging.getLogger("health_plugin")


INFLATED_PIECE = 64 * 1024
"""The most bytes one step of inflating a compressed response body produces."""

_INFLATE_WBITS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16}


class _Inflating(httpx.AsyncByteStream):
    """The inflated body of `raw` (coded with `coding`), in pieces of `INFLATED_PIECE`."""

    def __init__(self, raw: httpx.AsyncByteStream, coding: str, request: httpx.Request) -> None:
        self._raw = raw
        self._coding = coding
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        inflater: Any = None
        pending = b""
        try:
            async for chunk in self._raw:
                if inflater is None:
                    pending += chunk
                    if len(pending) < 2:
                        continue
                    inflater = zlib.decompressobj(self._wbits(pending))
                    chunk, pending = pending, b""
                while chunk and not inflater.eof:
                    piece = inflater.decompress(chunk, INFLATED_PIECE)
                    chunk = inflater.unconsumed_tail
                    if piece:
                        yield piece
            if inflater is None and pending:
                raise zlib.error("a body of one byte is no compressed stream")
            if inflater is not None:
                rest = inflater.flush()
                if rest:
                    yield rest
        except zlib.error as exc:
            raise httpx.DecodingError(f"{self._coding} body cannot be inflated: {exc}",
                                      request=self._request) from exc

    def _wbits(self, start: bytes) -> int:
        wbits = _INFLATE_WBITS.get(self._coding)
        if wbits is not None:
            return wbits
        # deflate: a zlib stream (RFC 1950) as the RFC says, or a raw one as servers send.
        zlib_header = start[0] & 0x0F == 8 and (start[0] << 8 | start[1]) % 31 == 0
        return zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS

    async def aclose(self) -> None:
        await self._raw.aclose()


async def _inflate_in_pieces(response: httpx.Response) -> None:
    """Response hook: take over decoding a gzip or deflate body from httpx (see the module
    docstring). A coding httpx cannot decode either is left to it (passed through)."""
    codings = [c.strip().lower() for c in response.headers.get("content-encoding", "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings or not all(c in ("gzip", "x-gzip", "deflate") for c in codings):
        return
    stream = response.stream
    if not isinstance(stream, httpx.AsyncByteStream):
        return
    for coding in reversed(codings):  # applied in the order listed: undone in reverse
        stream = _Inflating(stream, coding, response.request)
    del response.headers["content-encoding"]
    response.stream = stream


def http_client(*, trust_env: bool) -> httpx.AsyncClient:
    """The HTTP client checks run with (compressed bodies inflated in bounded pieces)."""
    return httpx.AsyncClient(trust_env=trust_env,
                             event_hooks={"response": [_inflate_in_pieces]})


class CheckExecutor:
    """Runs checks for one host.

    `offered()` returns what every plugin offers through `reactive_health_strategies`
    (asked once, on first use, when all plugins are loaded).
    """

    def __init__(self, *, settings: HealthSettings, offered: Callable[[], Any]) -> None:
        self._settings = settings
        self._offered = offered
        self._strategies: Mapping[str, Strategy] | None = None
        self._http: httpx.AsyncClient | None = None

    @property
    def strategies(self) -> Mapping[str, Strategy]:
        """Every strategy on offer, by name; duplicates or malformed ones raise."""
        if self._strategies is None:
            self._strategies = collect_strategies(self._offered())
        return self._strategies

    def strategy(self, name: str) -> Strategy | None:
        """The strategy called `name`, if any."""
        return self.strategies.get(name)

    async def open(self) -> None:
        """Check the strategies and open the HTTP client the runs share."""
        _ = self.strategies
        self._http = http_client(trust_env=self._settings.use_env_proxy)

    async def close(self) -> None:
        """Close the shared HTTP client."""
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    async def execute(self, check: CheckConfiguration) -> CheckOutcome:
        """Run `check` once with its strategy; never raises for a failing check.

        A missing strategy, an invalid stored config, a strategy that raises or one that
        overruns `run_timeout_seconds` is an unhealthy outcome whose `result.error` says
        what happened.
        """
        started = time.perf_counter()
        timeout = self._settings.run_timeout_seconds

        def failed(error: str) -> CheckOutcome:
            return CheckOutcome(
                status=HealthStatus.UNHEALTHY,
                latency_ms=round((time.perf_counter() - started) * 1000.0, 3),
                result={"error": error})

        strategy = self.strategy(check.strategy)
        if strategy is None:
            return failed(f"unknown strategy {check.strategy!r}: expected one of "
                          f"{', '.join(self.strategies) or 'none'}")
        try:
            config = strategy.config_model.model_validate(check.config)
        except ValidationError as exc:
            return failed(f"stored config is not valid for strategy {check.strategy!r}: {exc}")
        try:
            with anyio.fail_after(timeout):
                if self._http is not None:
                    outcome = await strategy.run(config, StrategyContext(http=self._http))
                else:
                    async with http_client(trust_env=self._settings.use_env_proxy) as client:
                        outcome = await strategy.run(config, StrategyContext(http=client))
        except TimeoutError:
            return failed(f"strategy {check.strategy!r} overran the run timeout of {timeout:g}s")
        except Exception as exc:  # a broken strategy is a failed run
            logger.exception("strategy %s raised while running check %s", check.strategy, check.id)
            return failed(f"strategy {check.strategy!r} raised {type(exc).__name__}: {exc}")
        if not isinstance(outcome, CheckOutcome):
            return failed(f"strategy {check.strategy!r} returned {type(outcome).__name__}, "
                          f"expected a CheckOutcome")
        if outcome.latency_ms is None:
            outcome = outcome.model_copy(update={
                "latency_ms": round((time.perf_counter() - started) * 1000.0, 3)})
        return outcome
