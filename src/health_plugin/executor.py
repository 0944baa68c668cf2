"""Running one check with its strategy: the strategies on offer, the shared HTTP client,
and the time limit, so that a broken or hanging strategy is a failed run, not an error."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import httpx
from pydantic import ValidationError

from .evaluator import HealthStatus
from .models import CheckConfiguration, HealthSettings
from .strategies import CheckOutcome, Strategy, StrategyContext, collect_strategies

logger = logging.getLogger("health_plugin")


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
        self._http = httpx.AsyncClient(trust_env=self._settings.use_env_proxy)

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
                    async with httpx.AsyncClient(trust_env=self._settings.use_env_proxy) as client:
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
