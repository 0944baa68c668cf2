"""The records of what plugins declare: entity kinds, subscriptions, non-reactive tables."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from .._delivery.policy import Delivery
from .._entities.changes import EntityChange

NonReactiveReason = Literal["raw-sample", "sensitive", "externally-owned", "bookkeeping"]
NON_REACTIVE_REASONS: tuple[str, ...] = (
    "raw-sample", "sensitive", "externally-owned", "bookkeeping")

Deriver = Callable[[EntityChange], list[str]]
PayloadMapper = Callable[[EntityChange], dict[str, Any]]
ChangeHandler = Callable[[EntityChange], Awaitable[None]]
ReadFn = Callable[[Any, list[str]], Mapping[str, Any]]




@dataclass(frozen=True, slots=True, kw_only=True)
class EntityKind:
    """A declared kind: its state model and, for computed kinds, the `read` function."""

    kind: str
    state: type[BaseModel]
    read: ReadFn | None
    tables: tuple[str, ...]
    plugin: str | None
    ids: Callable[[Any], Iterable[str]] | None = None

    @property
    def computed(self) -> bool:
        """True for plugin-backed kinds whose state the plugin's own tables hold."""
        return self.read is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscription:
    """One `on_entity_changed` registration."""

    kind: str
    handler: ChangeHandler
    delivery: Delivery
    plugin: str | None

    @property
    def name(self) -> str:
        """A readable name for logs: the handler's qualified name."""
        return getattr(self.handler, "__qualname__", repr(self.handler))


@dataclass(frozen=True, slots=True, kw_only=True)
class NonReactiveDeclaration:
    """A plugin table that deliberately does not back an entity kind."""

    table: str
    reason: str
    note: str
    plugin: str | None
