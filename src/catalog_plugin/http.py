"""The catalog plugin's routes in the HTTP API."""

from __future__ import annotations

from typing import Any


def routes(service: Any) -> list[Any]:
    """The routers to add (none yet)."""
    return []
