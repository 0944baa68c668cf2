"""Plugins the CLI end-to-end tests load with `reactive --plugin e2e_plugins:<name>`.

The subprocesses find this module through PYTHONPATH (tests/e2e). Behaviour that
depends on the test (where to record, how slow to be) comes from environment
variables, since a `--plugin` object takes no arguments.
"""

from __future__ import annotations

import os
import time
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table

from reactive_core import EntityChange, WorkQueue, hookimpl

ITEM_KIND = "e2e-item"
TICK_KIND = "e2e-tick"
FAILING_GROUP = "e2e-failing"
RECORDER_GROUP = "e2e-recorder"
STUCK_GROUP = "e2e-stuck"


class Counted(BaseModel):
    """State of both test kinds: a number."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int = Field(ge=0)


class ItemDeclaration(BaseModel):
    """One item of the `items` config section."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    n: int = Field(ge=0)


def apply_items(tx: Connection, host: Any, items: list[ItemDeclaration]) -> list[str]:
    """Set each item's `n`; report the items that changed."""
    handle = host.entity(ITEM_KIND)
    lines = []
    for item in items:
        prev = handle.get_in(tx, item.id)
        if prev is None or prev.n != item.n:
            handle.mutate_in(tx, item.id, lambda _tx, _prev, n=item.n: {"n": n})
            lines.append(f"set item {item.id} to {item.n}")
    return lines


class ItemsPlugin:
    """Kind `e2e-item` (store-backed) and the `items` config section."""

    name = "e2e-items"

    @hookimpl
    def reactive_register(self, registry: Any) -> None:
        registry.define_entity(ITEM_KIND, state=Counted)
        registry.add_config_section("items", ItemDeclaration, apply_items)


async def always_fail(change: EntityChange) -> None:
    raise RuntimeError(f"cannot handle {change.kind}:{change.id}")


class FailingPlugin:
    """A work-queue handler of `e2e-item` that always fails and is never retried."""

    name = "e2e-failing"

    @hookimpl
    def reactive_register(self, registry: Any) -> None:
        registry.on_entity_changed(ITEM_KIND, always_fail,
                                   delivery=WorkQueue(FAILING_GROUP, max_retries=0))


scratch_metadata = MetaData()
Table("e2e_scratch", scratch_metadata, Column("id", Integer, primary_key=True))
Table("e2e_samples", scratch_metadata, Column("id", Integer, primary_key=True),
      Column("value", String(50)))


class UndeclaredPlugin:
    """Adds a declared table (`e2e_samples`) and one it forgets to declare (`e2e_scratch`)."""

    name = "e2e-undeclared"

    @hookimpl
    def reactive_register(self, registry: Any) -> None:
        registry.add_tables(scratch_metadata)
        registry.declare_non_reactive_state("e2e_samples", "raw-sample", "test samples")


async def record_tick(change: EntityChange) -> None:
    """Work queue `e2e-recorder`: append `entity seq change_id pid` to a file, then work.

    The side effect comes first and the (slow) rest after, so a server killed while
    handling leaves a recorded change whose delivery is not done: it is delivered
    again (at-least-once). One `os.write` of a short line to an O_APPEND file: a
    SIGKILL leaves either the whole line or none of it.
    """
    line = f"{change.id} {change.seq} {change.change_id} {os.getpid()}\n".encode()
    fd = os.open(os.environ["E2E_RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    await anyio.sleep(float(os.environ.get("E2E_HANDLER_DELAY", "0.05")))


class TicksPlugin:
    """Kind `e2e-tick` alone: what the crash test's writer loads (it handles nothing)."""

    name = "e2e-ticks"

    @hookimpl
    def reactive_register(self, registry: Any) -> None:
        registry.define_entity(TICK_KIND, state=Counted)


class CrashPlugin(TicksPlugin):
    """Kind `e2e-tick` and a slow work-queue handler that records each change handled."""

    name = "e2e-crash"

    @hookimpl
    def reactive_register(self, registry: Any) -> None:
        super().reactive_register(registry)
        registry.on_entity_changed(TICK_KIND, record_tick, delivery=WorkQueue(RECORDER_GROUP))


async def stuck_in_a_thread(change: EntityChange) -> None:
    """Work queue `e2e-stuck`: record the start, then block a worker thread for ten
    minutes — a call nobody can cancel."""
    line = f"{change.id} {change.seq} {change.change_id} {os.getpid()}\n".encode()
    fd = os.open(os.environ["E2E_RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    await anyio.to_thread.run_sync(time.sleep, 600)


class StuckPlugin(TicksPlugin):
    """Kind `e2e-tick` and a work-queue handler stuck in a thread."""

    name = "e2e-stuck"

    @hookimpl
    def reactive_register(self, registry: Any) -> None:
        super().reactive_register(registry)
        registry.on_entity_changed(TICK_KIND, stuck_in_a_thread, delivery=WorkQueue(STUCK_GROUP))


items = ItemsPlugin()
failing = FailingPlugin()
undeclared = UndeclaredPlugin()
crash = CrashPlugin()
stuck = StuckPlugin()
