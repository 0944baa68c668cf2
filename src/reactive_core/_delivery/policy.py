"""How a subscriber wants its changes: `Broadcast()` or `WorkQueue(group, retry=...)`."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum

from .._entities.ids import MAX_NAME_LENGTH, id_problem
from .._errors import RegistryError


class DeliveryStatus(StrEnum):
    """Where a work-queue delivery stands."""

    PENDING = "pending"
    """Waiting its turn, running, or backing off before a retry."""
    DONE = "done"
    """Its handler returned."""
    DEAD = "dead"
    """Its handler failed on every attempt: kept for an operator to look at and replay."""


def _number(value: object, what: str, *, minimum: float, maximum: float = math.inf) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)
            or not minimum <= value <= maximum):
        bounds = f">= {minimum:g}" if maximum == math.inf else f"in [{minimum:g}, {maximum:g}]"
        raise RegistryError(f"{what} must be a number {bounds}, received {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How a failing work-queue handler (or timer) is retried before it is dead-lettered.

    Attempt `n` (1-based) that fails is retried after `base_seconds * 2**(n-1)`, capped
    at `max_seconds`, shortened by up to `jitter` of itself at random (0.2: the delay
    lands between 80 % and 100 % of the exponential value), so failures that happened
    together do not retry together. After `max_retries` retries the delivery is dead.
    """

    max_retries: int = 5
    base_seconds: float = 1.0
    max_seconds: float = 300.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if (isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int)
                or self.max_retries < 0):
            raise RegistryError(
                f"RetryPolicy max_retries must be an integer >= 0, received {self.max_retries!r}")
        _number(self.base_seconds, "RetryPolicy base_seconds", minimum=0)
        _number(self.max_seconds, "RetryPolicy max_seconds", minimum=0)
        _number(self.jitter, "RetryPolicy jitter", minimum=0, maximum=1)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1 for the first run)."""
        exponent = min(max(attempt - 1, 0), 64)
        backoff = min(self.max_seconds, self.base_seconds * (2.0 ** exponent))
        if self.jitter and backoff:
            backoff -= backoff * self.jitter * (rng or random).random()
        return backoff


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Delivery to every running host instance (each calls the handler once per change)."""


@dataclass(frozen=True, slots=True)
class WorkQueue:
    """Delivery to exactly one instance per `group`, in per-entity order, with retries.

    A delivery whose handler fails is retried with exponential backoff; after
    `max_retries` retries it is dead-lettered (listable, replayable). `retry` gives the
    whole policy (its `max_retries` then wins); without it the host's
    `retry_base_seconds` / `retry_max_seconds` apply. `timeout_seconds` bounds one run
    of the handler (None: the host's `handler_timeout_seconds`); overrunning it is a
    failed attempt.
    """

    group: str
    max_retries: int = 5
    retry: RetryPolicy | None = None
    timeout_seconds: float | None = None

    def __post_init__(self) -> None:
        problem = id_problem(self.group, MAX_NAME_LENGTH)
        if problem is not None:
            raise RegistryError(
                f"WorkQueue group {self.group!r:.80} {problem}: expected a name of printable "
                f"text, 1 to {MAX_NAME_LENGTH} characters, no surrounding spaces")
        if (isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int)
                or self.max_retries < 0):
            raise RegistryError(
                f"WorkQueue({self.group!r}) max_retries must be an integer >= 0, "
                f"received {self.max_retries!r}"
            )
        if self.retry is not None and not isinstance(self.retry, RetryPolicy):
            raise RegistryError(
                f"WorkQueue({self.group!r}) retry must be a RetryPolicy, received {self.retry!r}")
        if self.timeout_seconds is not None:
            _number(self.timeout_seconds, f"WorkQueue({self.group!r}) timeout_seconds",
                    minimum=0.001)

    def policy(self, *, base_seconds: float, max_seconds: float) -> RetryPolicy:
        """The retry policy in effect, given the host's default backoff."""
        if self.retry is not None:
            return self.retry
        return RetryPolicy(max_retries=self.max_retries, base_seconds=base_seconds,
                           max_seconds=max_seconds)


Delivery = Broadcast | WorkQueue
