"""`HealthService`: checks, associations, runs and the cached status API of one host.

Its parts live by concept — `checks`, `associations`, `runs`, `status` — over the write
rule of `writes`; this module puts them together with what they need, handed in by the
plugin (`hooks.HealthPlugin`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from reactive_core import EntityHandle, PluginLoadError, ReadThroughCache

from .models import CATALOG_KIND, HEALTH_KIND, HealthState
from .status import StatusOps
from .writes import SystemWrites

if TYPE_CHECKING:
    from reactive_core import Host

    from .executor import CheckExecutor
    from .scheduler import CheckScheduler


class HealthService(StatusOps):
    """Checks, associations, runs and the cached status API of one host.

    Works on a started host and on one whose plugins are only loaded (CLI inspection).
    Get the one of a host with `health_service(host)`.
    """

    def __init__(self, *, host: Host, executor: CheckExecutor, scheduler: CheckScheduler,
                 cache: ReadThroughCache[object]) -> None:
        self._host = host
        self._health: EntityHandle[HealthState] = host.entity(HEALTH_KIND)
        self._executor = executor
        self._scheduler = scheduler
        self._cache = cache
        self._catalog_kind = CATALOG_KIND
        self._writes = SystemWrites(health=self._health, invalidate=self.invalidate)


def health_service(host: Host) -> HealthService:
    """The `HealthService` of `host`'s health plugin (for application code and tests)."""
    from .hooks import HealthPlugin

    plugin = host.plugin("health")
    if not isinstance(plugin, HealthPlugin):
        raise PluginLoadError(f"the plugin named 'health' in this host is a "
                              f"{type(plugin).__name__}, expected health_plugin.HealthPlugin")
    return cast(HealthService, plugin.service)
