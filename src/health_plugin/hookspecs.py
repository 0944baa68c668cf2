"""The health plugin's own extension point: check strategies from other plugins.

Added to the host's plugin manager by the health plugin's `reactive_register`
(`registry.add_hookspecs`), so a plugin that implements it needs the health plugin
loaded too (otherwise the host reports the unknown hook at load).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reactive_core import hookspec

if TYPE_CHECKING:
    from .strategies import Strategy


@hookspec
def reactive_health_strategies() -> list[Strategy]:
    """Return check strategies to offer, each with a unique `name`.

    A strategy has `name: str`, `config_model` (a pydantic model validating a check's
    `config`), and `async def run(config, context) -> CheckOutcome`, where `config` is
    an instance of `config_model` and `context` a `StrategyContext` (shared HTTP
    client). `run` must return within its own timeout; the scheduler also bounds it.
    """
    return []
