"""reactive-core: reactive entities with one transactional write path.

Plugins declare typed entity kinds; every write goes through `mutate`, which diffs
the previous and next state, logs the change and its per-field transitions, and
delivers it to subscribers (broadcast to every instance, or once per cluster via a
work queue) — all in the transaction of the plugin's own write.
"""

from __future__ import annotations

from ._cache import CacheEntry, CacheStore, MemoryCacheStore, ReadThroughCache
from ._cli.commands import CliCommand, CliContext
from ._cli.demo import DemoContext, DemoStep
from ._delivery.policy import Broadcast, DeliveryStatus, RetryPolicy, WorkQueue
from ._delivery.queue import DeliveryRow, QueueStatus, RouteStatus
from ._entities.changes import SYSTEM_ACTOR, Actor, EntityChange, diff_states
from ._entities.handle import EntityHandle, with_entity_remove, with_entity_write
from ._entities.ids import Identifier, check_id
from ._entities.logs import Transition
from ._entities.write import Write
from ._errors import (
    ConfigError,
    DatabaseBusy,
    DeliveryNotFound,
    DuplicateRegistration,
    InvalidEntityState,
    InvalidIdentifier,
    PluginLoadError,
    ReactiveCoreError,
    RegistryError,
    TransactionEnded,
    UnknownEntityKind,
)
from ._host.config import HostConfig
from ._host.configfile import (
    CONFIG_ACTOR,
    CONFIG_REASON,
    ConfigItemError,
    apply_config_file,
    apply_config_text,
)
from ._host.declarations import EntityKind
from ._host.doctor import DoctorReport, RouteFinding, TableFinding, doctor
from ._host.host import Host
from ._host.registry import Registry
from ._store.group_commit import after_commit
from ._timers.timers import Timer, TimerError, Timers, TimerStatus
from .hookspecs import hookimpl, hookspec

__all__ = [
    "Actor",
    "Broadcast",
    "CONFIG_ACTOR",
    "CONFIG_REASON",
    "CacheEntry",
    "CacheStore",
    "CliCommand",
    "CliContext",
    "ConfigError",
    "ConfigItemError",
    "DatabaseBusy",
    "DeliveryNotFound",
    "DeliveryRow",
    "DeliveryStatus",
    "DemoContext",
    "DemoStep",
    "DoctorReport",
    "DuplicateRegistration",
    "EntityChange",
    "EntityHandle",
    "EntityKind",
    "Host",
    "HostConfig",
    "Identifier",
    "InvalidEntityState",
    "InvalidIdentifier",
    "MemoryCacheStore",
    "PluginLoadError",
    "QueueStatus",
    "ReactiveCoreError",
    "ReadThroughCache",
    "Registry",
    "RegistryError",
    "RetryPolicy",
    "RouteFinding",
    "RouteStatus",
    "SYSTEM_ACTOR",
    "TableFinding",
    "Timer",
    "TimerError",
    "TimerStatus",
    "Timers",
    "TransactionEnded",
    "Transition",
    "UnknownEntityKind",
    "WorkQueue",
    "Write",
    "after_commit",
    "apply_config_file",
    "apply_config_text",
    "check_id",
    "diff_states",
    "doctor",
    "hookimpl",
    "hookspec",
    "with_entity_remove",
    "with_entity_write",
]
