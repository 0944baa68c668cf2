"""The HTTP API, the status page and `/metrics` that `reactive serve` runs.

Plugins add routes through the hook `reactive_http_routes(host)`; their handlers reach
the host with `host_of(request)` and declare `ReadAccess` or `WriteAccess`.
"""

from __future__ import annotations

from .auth import ReadAccess, WriteAccess, host_of
from .settings import HttpSettings

__all__ = ["HttpSettings", "ReadAccess", "WriteAccess", "host_of"]
