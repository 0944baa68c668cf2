"""The write path on SQLite: diffs, no-ops, tombstones, rollback, validation, reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import anyio
import pytest
from sqlalchemy import func, select

from plugins_for_tests import (
    CorePlugin,
    Counter,
    SubscriberPlugin,
    Widget,
    delete_widget,
    increment,
    widgets,
    write_widget,
)
from reactive_core import (
    Actor,
    Host,
    InvalidEntityState,
    UnknownEntityKind,
    WorkQueue,
)
from reactive_core._entities.changes import stored_time
from reactive_core._store.schema import entity_changes, entity_deliveries, entity_transitions

pytestmark = pytest.mark.anyio


def make_host(url: str, *plugins: object) -> Host:
    return Host(database_url=url, plugins=[CorePlugin(), *plugins], entry_points=False,
                config={"poll_interval": 0.05, "retry_base_seconds": 0.01, "run_jobs": False})


async def counts(host: Host) -> tuple[int, int, int]:
    def read(tx):  # type: ignore[no-untyped-def]
        return tuple(
            tx.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (entity_changes, entity_transitions, entity_deliveries)
        )
    return await host.read(read)


async def test_store_backed_create_update_noop_remove(sqlite_url: str) -> None:
    async with make_host(sqlite_url) as host:
        counters = host.entity("counter")
        seen_prev: list[Counter | None] = []

        def set_state(state: dict):  # type: ignore[no-untyped-def]
            def apply(tx, prev):  # type: ignore[no-untyped-def]
                seen_prev.append(prev)
                return state
            return apply

        created = await counters.mutate("a", set_state({"n": 1, "tags": {"x": 1, "y": 2}}),
                                        actor=Actor("user", "u1"), reason="first")
        assert created == Counter(n=1, tags={"x": 1, "y": 2})
        await counters.mutate("a", set_state({"n": 2, "tags": {"x": 1, "y": 2}, "label": "two"}))
        # The same values with the keys in another order: no change.
        await counters.mutate("a", set_state({"tags": {"y": 2, "x": 1}, "label": "two", "n": 2}))
        await counters.remove("a")
        await counters.remove("a")  # removing an absent entity is a no-op

        assert seen_prev == [None, Counter(n=1, tags={"x": 1, "y": 2}),
                             Counter(n=2, label="two", tags={"x": 1, "y": 2})]
        changes = await host.changes(kind="counter", entity_id="a")
        assert [c.seq for c in changes] == sorted(c.seq for c in changes)
        create, update, tomb = changes
        assert create.prev is None
        assert create.next == {"n": 1, "label": None, "tags": {"x": 1, "y": 2}}
        assert create.delta == {"n": 1, "tags": {"x": 1, "y": 2}}
        assert create.changed_fields == ("n", "tags")
        assert create.actor == Actor("user", "u1") and create.reason == "first"
        assert update.delta == {"label": "two", "n": 2}
        assert update.changed_fields == ("label", "n")
        assert update.prev == create.next
        assert tomb.next is None and tomb.delta == {}
        assert tomb.changed_fields == ("label", "n", "tags")
        assert tomb.prev == {"n": 2, "label": "two", "tags": {"x": 1, "y": 2}}
        assert await counters.get("a") is None

        rows = await host.transitions(kind="counter", entity_id="a")
        assert [(r.field, r.from_value, r.to_value) for r in rows] == [
            ("n", None, "1"), ("tags", None, '{"x":1,"y":2}'),
            ("label", None, "two"), ("n", "1", "2"),
            ("label", "two", None), ("n", "2", None), ("tags", '{"x":1,"y":2}', None),
        ]


async def test_computed_create_update_noop_remove(sqlite_url: str) -> None:
    async with make_host(sqlite_url) as host:
        handle = host.entity("widget")
        prevs: list[Widget | None] = []

        def put(color: str, size: int):  # type: ignore[no-untyped-def]
            def apply(tx, prev):  # type: ignore[no-untyped-def]
                prevs.append(prev)
                write_widget(tx, "w1", color, size)
                return handle.get_in(tx, "w1")
            return apply

        assert await handle.mutate("w1", put("red", 1)) == Widget(color="red", size=1)
        await handle.mutate("w1", put("blue", 1))
        await handle.mutate("w1", put("blue", 1))  # the plugin writes, nothing changes
        await handle.remove("w1", lambda tx, prev: delete_widget(tx, "w1"))
        await handle.remove("w1", lambda tx, prev: delete_widget(tx, "w1"))

        assert prevs == [None, Widget(color="red", size=1), Widget(color="blue", size=1)]
        changes = await host.changes(kind="widget")
        assert [(c.delta, c.changed_fields) for c in changes] == [
            ({"color": "red", "size": 1}, ("color", "size")),
            ({"color": "blue"}, ("color",)),
            ({}, ("color", "size")),
        ]
        assert changes[1].prev == {"color": "red", "size": 1}
        assert changes[2].next is None
        assert await handle.get("w1") is None
        assert await host.table_names() >= {"test_widgets", "entity_state"}


async def test_remove_of_computed_kind_must_remove_the_rows(sqlite_url: str) -> None:
    async with make_host(sqlite_url) as host:
        handle = host.entity("widget")
        await handle.mutate("w", lambda tx, prev: (write_widget(tx, "w", "red", 1),
                                                   handle.get_in(tx, "w"))[1])
        with pytest.raises(InvalidEntityState, match="left the entity readable"):
            await handle.remove("w")
        assert await handle.get("w") == Widget(color="red", size=1)


class Failing(Exception):
    pass


@pytest.mark.parametrize("failure", ["raise", "invalid", "not-a-state"])
async def test_failed_apply_leaves_nothing(sqlite_url: str, failure: str) -> None:
    async def noop(change):  # type: ignore[no-untyped-def]
        pass

    async with make_host(sqlite_url, SubscriberPlugin("widget", noop, WorkQueue("g"))) as host:
        handle = host.entity("widget")
        await handle.mutate("w", lambda tx, prev: (write_widget(tx, "w", "red", 1),
                                                   handle.get_in(tx, "w"))[1])
        before = await counts(host)

        def apply(tx, prev):  # type: ignore[no-untyped-def]
            write_widget(tx, "w", "green", 7)
            write_widget(tx, "other", "green", 7)
            if failure == "raise":
                raise Failing("boom")
            if failure == "invalid":
                return {"color": "green", "size": -1}
            return 42

        expected = Failing if failure == "raise" else InvalidEntityState
        with pytest.raises(expected) as info:
            await handle.mutate("w", apply)
        if failure == "invalid":
            assert info.value.kind == "widget" and info.value.entity_id == "w"
            assert info.value.fields == ("size",)
            assert "widget:w" in str(info.value) and "size" in str(info.value)
        assert await counts(host) == before
        assert await handle.get("w") == Widget(color="red", size=1)

        def rows(tx):  # type: ignore[no-untyped-def]
            return tx.execute(select(widgets.c.id)).scalars().all()
        assert await host.read(rows) == ["w"]


async def test_invalid_store_state_names_kind_id_and_field(sqlite_url: str) -> None:
    async with make_host(sqlite_url) as host:
        with pytest.raises(InvalidEntityState) as info:
            await host.entity("counter").mutate("c1", lambda tx, prev: {"n": "many"})
        assert "counter:c1" in str(info.value) and "field n" in str(info.value)
        assert info.value.fields == ("n",)
        assert await counts(host) == (0, 0, 0)


async def test_fifty_concurrent_increments_chain_without_gaps(sqlite_url: str) -> None:
    async with make_host(sqlite_url) as host:
        counters = host.entity("counter")
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(counters.mutate, "hot", increment)
        assert await counters.get("hot") == Counter(n=50)
        changes = await host.changes(kind="counter", entity_id="hot")
        assert len(changes) == 50
        for k, change in enumerate(changes, start=1):
            assert (change.prev or {}).get("n", 0) == k - 1
            assert change.next == {"n": k, "label": None, "tags": {}}


async def test_a_failing_unit_in_a_group_commit_rolls_back_alone(sqlite_url: str) -> None:
    async with make_host(sqlite_url) as host:
        counters = host.entity("counter")

        async def bad() -> None:
            with pytest.raises(InvalidEntityState):
                await counters.mutate("bad", lambda tx, prev: {"n": -1})

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(counters.mutate, f"c{i}", increment)
            tg.start_soon(bad)
        assert len(await counters.get_many([f"c{i}" for i in range(20)] + ["bad"])) == 20
        assert len(await host.changes(kind="counter")) == 20


async def test_reads_in_state_since_for_and_transition_count(sqlite_url: str) -> None:
    async with make_host(sqlite_url) as host:
        counters = host.entity("counter")
        assert await counters.in_state_since("x", "n") is None
        assert await counters.in_state_for("x", "n") == timedelta(0)
        await counters.mutate("x", lambda tx, prev: {"n": 1, "label": "up"})
        await counters.mutate("x", lambda tx, prev: {"n": 2, "label": "down"})
        await anyio.sleep(0.02)
        await counters.mutate("x", lambda tx, prev: {"n": 3, "label": "down"})
        changes = await host.changes(kind="counter", entity_id="x")
        assert await counters.in_state_since("x", "label") == changes[1].occurred_at
        assert await counters.in_state_since("x", "n") == changes[2].occurred_at
        assert await counters.in_state_for("x", "label") >= timedelta(seconds=0.02)
        assert await counters.transition_count("x", "n", timedelta(hours=1)) == 3
        assert await counters.transition_count("x", "label", timedelta(hours=1)) == 2
        assert await counters.get_many(["x", "nope"]) == {"x": Counter(n=3, label="down")}


async def test_unknown_kind_and_bad_ids_are_clear_errors(sqlite_url: str) -> None:
    async with make_host(sqlite_url) as host:
        with pytest.raises(UnknownEntityKind, match=r"'nope'.*counter, widget"):
            host.entity("nope")
        with pytest.raises(InvalidEntityState, match="'' is empty: expected printable text"):
            await host.entity("counter").mutate("", increment)


async def test_mutate_in_joins_the_callers_unit_of_work(sqlite_url: str) -> None:
    async with make_host(sqlite_url) as host:
        counters = host.entity("counter")

        def two(tx):  # type: ignore[no-untyped-def]
            counters.mutate_in(tx, "a", increment)
            counters.mutate_in(tx, "b", increment)
            raise Failing("after both")

        with pytest.raises(Failing):
            await host.run(two)
        assert await counters.get_many(["a", "b"]) == {}
        assert await counts(host) == (0, 0, 0)


async def test_empty_and_non_finite_states(sqlite_url: str) -> None:
    from pydantic import BaseModel

    from reactive_core import hookimpl

    class Reading(BaseModel):
        value: float | None = None

    class Readings:
        name = "readings"

        @hookimpl
        def reactive_register(self, registry):  # type: ignore[no-untyped-def]
            registry.define_entity("reading", state=Reading)

    async with Host(database_url=sqlite_url, plugins=[Readings()], entry_points=False,
                    config={"run_jobs": False}) as host:
        readings = host.entity("reading")
        await readings.mutate("r", lambda tx, prev: Reading())  # exists, no non-null field
        (created,) = await host.changes()
        assert created.next == {"value": None} and created.changed_fields == ()
        # NaN and infinity cannot be stored faithfully (JSON has neither): refused.
        for bad in (float("nan"), float("inf"), float("-inf")):
            with pytest.raises(InvalidEntityState, match="field value: NaN and infinity"):
                await readings.mutate("r", lambda tx, prev, v=bad: Reading(value=v))
        assert len(await host.changes()) == 1
        await readings.mutate("r", lambda tx, prev: Reading(value=1.5))
        rows = await host.transitions(field="value")
        assert [(r.from_value, r.to_value) for r in rows] == [(None, "1.5")]
        assert await readings.get("r") == Reading(value=1.5)
        await readings.remove("r")
        assert (await host.changes())[-1].changed_fields == ("value",)


async def test_cancelled_writers_never_strand_the_writer_or_lose_consistency(
    sqlite_url: str,
) -> None:
    async with make_host(sqlite_url) as host:
        counters = host.entity("counter")
        async with anyio.create_task_group() as tg:
            for i in range(30):
                tg.start_soon(counters.mutate, f"c{i}", increment)
            await anyio.sleep(0.001)
            tg.cancel_scope.cancel()
        with anyio.fail_after(5):
            await counters.mutate("after", increment)
        states = await counters.get_many([f"c{i}" for i in range(30)] + ["after"])
        changes = await host.changes(kind="counter")
        # Whatever committed is logged exactly once; nothing is logged that did not commit.
        assert sorted(c.id for c in changes) == sorted(states)
        assert all(state.n == 1 for state in states.values())


async def test_in_state_since_many_answers_like_in_state_since_one_by_one(
        sqlite_url: str) -> None:
    async with Host(database_url=sqlite_url, plugins=[CorePlugin()],
                    entry_points=False) as host:
        handle = host.entity("counter")
        for entity_id in ("a", "b", "a", "c", "a"):
            await handle.mutate(entity_id, increment)
        ids = ["a", "b", "c", "missing"]
        many = await host.read(handle.in_state_since_many_in, ids, "n")
        one = {i: await handle.in_state_since(i, "n") for i in ids[:3]}
        assert many == one and set(many) == {"a", "b", "c"}


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-01-01 00:00:00.000001", datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
    ("2024-01-01 00:00:00", datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01 00:00:00.00000Z", datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01T00:00:00.0+0100", datetime(2023, 12, 31, 23, 0, tzinfo=UTC)),
    ("2024-01-01 02:00:00+02:00", datetime(2024, 1, 1, tzinfo=UTC)),
])
def test_stored_timestamps_read_back_as_aware_utc(text: str, expected: datetime) -> None:
    parsed = stored_time(text)
    assert parsed == expected and parsed.utcoffset() == timedelta(0)
    aware = datetime(2024, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))
    assert stored_time(aware) == datetime(2024, 1, 1, tzinfo=UTC)


async def test_change_ids_are_time_ordered_uuids(sqlite_url: str) -> None:
    import uuid

    async with make_host(sqlite_url) as host:
        for i in range(20):
            await host.entity("counter").mutate(f"c{i % 3}", increment)
        ids = [c.change_id for c in await host.changes()]
    parsed = [uuid.UUID(change_id) for change_id in ids]
    assert all(u.version == 7 and str(u) == change_id for u, change_id in zip(parsed, ids, strict=True))
    assert len(set(ids)) == 20
    # Version 7 starts with the time in milliseconds: later changes never sort before.
    stamps = [u.int >> 80 for u in parsed]
    assert stamps == sorted(stamps)
