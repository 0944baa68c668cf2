"""The catalog's values: a system's state, dependency edges, and config-file items."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from reactive_core import Identifier

CATALOG_KIND = "catalog-system"
"""The entity kind of catalog systems: one entity per system, keyed by system id."""


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank: expected visible characters")
    return value


class CatalogSystem(BaseModel):
    """The state of one `catalog-system` entity (store-backed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    description: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)

    _name_not_blank = field_validator("name")(_not_blank)


class Impact(StrEnum):
    """How badly a downstream system suffers when its upstream is down."""

    INFORMATIONAL = "informational"
    DEGRADED = "degraded"
    CRITICAL = "critical"


class Dependency(BaseModel):
    """An edge: `source_system_id` (downstream) depends on `target_system_id` (upstream)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source_system_id: str
    target_system_id: str
    impact: Impact


class SystemDeclaration(BaseModel):
    """One item of the `systems` config section; unknown keys are errors (typos)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Identifier
    name: str = Field(min_length=1)
    description: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)

    _name_not_blank = field_validator("name")(_not_blank)


class DependencyDeclaration(BaseModel):
    """One item of the `dependencies` config section: `source` depends on `target`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Identifier
    target: Identifier
    impact: Impact = Impact.DEGRADED
