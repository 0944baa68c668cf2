"""Time: the clock a host reads, and stored timestamps as aware UTC.

Every component that needs "now" gets a `Clock` from its host (`Host(clock=...)`),
so tests and plugins can run a host on a clock of their own. What must agree across
the instances of a cluster — lease expiries, when a delivery or a timer becomes
claimable — is computed by the database's clock on PostgreSQL instead (see
`_store.backend`), so a skewed process clock cannot make two instances run the same
work.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""A function returning the current time, timezone-aware UTC."""


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the default `Clock`)."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """A stored timestamp as aware UTC (SQLite returns naive datetimes, meant as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def as_utc_or_none(value: datetime | None) -> datetime | None:
    """`as_utc`, passing None through."""
    return None if value is None else as_utc(value)
