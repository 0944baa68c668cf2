"""What a database error means for a unit of work: worth running again, a lost
connection, SQLite's busy timeout."""

from __future__ import annotations

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

MAX_RETRIES = 5
"""How often a unit of work runs at most when the database keeps rolling it back."""
_TRANSIENT_STATES = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure


def is_transient(exc: BaseException) -> bool:
    """True when `exc` rolled the unit back for a reason worth running it again for: a
    deadlock, a serialization failure, or the connection lost (also when the driver
    raised it straight from a DBAPI cursor, where SQLAlchemy did not see it)."""
    return _sqlstate(exc) in _TRANSIENT_STATES or is_lost(exc)


def is_lost(exc: BaseException) -> bool:
    """True when `exc` says the connection is gone."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    state = _sqlstate(exc)
    return state is not None and state.startswith(_LOST_CONNECTION_CLASSES)


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of `exc`, raised by the driver or wrapped by SQLAlchemy."""
    state = getattr(exc, "sqlstate", None) or getattr(getattr(exc, "orig", None),
                                                      "sqlstate", None)
    return state if isinstance(state, str) else None


_LOST_CONNECTION_CLASSES = ("08", "57P")
"""SQLSTATE classes of a lost connection: connection exception, operator intervention
(the server terminated the backend or is shutting down)."""


def driver_closed(conn: Connection) -> bool:
    """True when the DBAPI connection under `conn` is gone (e.g. its backend was killed)."""
    try:
        driver = conn.connection.dbapi_connection
    except Exception:  # noqa: BLE001 - already invalidated or closed
        return True
    return bool(getattr(driver, "closed", False) or getattr(driver, "broken", False))


BUSY = ("the database stayed locked by another writer longer than the busy timeout: "
        "nothing was written; retry, and look for a long transaction in another process")


def is_locked(exc: Exception) -> bool:
    """True for SQLite's "database is locked" (the busy timeout ran out)."""
    text = str(getattr(exc, "orig", None) or exc)
    return "database is locked" in text or "database is busy" in text
