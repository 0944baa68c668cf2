"""reactive-core: reactive entities with one transactional write path.

Plugins declare typed entity kinds; every write goes through `mutate`, which diffs
the previous and next state, logs the change and its per-field transitions, and
delivers it to subscribers (broadcast to every instance, or once per cluster via a
work queue) — all in the transaction of the plugin's own write.
"""

from __future__ import annotations

from ._changes import SYSTEM_ACTOR, Actor, EntityChange, diff_states
from ._db import Database, after_commit
from ._delivery import DeliveryRow
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
from ._registry import Broadcast, Registry, WorkQueue
from .hookspecs import hookimpl, hookspec

__all__ = [
    "SYSTEM_ACTOR",
    "Actor",
    "Broadcast",
    "ConfigError",
    "Database",
    "DeliveryNotFound",
    "DeliveryRow",
    "DuplicateRegistration",
    "EntityChange",
    "EntityHandle",
    "Host",
    "HostConfig",
    "InvalidEntityState",
    "PluginLoadError",
    "ReactiveCoreError",
    "Registry",
    "RegistryError",
    "Transition",
    "UnknownEntityKind",
    "WorkQueue",
    "after_commit",
    "diff_states",
    "hookimpl",
    "hookspec",
    "with_entity_remove",
    "with_entity_write",
]
