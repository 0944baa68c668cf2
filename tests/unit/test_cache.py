"""Tests for the read-through cache in ``reactive_core._cache``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
import pytest

from reactive_core._cache import CacheEntry, MemoryCacheStore, ReadThroughCache

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """Run the async tests on asyncio only."""
    return "asyncio"


class FakeClock:
    """Manually advanced clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class GatedLoader:
    """Loader that counts calls and blocks until released."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.calls = 0
        self.started = anyio.Event()
        self.release = anyio.Event()
        self.error: Exception | None = None

    async def __call__(self) -> str:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return self.value


def returning(value: str, calls: list[str] | None = None) -> Callable[[], Awaitable[str]]:
    """Return a loader yielding ``value`` and recording each call in ``calls``."""

    async def load() -> str:
        if calls is not None:
            calls.append(value)
        return value

    return load


class BrokenStore:
    """Store that raises on every call."""

    def get(self, key: str) -> CacheEntry[str] | None:
        raise ConnectionError("store down")

    def set(self, key: str, entry: CacheEntry[str]) -> None:
        raise ConnectionError("store down")

    def delete(self, key: str) -> None:
        raise ConnectionError("store down")

    def delete_prefix(self, prefix: str) -> None:
        raise ConnectionError("store down")


class UndeletableStore(MemoryCacheStore[str]):
    """Memory store whose deletes fail until ``deletes_fail`` is cleared."""

    def __init__(self) -> None:
        super().__init__()
        self.deletes_fail = True

    def delete(self, key: str) -> None:
        if self.deletes_fail:
            raise ConnectionError("delete failed")
        super().delete(key)

    def delete_prefix(self, prefix: str) -> None:
        if self.deletes_fail:
            raise ConnectionError("delete failed")
        super().delete_prefix(prefix)


async def test_hit_does_not_call_loader() -> None:
    cache: ReadThroughCache[str] = ReadThroughCache()
    calls: list[str] = []

    assert await cache.get("k", returning("a", calls)) == "a"
    assert await cache.get("k", returning("b", calls)) == "a"
    assert calls == ["a"]


async def test_concurrent_misses_share_one_load() -> None:
    cache: ReadThroughCache[str] = ReadThroughCache()
    loader = GatedLoader("v")
    results: list[str] = []

    async def reader() -> None:
        results.append(await cache.get("k", loader))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        assert loader.calls == 1
        loader.release.set()

    assert results == ["v"] * 10
    assert loader.calls == 1
    assert await cache.get("k", returning("other")) == "v"


async def test_failed_load_reaches_all_waiters_and_is_not_cached() -> None:
    cache: ReadThroughCache[str] = ReadThroughCache()
    loader = GatedLoader("v")
    loader.error = RuntimeError("boom")
    errors: list[BaseException] = []

    async def reader() -> None:
        try:
            await cache.get("k", loader)
        except RuntimeError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        loader.release.set()

    assert len(errors) == 5
    assert all(exc is loader.error for exc in errors)
    assert loader.calls == 1

    calls: list[str] = []
    assert await cache.get("k", returning("recovered", calls)) == "recovered"
    assert calls == ["recovered"]


async def test_invalidate_during_load_does_not_store_stale_value() -> None:
    cache: ReadThroughCache[str] = ReadThroughCache()
    loader = GatedLoader("old")
    first: list[str] = []

    async def reader() -> None:
        first.append(await cache.get("k", loader))

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await loader.started.wait()
        cache.invalidate("k")
        loader.release.set()

    assert first == ["old"]
    calls: list[str] = []
    assert await cache.get("k", returning("new", calls)) == "new"
    assert calls == ["new"]
    assert await cache.get("k", returning("unused", calls)) == "new"


async def test_get_after_invalidate_starts_new_load_and_old_load_cannot_overwrite() -> None:
    cache: ReadThroughCache[str] = ReadThroughCache()
    stale = GatedLoader("old")
    fenced_result: list[str] = []

    async def reader() -> None:
        fenced_result.append(await cache.get("k", stale))

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await stale.started.wait()
        cache.invalidate("k")
        with anyio.fail_after(1):
            assert await cache.get("k", returning("new")) == "new"
        stale.release.set()

    assert fenced_result == ["old"]
    assert await cache.get("k", returning("unused")) == "new"


async def test_prefix_invalidation_fences_key_never_invalidated_before() -> None:
    cache: ReadThroughCache[str] = ReadThroughCache()
    assert await cache.get("system:43:health", returning("43-old")) == "43-old"
    loader = GatedLoader("42-old")
    first: list[str] = []

    async def reader() -> None:
        first.append(await cache.get("system:42:health", loader))

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await loader.started.wait()
        cache.invalidate_prefix("system:42:")
        loader.release.set()

    assert first == ["42-old"]
    assert await cache.get("system:42:health", returning("42-new")) == "42-new"
    assert await cache.get("system:43:health", returning("unused")) == "43-old"


async def test_prefix_invalidation_drops_cached_entries_under_prefix_only() -> None:
    store: MemoryCacheStore[str] = MemoryCacheStore()
    cache: ReadThroughCache[str] = ReadThroughCache(store=store)
    for key in ("system:1:health", "system:1:slo", "system:2:health"):
        await cache.get(key, returning(f"{key}-old"))

    cache.invalidate_prefix("system:1:")

    assert len(store) == 1
    assert await cache.get("system:1:health", returning("fresh")) == "fresh"
    assert await cache.get("system:1:slo", returning("fresh")) == "fresh"
    assert await cache.get("system:2:health", returning("unused")) == "system:2:health-old"


async def test_invalidate_many_drops_each_key() -> None:
    cache: ReadThroughCache[str] = ReadThroughCache()
    for key in ("a", "b", "c"):
        await cache.get(key, returning("old"))

    cache.invalidate_many(["a", "b"])

    assert await cache.get("a", returning("new")) == "new"
    assert await cache.get("b", returning("new")) == "new"
    assert await cache.get("c", returning("new")) == "old"


async def test_entries_expire_after_ttl() -> None:
    clock = FakeClock()
    cache: ReadThroughCache[str] = ReadThroughCache(ttl=10.0, clock=clock)
    calls: list[str] = []
    await cache.get("k", returning("first", calls))

    clock.now += 9.99
    assert await cache.get("k", returning("second", calls)) == "first"
    clock.now += 0.01
    assert await cache.get("k", returning("second", calls)) == "second"
    assert calls == ["first", "second"]


async def test_ttl_none_never_expires() -> None:
    clock = FakeClock()
    cache: ReadThroughCache[str] = ReadThroughCache(ttl=None, clock=clock)
    await cache.get("k", returning("first"))

    clock.now += 1e9
    assert await cache.get("k", returning("second")) == "first"


def test_negative_ttl_is_rejected() -> None:
    with pytest.raises(ValueError, match="ttl"):
        ReadThroughCache(ttl=-1.0)


async def test_broken_store_falls_back_to_loader(caplog: pytest.LogCaptureFixture) -> None:
    cache: ReadThroughCache[str] = ReadThroughCache(store=BrokenStore())
    calls: list[str] = []

    with caplog.at_level(logging.WARNING, logger="reactive_core.cache"):
        assert await cache.get("k", returning("a", calls)) == "a"
        assert await cache.get("k", returning("b", calls)) == "b"
        cache.invalidate("k")
        cache.invalidate_prefix("k")

    assert calls == ["a", "b"]
    records = [r for r in caplog.records if r.name == "reactive_core.cache"]
    assert records and all(r.levelno == logging.WARNING for r in records)
    assert any("read failed" in r.getMessage() for r in records)
    assert any("write failed" in r.getMessage() for r in records)
    assert any("delete failed" in r.getMessage() for r in records)


async def test_broken_store_still_single_flights() -> None:
    cache: ReadThroughCache[str] = ReadThroughCache(store=BrokenStore())
    loader = GatedLoader("v")
    results: list[str] = []

    async def reader() -> None:
        results.append(await cache.get("k", loader))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        loader.release.set()

    assert results == ["v"] * 3
    assert loader.calls == 1


async def test_invalidate_with_failing_delete_fences_cached_entry() -> None:
    store = UndeletableStore()
    cache: ReadThroughCache[str] = ReadThroughCache(store=store)
    await cache.get("k", returning("old"))

    cache.invalidate("k")

    assert store.get("k") is not None
    assert await cache.get("k", returning("new")) == "new"
    assert await cache.get("k", returning("unused")) == "new"


async def test_invalidate_with_failing_delete_fences_load_in_flight() -> None:
    store = UndeletableStore()
    cache: ReadThroughCache[str] = ReadThroughCache(store=store)
    loader = GatedLoader("old")
    first: list[str] = []

    async def reader() -> None:
        first.append(await cache.get("k", loader))

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await loader.started.wait()
        cache.invalidate("k")
        loader.release.set()

    assert first == ["old"]
    assert store.get("k") is None
    assert await cache.get("k", returning("new")) == "new"


async def test_prefix_invalidate_with_failing_delete_fences_cached_entries() -> None:
    store = UndeletableStore()
    cache: ReadThroughCache[str] = ReadThroughCache(store=store)
    await cache.get("system:1:health", returning("old"))
    await cache.get("system:2:health", returning("other"))

    cache.invalidate_prefix("system:1:")

    assert await cache.get("system:1:health", returning("new")) == "new"
    assert await cache.get("system:1:health", returning("unused")) == "new"
    assert await cache.get("system:2:health", returning("unused")) == "other"


async def test_failed_delete_tombstones_are_bounded_and_expire() -> None:
    clock = FakeClock()
    store = UndeletableStore()
    cache: ReadThroughCache[str] = ReadThroughCache(ttl=10.0, store=store, clock=clock)
    await cache.get("k0", returning("old"))

    cache.invalidate_many(f"k{i}" for i in range(5000))

    assert len(cache._key_tombstones) + len(cache._prefix_tombstones) <= 1025
    assert await cache.get("k0", returning("new")) == "new"

    clock.now += 10.0
    assert await cache.get("k1", returning("fresh")) == "fresh"
    assert not cache._key_tombstones and not cache._prefix_tombstones


async def test_successful_delete_clears_tombstone() -> None:
    store = UndeletableStore()
    cache: ReadThroughCache[str] = ReadThroughCache(ttl=None, store=store)
    cache.invalidate("a")
    cache.invalidate_prefix("p:")
    assert cache._key_tombstones and cache._prefix_tombstones

    store.deletes_fail = False
    cache.invalidate_prefix("")

    assert not cache._key_tombstones and not cache._prefix_tombstones


async def test_cancelled_loader_caller_hands_load_to_a_waiter() -> None:
    cache: ReadThroughCache[str] = ReadThroughCache()
    stuck = GatedLoader("never")
    waiter_result: list[str] = []

    async def waiter() -> None:
        waiter_result.append(await cache.get("k", returning("from-waiter")))

    async with anyio.create_task_group() as tg, anyio.create_task_group() as leader_tg:
        leader_tg.start_soon(cache.get, "k", stuck)
        await stuck.started.wait()
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        leader_tg.cancel_scope.cancel()

    assert waiter_result == ["from-waiter"]
    assert await cache.get("k", returning("unused")) == "from-waiter"
