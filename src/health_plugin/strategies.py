"""Check strategies: how a check is run. Built in: `http` and `tcp`; more via a hook.

A strategy turns a validated config into a `CheckOutcome` (status, latency, result
details). It never raises for a failing target — a refused connection, a timeout or
an unexpected status code is an unhealthy outcome with the reason in `result` — and
the scheduler turns any exception it does raise into an unhealthy outcome as well.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

import anyio
import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from reactive_core import DuplicateRegistration, RegistryError

from .evaluator import HealthStatus

_EXCERPT = 200


class CheckOutcome(BaseModel):
    """The result of running a check once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: HealthStatus
    latency_ms: float | None = Field(default=None, ge=0)
    result: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyContext:
    """What a running check may use: the host's shared HTTP client."""

    http: httpx.AsyncClient


@runtime_checkable
class Strategy(Protocol):
    """A way to run a check; `config_model` validates a check's `config` mapping."""

    name: str
    config_model: type[BaseModel]

    async def run(self, config: Any, context: StrategyContext) -> CheckOutcome:
        """Run the check once against its target."""
        ...


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)


# -- http -----------------------------------------------------------------------------

HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class HttpCheckConfig(BaseModel):
    """`http`: request `url`; healthy when the status (and body, if asked) match in time.

    `expected_status` None accepts any 2xx. `body_contains` / `body_regex` must both
    match when given (regex: `re.search`), within the first `max_body_bytes` of the body
    (the rest is never read: a target cannot make a check hold its memory). With
    `follow_redirects`, at most `max_redirects` are followed, and the configured
    `headers` (API keys, tokens) are not sent on to another origin (scheme, host, port).
    `store_body_excerpt` keeps the start of a failing response's body in the run's
    result, where anyone who can read runs sees it: off unless asked for.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    method: HttpMethod = "GET"
    expected_status: list[int] | None = Field(default=None, min_length=1)
    body_contains: str | None = None
    body_regex: str | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    follow_redirects: bool = False
    max_redirects: int = Field(default=5, ge=0, le=20)
    max_body_bytes: int = Field(default=64 * 1024, ge=0, le=16 * 1024 * 1024)
    store_body_excerpt: bool = False

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"expected an http:// or https:// URL ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host")
        if port == 0:
            raise ValueError("expected a port between 1 and 65535")
        return value

    @field_validator("expected_status")
    @classmethod
    def _status_codes(cls, value: list[int] | None) -> list[int] | None:
        for code in value or ():
            if not 100 <= code <= 599:
                raise ValueError(f"expected HTTP status codes between 100 and 599, not {code}")
        return value

    @field_validator("body_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"expected a valid regular expression ({exc})") from None
        return value


class HttpStrategy:
    """The built-in `http` strategy (httpx, the host's shared client)."""

    name: str = "http"
    config_model: type[BaseModel] = HttpCheckConfig

    async def run(self, config: HttpCheckConfig, context: StrategyContext) -> CheckOutcome:
        """Send the request; judge status code and body; a timeout is unhealthy."""
        started = time.perf_counter()
        try:
            with anyio.fail_after(config.timeout_seconds):
                code, text, truncated = await _fetch(context.http, config)
        except (TimeoutError, httpx.TimeoutException):
            return CheckOutcome(status=HealthStatus.UNHEALTHY, latency_ms=_elapsed_ms(started),
                                result={"error": f"timed out after {config.timeout_seconds:g}s"})
        except (httpx.HTTPError, _TooManyRedirects) as exc:
            return CheckOutcome(status=HealthStatus.UNHEALTHY, latency_ms=_elapsed_ms(started),
                                result={"error": f"{type(exc).__name__.lstrip('_')}: {exc}"})
        latency = _elapsed_ms(started)
        result: dict[str, Any] = {"status_code": code}
        if truncated:
            result["body_truncated_at"] = config.max_body_bytes
        expected = config.expected_status
        if (code not in expected) if expected is not None else not 200 <= code <= 299:
            wanted = ", ".join(map(str, expected)) if expected is not None else "2xx"
            result["error"] = f"status {code}, expected {wanted}"
        elif config.body_contains is not None and config.body_contains not in text:
            result["error"] = f"body does not contain {config.body_contains!r}"
        elif config.body_regex is not None and re.search(config.body_regex, text) is None:
            result["error"] = f"body does not match /{config.body_regex}/"
        if "error" in result:
            if config.store_body_excerpt:
                result["body_excerpt"] = text[:_EXCERPT]
            return CheckOutcome(status=HealthStatus.UNHEALTHY, latency_ms=latency, result=result)
        return CheckOutcome(status=HealthStatus.HEALTHY, latency_ms=latency, result=result)


class _TooManyRedirects(Exception):
    """More redirects than `max_redirects`."""


_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


async def _fetch(http: httpx.AsyncClient, config: HttpCheckConfig) -> tuple[int, str, bool]:
    """(status code, body text cut to `max_body_bytes`, whether it was cut), following
    redirects by hand so that configured headers never reach another origin."""
    url = httpx.URL(config.url)
    first = _origin(url)
    method, body, headers = config.method, config.body, dict(config.headers)
    for _ in range(config.max_redirects + 1):
        async with http.stream(method, url, headers=headers, content=body,
                               timeout=config.timeout_seconds,
                               follow_redirects=False) as response:
            location = response.headers.get("location")
            if config.follow_redirects and response.status_code in _REDIRECTS and location:
                url = url.join(location)
                if response.status_code == 303 or (
                        response.status_code in (301, 302) and method == "POST"):
                    method, body = "GET", None
                if _origin(url) != first:
                    headers = {}  # the configured headers were meant for the first origin
                continue
            data = bytearray()
            truncated = False
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > config.max_body_bytes:
                    del data[config.max_body_bytes:]
                    truncated = True
                    break
            text = bytes(data).decode(response.encoding or "utf-8", errors="replace")
            return response.status_code, text, truncated
    raise _TooManyRedirects(f"more than {config.max_redirects} redirects (last to {url})")


def _os_error(exc: OSError) -> str:
    """`exc` as text; anyio reports the per-address errors as the cause, so name those."""
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup):
        inner = "; ".join(f"{type(e).__name__}: {e}" for e in cause.exceptions)
        return f"{exc}: {inner}"
    if cause is not None:
        return f"{exc}: {type(cause).__name__}: {cause}"
    return f"{type(exc).__name__}: {exc}"


# -- tcp ------------------------------------------------------------------------------


class TcpCheckConfig(BaseModel):
    """`tcp`: healthy when a TCP connection to `host:port` opens within the timeout."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    timeout_seconds: float = Field(default=5.0, gt=0, le=300)


class TcpStrategy:
    """The built-in `tcp` strategy (anyio.connect_tcp)."""

    name: str = "tcp"
    config_model: type[BaseModel] = TcpCheckConfig

    async def run(self, config: TcpCheckConfig, context: StrategyContext) -> CheckOutcome:
        """Open and close a connection; refused, unreachable or too slow is unhealthy."""
        started = time.perf_counter()
        try:
            with anyio.fail_after(config.timeout_seconds):
                stream = await anyio.connect_tcp(config.host, config.port)
                await stream.aclose()
        except TimeoutError:
            return CheckOutcome(status=HealthStatus.UNHEALTHY, latency_ms=_elapsed_ms(started),
                                result={"error": f"timed out after {config.timeout_seconds:g}s"})
        except OSError as exc:
            return CheckOutcome(status=HealthStatus.UNHEALTHY, latency_ms=_elapsed_ms(started),
                                result={"error": _os_error(exc)})
        return CheckOutcome(status=HealthStatus.HEALTHY, latency_ms=_elapsed_ms(started),
                            result={"connected": f"{config.host}:{config.port}"})


BUILTIN_STRATEGIES: tuple[Strategy, ...] = (HttpStrategy(), TcpStrategy())


def collect_strategies(results: Iterable[Iterable[object] | None]) -> Mapping[str, Strategy]:
    """Strategies by name from `reactive_health_strategies` hook results, validated."""
    found: dict[str, Strategy] = {}
    for batch in results:
        for strategy in batch or ():
            name = getattr(strategy, "name", None)
            model = getattr(strategy, "config_model", None)
            if not isinstance(name, str) or not name.strip():
                raise RegistryError(
                    f"health strategy {strategy!r} must have a non-empty string `name`, "
                    f"received {name!r}")
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise RegistryError(
                    f"health strategy {name!r}: config_model must be a pydantic BaseModel "
                    f"subclass, received {model!r}")
            if not callable(getattr(strategy, "run", None)):
                raise RegistryError(
                    f"health strategy {name!r} must have an async `run(config, context)` method")
            if name in found and found[name] is not strategy:
                raise DuplicateRegistration(
                    f"health strategy {name!r} is offered twice ({found[name]!r} and "
                    f"{strategy!r}): expected unique strategy names")
            found[name] = strategy  # type: ignore[assignment]
    return dict(sorted(found.items()))
