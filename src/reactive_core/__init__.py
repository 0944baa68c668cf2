"""reactive-core: reactive entities with one transactional write path.

Plugins declare typed entity kinds; every write goes through `mutate`, which diffs
the previous and next state, logs the change and its per-field transitions, and
delivers it to subscribers (broadcast to every instance, or once per cluster via a
work queue) — all in the transaction of the plugin's own write.
"""

from __future__ import annotations

from ._cache import CacheEntry, CacheStore, MemoryCacheStore, ReadThroughCache
from ._changes import SYSTEM_ACTOR, Actor, EntityChange, diff_states
from ._config import (
    CONFIG_ACTOR,
    CONFIG_REASON,
    ConfigItemError,
    apply_config_file,
    apply_config_text,
)
from ._db import Database, after_commit
from ._delivery import DeliveryRow
from ._doctor import DoctorReport, RouteFinding, TableFinding, doctor
from ._entities import EntityHandle, with_entity_remove, with_entity_write
from ._errors import (
    ConfigError,
    DeliveryNotFound,
    DuplicateRegistration,
    InvalidEntityState,
    PluginLoadError,
    ReactiveCoreError,
    RegistryError,
    UnknownEntityKind,
)
from ._host import Host, HostConfig, Transition
from ._registry import Broadcast, EntityKind, Registry, WorkQueue
from .hookspecs import hookimpl, hookspec

__all__ = [
    "Actor",
    "Broadcast",
    "CONFIG_ACTOR",
    "CONFIG_REASON",
    "CacheEntry",
    "CacheStore",
    "ConfigError",
    "ConfigItemError",
    "Database",
    "DeliveryNotFound",
    "DeliveryRow",
    "DoctorReport",
    "DuplicateRegistration",
    "EntityChange",
    "EntityHandle",
    "EntityKind",
    "Host",
    "HostConfig",
    "InvalidEntityState",
    "MemoryCacheStore",
    "PluginLoadError",
    "ReactiveCoreError",
    "ReadThroughCache",
    "Registry",
    "RegistryError",
    "RouteFinding",
    "SYSTEM_ACTOR",
    "TableFinding",
    "Transition",
    "UnknownEntityKind",
    "WorkQueue",
    "after_commit",
    "apply_config_file",
    "apply_config_text",
    "diff_states",
    "doctor",
    "hookimpl",
    "hookspec",
    "with_entity_remove",
    "with_entity_write",
]
