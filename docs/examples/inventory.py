"""An example plugin for the how-to "Write a plugin": stock levels of a small shop.

`stock` is a computed kind: the plugin's own table `inventory_items` is the source of
truth and `read_stock` assembles the state. Every movement of stock is also appended
to `inventory_movements`, a raw log that backs no kind. A customer's *hold* puts stock
aside and arms a durable timer that puts it back unless the hold is confirmed in time.

The plugin is a class: each `Host` creates its own instance, which builds the plugin's
service (`Inventory`) in `reactive_register` and hands it what it needs.

Run it from the repository root (a temporary SQLite file, removed afterwards):

    .venv/bin/python docs/examples/inventory.py
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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
    CliCommand,
    CliContext,
    ConfigError,
    ConfigItemError,
    EntityChange,
    Host,
    ReactiveCoreError,
    Registry,
    RetryPolicy,
    Timer,
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


# -- settings -----------------------------------------------------------------------

class InventorySettings(BaseModel):
    """The plugin's settings: `Host(config={"plugins": {"inventory": {...}}})`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hold_minutes: float = Field(15.0, gt=0)


# -- the plugin's service, one per host ---------------------------------------------

HOLD_TOPIC = "inventory.hold-expiry"
"""The timer topic of holds; the timer's key is the hold id."""


class Inventory:
    """Stock moves, holds that expire and reorders, on one host."""

    def __init__(self, *, host: Host, settings: InventorySettings) -> None:
        self._host = host
        self._settings = settings
        self._stock = host.entity("stock")

    async def move(self, sku: str, delta: int, *, actor: Actor | None = None) -> Stock:
        """Add (or, negative, take) `delta` of `sku`, as one logged change."""
        stock: Stock = await self._stock.mutate(sku, move(sku, delta), actor=actor)
        return stock

    async def levels(self) -> dict[str, Stock]:
        """Every item's stock, by SKU."""
        return await self._stock.all()

    async def hold(self, hold_id: str, sku: str, quantity: int, *,
                   expires_after: timedelta | None = None) -> Stock:
        """Put `quantity` of `sku` aside; it goes back unless `confirm`ed in time."""
        after = expires_after or timedelta(minutes=self._settings.hold_minutes)

        def unit(tx: Connection) -> Stock:
            stock: Stock = self._stock.mutate_in(tx, sku, move(sku, -quantity),
                                                 reason=f"hold {hold_id}")
            self._host.timers.schedule_in(tx, HOLD_TOPIC, hold_id, after=after,
                                          payload={"sku": sku, "quantity": quantity})
            return stock

        return await self._host.run(unit)

    async def confirm(self, hold_id: str) -> bool:
        """The customer paid: the held stock stays sold. False when the hold expired."""
        return await self._host.timers.cancel(HOLD_TOPIC, hold_id)

    async def expire_hold(self, timer: Timer) -> None:
        """Timer handler: put an unconfirmed hold's stock back, once per cluster.

        The timer is cancelled in the transaction that moves the stock back, so a
        firing that runs again (its instance died before recording it) finds no timer
        and does nothing, and a hold confirmed meanwhile is left alone.
        """
        sku, quantity = timer.payload["sku"], timer.payload["quantity"]

        def unit(tx: Connection) -> None:
            if self._host.timers.cancel_in(tx, HOLD_TOPIC, timer.key):
                self._stock.mutate_in(tx, sku, move(sku, quantity),
                                      reason=f"hold {timer.key} expired")

        await self._host.run(unit)

    async def reorder(self, change: EntityChange) -> None:
        """Work-queue handler: when stock goes low, ask every supplier plugin to reorder."""
        if "inventory.low" not in self._host.derive_triggers(change):
            return
        assert change.next is not None
        orders = self._host.hook.inventory_reorder(sku=change.id,
                                                   quantity=change.next["quantity"])
        print(f"reorder {change.id}: {orders} (change {change.change_id[:8]})")


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
        written = stock.write_in(tx, decl.sku, declare_item(decl), actor=CONFIG_ACTOR)
        if written.prev is None:
            report.append(f"created item {decl.sku}")
        elif written.change is not None:
            report.append(f"updated item {decl.sku} ({', '.join(written.change.changed_fields)})")
    return report


# -- jobs ---------------------------------------------------------------------------

async def prune_movements(host: Host, slot: datetime) -> None:
    """Daily job: drop movements older than 90 days."""
    cutoff = slot - timedelta(days=90)
    await host.run(lambda tx: tx.execute(delete(movements).where(movements.c.at < cutoff)))


async def refresh_stock(host: Host, slot: datetime) -> None:
    """Periodic job: re-read every item through `mutate`, so edits made behind the
    plugin's back (a manual UPDATE) are logged like any change."""
    stock = host.entity("stock")
    for sku in await stock.ids():
        await stock.mutate(sku, lambda tx, prev, sku=sku: read_stock(tx, [sku])[sku])


# -- a command for `reactive` -------------------------------------------------------

def stock_command(inventory: Inventory) -> CliCommand:
    """`reactive stock [--low] [--json]`: each item's stock level."""

    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--low", action="store_true", help="only items running low")

    def table(rows: list[dict[str, Any]]) -> str:
        if not rows:
            return "no items"
        return CliContext.table(["sku", "name", "quantity", "low"],
                                ([r["sku"], r["name"], r["quantity"], "yes" if r["low"] else "-"]
                                 for r in rows))

    async def run(ctx: CliContext) -> int:
        levels = await inventory.levels()
        rows = [{"sku": sku, **stock.model_dump()} for sku, stock in levels.items()
                if stock.low or not ctx.args.low]
        ctx.emit(rows, table)
        return 0

    return CliCommand(name="stock", help="stock levels of the inventory", run=run,
                      arguments=arguments, listing=True)


# -- an extension point for other plugins -------------------------------------------

class InventorySpecs:
    """Hooks that other plugins implement to extend the inventory."""

    @hookspec
    def inventory_reorder(self, sku: str, quantity: int) -> str | None:
        """Order more of `sku`, now at `quantity`; return an order reference or None."""


# -- the plugins --------------------------------------------------------------------

class InventoryPlugin:
    """Declares the inventory: tables, the `stock` kind, triggers, reorders, holds, jobs."""

    name = "inventory"

    def __init__(self) -> None:
        self.inventory: Inventory | None = None

    @hookimpl
    def reactive_register(self, registry: Registry, host: Host) -> None:
        registry.add_tables(metadata)
        registry.define_entity("stock", state=Stock, read=read_stock, ids=stock_ids,
                               tables=["inventory_items"])
        registry.declare_non_reactive_state(
            "inventory_movements", "raw-sample",
            "append-only log of movements; the reactive view is the stock kind")
        settings = host.plugin_settings("inventory", InventorySettings)
        self.inventory = inventory = Inventory(host=host, settings=settings)
        registry.register_change_deriver("stock", derive_stock_triggers,
                                         to_payload=stock_payload)
        registry.on_entity_changed("stock", inventory.reorder,
                                   delivery=WorkQueue("inventory-reorder"))
        registry.on_timer(HOLD_TOPIC, inventory.expire_hold,
                          retry=RetryPolicy(max_retries=5, base_seconds=2.0))
        registry.add_config_section("items", ItemDeclaration, apply_items, order=50)
        registry.add_job("inventory.prune-movements", prune_movements, cron="0 3 * * *")
        registry.add_job("inventory.refresh", refresh_stock, every=timedelta(minutes=15))
        registry.add_hookspecs(InventorySpecs)

    @hookimpl
    def reactive_cli_commands(self) -> list[CliCommand]:
        assert self.inventory is not None
        return [stock_command(self.inventory)]


class SupplierPlugin:
    """Another plugin that implements the inventory's extension point."""

    name = "supplier"

    @hookimpl
    def inventory_reorder(self, sku: str, quantity: int) -> str | None:
        return f"PO-{sku}-{LOW_STOCK * 4 - quantity}"


def inventory_of(host: Host) -> Inventory:
    """The `Inventory` of `host`'s inventory plugin (for application code and tests)."""
    plugin = host.plugin("inventory")
    if not isinstance(plugin, InventoryPlugin) or plugin.inventory is None:
        raise ReactiveCoreError(f"the plugin named 'inventory' is a {type(plugin).__name__}, "
                                f"expected an InventoryPlugin")
    return plugin.inventory


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
        async with Host(database_url=url, plugins=[InventoryPlugin, SupplierPlugin],
                        entry_points=False, config={"run_jobs": False}) as host:
            print(await apply_config_text(host, CONFIG, source="inventory.yaml"))
            print(await apply_config_text(host, CONFIG, source="inventory.yaml"))  # no changes
            try:
                await apply_config_text(host, BAD_CONFIG, source="bad.yaml")
            except ConfigError as exc:
                print(exc)
            inventory = inventory_of(host)
            await inventory.move("tea", -8, actor=Actor("user", "till-1"))
            await host.drain()
            for change in await host.changes(kind="stock"):
                print(change.seq, change.id, change.delta, host.derive_triggers(change))

            await inventory.hold("order-7", "mug", 2, expires_after=timedelta(seconds=0.2))
            await inventory.hold("order-8", "mug", 1)
            print("held:", (await inventory.levels())["mug"].quantity,
                  [t.key for t in await host.timers.list(HOLD_TOPIC)])
            print("order-8 confirmed:", await inventory.confirm("order-8"))
            with anyio.fail_after(10):
                while await host.timers.get(HOLD_TOPIC, "order-7") is not None:
                    await anyio.sleep(0.05)
            print("after order-7 expired:", (await inventory.levels())["mug"].quantity)

            await refresh_stock(host, datetime.now(UTC))
            await prune_movements(host, datetime.now(UTC))
            print(await inventory.levels())
            report = await doctor(host)
            print([(t.table, t.status) for t in report.tables], report.ok)


if __name__ == "__main__":
    anyio.run(main)
