"""Running code the host does not trust: plugin handlers, and its own background loops.

A plugin's handler may raise anything — `Exception`, but also `CancelledError`,
`KeyboardInterrupt`, `SystemExit` or a `BaseException` of its own. Whatever it
raises is that handler's failure (one failed attempt of a delivery, a failed firing of
a timer), never the host's: `call_guarded` returns it instead of letting it unwind the
host. Only a cancellation of the caller itself (the host shutting down) propagates.

Background loops (the broadcast feed, the dispatcher, the timer runner, the LISTEN
connection) run under `run_supervised`: an error is logged and the loop restarts after
a backoff that grows with consecutive failures, so a database that goes away for a
while delays work but never ends the host.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

logger = logging.getLogger("reactive_core.supervise")


def cancelled() -> bool:
    """True when the calling task is being cancelled (a scope around it was cancelled)."""
    return anyio.current_effective_deadline() == -math.inf


async def call_guarded(fn: Callable[..., Awaitable[Any]], *args: Any,
                       timeout: float | None = None) -> BaseException | None:
    """Await `fn(*args)`; return what it raised, or None.

    Any `BaseException` the call raises is returned, unless the caller itself is being
    cancelled, in which case it propagates. `timeout` seconds bound the call; running
    over is returned as a `TimeoutError`.
    """
    try:
        if timeout is None:
            await fn(*args)
        else:
            # A plain scope with a deadline: cheaper than fail_after on this hot path.
            with anyio.CancelScope(deadline=anyio.current_time() + timeout) as scope:
                await fn(*args)
            if scope.cancelled_caught:
                return TimeoutError(f"ran longer than {timeout:g}s")
    except BaseException as exc:  # anything a plugin raises is its failure
        if cancelled():
            raise
        return exc
    return None


def describe(exc: BaseException) -> str:
    """`Type: message` of an exception, for logs and stored errors."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def run_supervised(name: str, loop: Callable[[], Awaitable[None]], *,
                         first_backoff: float = 0.05, max_backoff: float = 30.0) -> None:
    """Run `loop()` until it returns or the caller is cancelled, restarting it on errors.

    Consecutive failures back off exponentially from `first_backoff` to `max_backoff`
    seconds; a run that lasted longer than the current backoff resets it.
    """
    backoff = first_backoff
    while True:
        started = anyio.current_time()
        error = await call_guarded(loop)
        if error is None:
            return
        if anyio.current_time() - started > backoff:
            backoff = first_backoff
        logger.error("%s failed (%s); restarting in %.2fs", name, describe(error), backoff,
                     exc_info=error)
        await anyio.sleep(backoff)
        backoff = min(max_backoff, backoff * 2)
