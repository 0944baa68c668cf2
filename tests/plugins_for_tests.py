"""Small plugins the core tests share: a store-backed kind and a computed one (and the
mark that runs a test on both async backends)."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import pytest
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from reactive_core import hookimpl

BOTH = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
"""Runs the marked test on asyncio and on trio (the default fixture gives asyncio only)."""


async def in_one_batch(runner: Any, *calls: tuple[str, Callable[[], Awaitable[Any]]],
                       ) -> dict[str, Any]:
    """Await `calls` (name, call), each one write, while a unit of work holds the writer
    of `runner` (a `Host` or a `Database`): started in this order, their units form one
    group-commit batch once the writer is free. Each one's result, or the name of the
    exception it raised."""
    outcomes: dict[str, Any] = {}
    gate = threading.Event()

    async def outcome(name: str, call: Callable[[], Awaitable[Any]]) -> None:
        try:
            outcomes[name] = await call()
        except Exception as exc:  # noqa: BLE001 - the outcome is what is checked
            outcomes[name] = type(exc).__name__

    async with anyio.create_task_group() as tg:
        tg.start_soon(outcome, "held", lambda: runner.run(lambda _tx: gate.wait(5)))
        await anyio.sleep(0.05)
        for name, call in calls:
            tg.start_soon(outcome, name, call)
            await anyio.sleep(0.01)  # so that they queue in this order
        gate.set()
    assert outcomes.pop("held") is True
    return outcomes


async def run_twice_on_sqlite(host: Any, call: Callable[[], Awaitable[Any]]) -> Any:
    """Await `call()` (one write, one unit of work) in a batch of the SQLite group commit
    whose next unit raises: the batch rolls back and `call`'s unit runs a second time.
    Returns what `call()` returned."""
    def failing(_tx: Connection) -> None:
        raise ValueError("the next unit of the batch fails")

    outcomes = await in_one_batch(host, ("call", call), ("fails", lambda: host.run(failing)))
    assert outcomes["fails"] == "ValueError", outcomes
    return outcomes["call"]


class Counter(BaseModel):
    model_config = ConfigDict(frozen=True)

    n: int = Field(ge=0)
    label: str | None = None
    tags: dict[str, Any] = {}


class Widget(BaseModel):
    model_config = ConfigDict(frozen=True)

    color: str
    size: int = Field(ge=0)


widget_metadata = MetaData()
widgets = Table(
    "test_widgets",
    widget_metadata,
    Column("id", String(100), primary_key=True),
    Column("color", String(50), nullable=False),
    Column("size", Integer, nullable=False),
)


def read_widgets(tx: Connection, ids: list[str]) -> Mapping[str, Any]:
    rows = tx.execute(select(widgets).where(widgets.c.id.in_(ids))).all()
    return {row.id: {"color": row.color, "size": row.size} for row in rows}


def write_widget(tx: Connection, widget_id: str, color: str, size: int) -> None:
    dialect = tx.dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(widgets).values(id=widget_id, color=color, size=size)
    tx.execute(stmt.on_conflict_do_update(index_elements=[widgets.c.id],
                                          set_={"color": color, "size": size}))


def delete_widget(tx: Connection, widget_id: str) -> None:
    tx.execute(delete(widgets).where(widgets.c.id == widget_id))


def increment(tx: Connection, prev: Counter | None) -> Counter:
    return Counter(n=(prev.n if prev else 0) + 1, label=prev.label if prev else None)


class CorePlugin:
    """Defines `counter` (store-backed) and `widget` (computed from test_widgets)."""

    name = "core-test"

    @hookimpl
    def reactive_register(self, registry: Any) -> None:
        registry.add_tables(widget_metadata)
        registry.define_entity("counter", state=Counter)
        registry.define_entity("widget", state=Widget, read=read_widgets, tables=["test_widgets"])


class SubscriberPlugin:
    """Subscribes one handler to one kind (broadcast or work queue)."""

    def __init__(self, kind: str, handler: Any, delivery: Any = None, name: str = "sub") -> None:
        self.kind = kind
        self.handler = handler
        self.delivery = delivery
        self.name = name

    @hookimpl
    def reactive_register(self, registry: Any) -> None:
        registry.on_entity_changed(self.kind, self.handler, delivery=self.delivery)


def make_health_host(url: str, *extra: object, **health: Any) -> Any:
    """A host with the catalog and health plugins; checks run only when a test runs them."""
    import catalog_plugin
    import health_plugin
    from reactive_core import Host

    return Host(database_url=url, plugins=[catalog_plugin.CatalogPlugin, health_plugin.HealthPlugin, *extra],
                entry_points=False,
                config={"poll_interval": 0.05, "retry_base_seconds": 0.01, "run_jobs": False,
                        "shutdown_timeout_seconds": 0.5,
                        "plugins": {"health": {"scheduler": False, **health}}})
