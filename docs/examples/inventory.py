"""An example plugin for the how-to "Write a plugin": stock levels of a small shop.

`stock` is a computed kind: the plugin's own table `inventory_items` is the source of
truth and `read_stock` assembles the state. Every movement of stock is also appended
to `inventory_movements`, a raw log that backs no kind.

Run it from the repository root (a temporary SQLite file, removed afterwards):

    .venv/bin/python docs/examples/inventory.py
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)

from reactive_core import (
    CONFIG_ACTOR,
    Actor,
    ConfigError,
    ConfigItemError,
    EntityChange,
    Host,
    Registry,
    WorkQueue,
    apply_config_text,
    doctor,
    hookimpl,
    hookspec,
)

# -- tables -------------------------------------------------------------------------

metadata = MetaData()

items = Table(
    "inventory_items",
    metadata,
    Column("sku", String(100), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("quantity", Integer, nullable=False),
)

movements = Table(
    "inventory_movements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sku", String(100), nullable=False),
    Column("delta", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

# -- the computed kind --------------------------------------------------------------

LOW_STOCK = 5


class Stock(BaseModel):
    """The state of one `stock` entity, keyed by SKU."""

    model_config = ConfigDict(frozen=True)

    name: str
    quantity: int = Field(ge=0)
    low: bool


def read_stock(tx: Connection, ids: list[str]) -> Mapping[str, Stock]:
    """`read(tx, ids)`: the current state of each id; ids without a row are left out."""
    rows = tx.execute(select(items).where(items.c.sku.in_(ids))).all()
    return {
        row.sku: Stock(name=row.name, quantity=row.quantity, low=row.quantity < LOW_STOCK)
        for row in rows
    }


def stock_ids(tx: Connection) -> list[str]:
    """`ids(tx)`: every SKU that exists, for `handle.ids()` and `handle.all()`."""
    return list(tx.execute(select(items.c.sku)).scalars())


def move(sku: str, delta: int) -> Callable[[Connection, Stock | None], Stock]:
    """An apply function: write the plugin's tables, then return the fresh view."""

    def apply(tx: Connection, prev: Stock | None) -> Stock:
        if prev is None:
            raise LookupError(f"no item {sku!r}")
        tx.execute(update(items).where(items.c.sku == sku)
                   .values(quantity=items.c.quantity + delta))
        tx.execute(insert(movements).values(sku=sku, delta=delta, at=datetime.now(UTC)))
        return read_stock(tx, [sku])[sku]

    return apply


# -- triggers -----------------------------------------------------------------------

def derive_stock_triggers(change: EntityChange) -> list[str]:
    """Trigger ids for automation: stock went low, or was restocked."""
    was_low = bool(change.prev and change.prev["low"])
    is_low = bool(change.next and change.next["low"])
    if is_low and not was_low:
        return ["inventory.low"]
    if was_low and change.next is not None and not is_low:
        return ["inventory.restocked"]
    return []


def stock_payload(change: EntityChange) -> dict[str, object]:
    """The automation payload of a `stock` change."""
    return {"sku": change.id, "quantity": change.next["quantity"] if change.next else None}


# -- config file section ------------------------------------------------------------

class ItemDeclaration(BaseModel):
    """One item of the `items` section of a config file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: str = Field(min_length=1)
    name: str = Field(min_length=1)
    quantity: int = Field(0, ge=0)


def declare_item(decl: ItemDeclaration) -> Callable[[Connection, Stock | None], Stock]:
    """An apply function that creates the item or sets its name and quantity."""

    def apply(tx: Connection, prev: Stock | None) -> Stock:
        values = {"name": decl.name, "quantity": decl.quantity}
        if prev is None:
            tx.execute(insert(items).values(sku=decl.sku, **values))
        else:
            tx.execute(update(items).where(items.c.sku == decl.sku).values(**values))
        return read_stock(tx, [decl.sku])[decl.sku]

    return apply


def apply_items(tx: Connection, host: Host, decls: list[ItemDeclaration]) -> list[str]:
    """Config section `items`: upsert each item inside the apply's one transaction."""
    stock = host.entity("stock")
    seen: set[str] = set()
    report: list[str] = []
    for index, decl in enumerate(decls):
        if decl.sku in seen:
            raise ConfigItemError(index, f"sku {decl.sku!r} is declared twice", field="sku")
        seen.add(decl.sku)
        before = stock.get_in(tx, decl.sku)
        after = stock.mutate_in(tx, decl.sku, declare_item(decl), actor=CONFIG_ACTOR)
        if before is None:
            report.append(f"created item {decl.sku}")
        elif before != after:
            report.append(f"updated item {decl.sku}")
    return report


# -- jobs ---------------------------------------------------------------------------

async def prune_movements(host: Host, slot: datetime) -> None:
    """Daily job: drop movements older than 90 days."""
    cutoff = slot - timedelta(days=90)
    await host.db.run(lambda tx: tx.execute(delete(movements).where(movements.c.at < cutoff)))


async def refresh_stock(host: Host, slot: datetime) -> None:
    """Periodic job: re-read every item through `mutate`, so edits made behind the
    plugin's back (a manual UPDATE) are logged like any change."""
    stock = host.entity("stock")
    for sku in await stock.ids():
        await stock.mutate(sku, lambda tx, prev, sku=sku: read_stock(tx, [sku])[sku])


# -- an extension point for other plugins -------------------------------------------

class InventorySpecs:
    """Hooks that other plugins implement to extend the inventory."""

    @hookspec
    def inventory_reorder(self, sku: str, quantity: int) -> str | None:
        """Order more of `sku`, now at `quantity`; return an order reference or None."""


def reorder_handler(registry: Registry) -> Callable[[EntityChange], object]:
    """Work-queue handler: when stock goes low, ask every supplier plugin to reorder."""

    async def reorder(change: EntityChange) -> None:
        host = registry.host
        if "inventory.low" not in host.derive_triggers(change):
            return
        assert host.pm is not None and change.next is not None
        orders = host.pm.hook.inventory_reorder(sku=change.id, quantity=change.next["quantity"])
        print(f"reorder {change.id}: {orders} (change {change.change_id[:8]})")

    return reorder


# -- the plugins --------------------------------------------------------------------

class InventoryPlugin:
    """Declares the inventory: tables, the `stock` kind, triggers, reorders, jobs."""

    name = "inventory"

    @hookimpl
    def reactive_register(self, registry: Registry) -> None:
        registry.add_tables(metadata)
        registry.define_entity("stock", state=Stock, read=read_stock, ids=stock_ids,
                               tables=["inventory_items"])
        registry.declare_non_reactive_state(
            "inventory_movements", "raw-sample",
            "append-only log of movements; the reactive view is the stock kind")
        registry.register_change_deriver("stock", derive_stock_triggers,
                                         to_payload=stock_payload)
        registry.on_entity_changed("stock", reorder_handler(registry),
                                   delivery=WorkQueue("inventory-reorder"))
        registry.add_config_section("items", ItemDeclaration, apply_items, order=50)
        registry.add_job("inventory.prune-movements", prune_movements, cron="0 3 * * *")
        registry.add_job("inventory.refresh", refresh_stock, every=timedelta(minutes=15))
        registry.add_hookspecs(InventorySpecs)


class SupplierPlugin:
    """Another plugin that implements the inventory's extension point."""

    name = "supplier"

    @hookimpl
    def inventory_reorder(self, sku: str, quantity: int) -> str | None:
        return f"PO-{sku}-{LOW_STOCK * 4 - quantity}"


plugin = InventoryPlugin()
supplier = SupplierPlugin()

# -- trying it ----------------------------------------------------------------------

CONFIG = """
items:
  - {sku: tea, name: Green tea, quantity: 12}
  - {sku: mug, name: Mug, quantity: 3}
"""

BAD_CONFIG = """
items:
  - {sku: cup, name: Cup}
  - {sku: cup, name: Tea cup}
"""


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'inventory.db'}"
        async with Host(database_url=url, plugins=[plugin, supplier], entry_points=False,
                        config={"run_jobs": False}) as host:
            print(await apply_config_text(host, CONFIG, source="inventory.yaml"))
            print(await apply_config_text(host, CONFIG, source="inventory.yaml"))  # no changes
            try:
                await apply_config_text(host, BAD_CONFIG, source="bad.yaml")
            except ConfigError as exc:
                print(exc)
            stock = host.entity("stock")
            await stock.mutate("tea", move("tea", -8), actor=Actor("user", "till-1"))
            await host.drain()
            for change in await host.changes(kind="stock"):
                print(change.seq, change.id, change.delta, host.derive_triggers(change))
            await refresh_stock(host, datetime.now(UTC))
            await prune_movements(host, datetime.now(UTC))
            print(await stock.all())
            report = await doctor(host)
            print([(t.table, t.status) for t in report.tables], report.ok)


if __name__ == "__main__":
    anyio.run(main)
