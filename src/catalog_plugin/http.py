"""The catalog plugin's routes in the HTTP API: the systems and what each depends on.

`GET /api/systems` lists systems by id, paged with `limit` and the cursor `after` (the
last id of the previous page, returned as `next_after` while more follow);
`GET /api/systems/{id}` is one system, or a 404 problem naming the id.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict

from reactive_core.http import ReadAccess

from .models import CatalogSystem, Dependency
from .service import Catalog

MAX_LIMIT = 1000
"""The largest page a listing returns."""


class DependencyOut(BaseModel):
    """An upstream of the system: `system_id` it depends on, `kind` the impact."""

    model_config = ConfigDict(frozen=True)

    system_id: str
    kind: str


class SystemOut(BaseModel):
    """One system of the catalog, with its upstream dependencies."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    tags: list[str]
    description: str | None
    dependencies: list[DependencyOut]


class SystemsPage(BaseModel):
    """A page of systems, by id; `next_after` is the cursor of the next page (or null)."""

    model_config = ConfigDict(frozen=True)

    items: list[SystemOut]
    next_after: str | None


def system_out(system_id: str, system: CatalogSystem,
               upstream: list[Dependency]) -> SystemOut:
    """A system as the API shows it."""
    return SystemOut(
        id=system_id, name=system.name, tags=list(system.tags), description=system.description,
        dependencies=[DependencyOut(system_id=d.target_system_id, kind=d.impact.value)
                      for d in upstream])


def routes(catalog: Catalog) -> list[APIRouter]:
    """`/api/systems` and `/api/systems/{id}` over `catalog`."""
    router = APIRouter(prefix="/api/systems", tags=["catalog"])

    @router.get("", summary="Systems", response_model=SystemsPage)
    async def list_systems(
        _access: ReadAccess,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
        after: Annotated[str | None, Query(description="the last id of the previous page")]
        = None,
    ) -> SystemsPage:
        """Every system by id, with the systems it depends on (upstream) and how badly."""
        systems = await catalog.systems()
        ids = [sid for sid in systems if after is None or sid > after]
        page, more = ids[:limit], len(ids) > limit
        edges = await catalog.dependencies()
        upstream: dict[str, list[Dependency]] = {sid: [] for sid in page}
        for edge in edges:
            if edge.source_system_id in upstream:
                upstream[edge.source_system_id].append(edge)
        return SystemsPage(
            items=[system_out(sid, systems[sid], upstream[sid]) for sid in page],
            next_after=page[-1] if more and page else None)

    @router.get("/{system_id}", summary="One system", response_model=SystemOut)
    async def get_system(system_id: str, _access: ReadAccess) -> SystemOut:
        """One system with its upstream dependencies; 404 when the catalog has none."""
        system = await catalog.get_system(system_id)
        if system is None:
            raise HTTPException(404, f"unknown system {system_id!r}: expected the id of a "
                                     "system of the catalog (GET /api/systems)")
        return system_out(system_id, system, await catalog.upstream_of(system_id))

    return [router]
