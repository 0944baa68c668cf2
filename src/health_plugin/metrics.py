"""The health plugin's collectors on `/metrics`."""

from __future__ import annotations

from typing import Any


def collectors(service: Any) -> list[Any]:
    """The collectors to add (none yet)."""
    return []
