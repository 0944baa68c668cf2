"""Read-through cache with single-flight loads and race-safe invalidation.

The cache backs read APIs such as "health status of system X" whose results
must be dropped whenever the underlying entity changes.  Writers follow the
*invalidate before notify* rule: once a write has committed, call
:meth:`ReadThroughCache.invalidate` (or :meth:`~ReadThroughCache.invalidate_prefix`
/ :meth:`~ReadThroughCache.invalidate_many`) for every affected key *before*
notifying subscribers.  A subscriber that re-reads on notification then
never receives the pre-write value from the cache.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar, cast

import anyio

__all__ = ["CacheEntry", "CacheStore", "MemoryCacheStore", "ReadThroughCache"]

V = TypeVar("V")

_log = logging.getLogger("reactive_core.cache")

_MAX_TOMBSTONES = 1024


@dataclass(frozen=True, slots=True)
class CacheEntry(Generic[V]):
    """A cached value with its expiry deadline and the epoch it was loaded at.

    ``expires_at`` is a reading of the cache's clock (``None`` = never) and
    ``epoch`` is the cache generation captured when the load started.  Both
    are meaningful only to the :class:`ReadThroughCache` instance that wrote
    the entry; stores keep entries opaquely.
    """

    value: V
    expires_at: float | None
    epoch: int


class CacheStore(Protocol[V]):
    """Synchronous key/value storage behind a :class:`ReadThroughCache`.

    Any method may raise; the cache logs the error and falls back to the
    loader, so an unavailable store degrades to uncached reads.
    """

    def get(self, key: str) -> CacheEntry[V] | None:
        """Return the entry stored under ``key``, or ``None``."""
        ...

    def set(self, key: str, entry: CacheEntry[V]) -> None:
        """Store ``entry`` under ``key``, replacing any previous entry."""
        ...

    def delete(self, key: str) -> None:
        """Remove the entry under ``key`` if present."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove every entry whose key starts with ``prefix``."""
        ...


class MemoryCacheStore(Generic[V]):
    """In-process :class:`CacheStore` backed by a dict.

    Expired entries are not swept; they are replaced on the next load of
    their key or removed by invalidation.
    """

    def __init__(self) -> None:
        """Create an empty store."""
        self._entries: dict[str, CacheEntry[V]] = {}

    def get(self, key: str) -> CacheEntry[V] | None:
        """Return the entry stored under ``key``, or ``None``."""
        return self._entries.get(key)

    def set(self, key: str, entry: CacheEntry[V]) -> None:
        """Store ``entry`` under ``key``."""
        self._entries[key] = entry

    def delete(self, key: str) -> None:
        """Remove the entry under ``key`` if present."""
        self._entries.pop(key, None)

    def delete_prefix(self, prefix: str) -> None:
        """Remove every entry whose key starts with ``prefix``."""
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]

    def __len__(self) -> int:
        """Return the number of stored entries, expired ones included."""
        return len(self._entries)


@dataclass(eq=False, slots=True)
class _Flight(Generic[V]):
    """One running load that concurrent callers for the same key share."""

    key: str
    epoch: int
    done: anyio.Event = field(default_factory=anyio.Event)
    fenced: bool = False
    abandoned: bool = False
    value: V | None = None
    error: Exception | None = None


@dataclass(frozen=True, slots=True)
class _Tombstone:
    """Invalidation whose store delete failed, so stale entries may remain."""

    epoch: int
    created_at: float


class ReadThroughCache(Generic[V]):
    """Async read-through cache with single-flight loads and epoch fencing.

    ``get(key, loader)`` returns a fresh cached value or runs ``loader``.
    Concurrent misses for one key share a single loader call; its result or
    exception reaches every waiter, and failures are never cached.  If the
    caller running the loader is cancelled, the remaining waiters retry and
    one of them runs its own loader.

    Invalidation bumps a generation counter (the epoch).  Every load captures
    the epoch when it starts; invalidating a key, or a prefix covering it,
    *fences* the loads in flight for it: they still return their value to
    the callers already waiting on them, but never store it, and later calls
    start a new load instead of joining them.  This covers keys that were
    never invalidated before and keys that are not cached at the moment.

    Writers must invalidate *before* notifying subscribers (see the module
    docstring), so a subscriber's re-read cannot be served the old value.

    Store errors never reach callers of :meth:`get`: they are logged as
    warnings on the ``reactive_core.cache`` logger and the loader's value is
    served.  If the store fails to delete on invalidation, the cache keeps a
    tombstone (the invalidation epoch) for the key or prefix and treats
    older entries beneath it as misses.  Tombstones are dropped when a later
    delete or overwrite succeeds or after ``ttl`` seconds (when every entry
    they fence has expired); beyond 1024 of them they collapse into one that
    fences every older entry.  Apart from tombstones the cache holds state
    only for loads in flight, so nothing grows per invalidated key.

    The cache belongs to one event loop and is not thread-safe; the
    invalidation methods are synchronous so they can run in any code path.
    """

    def __init__(
        self,
        *,
        ttl: float | None = 60.0,
        store: CacheStore[V] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create a cache whose entries expire ``ttl`` seconds after storing.

        ``ttl=None`` disables expiry.  ``clock`` supplies the time in seconds
        and defaults to :func:`time.monotonic`.
        """
        if ttl is not None and ttl < 0:
            raise ValueError(f"ttl must be non-negative or None, got {ttl!r}")
        self._ttl = ttl
        self._store: CacheStore[V] = store if store is not None else MemoryCacheStore()
        self._clock = clock
        self._epoch = 0
        self._flights: dict[str, _Flight[V]] = {}
        self._key_tombstones: dict[str, _Tombstone] = {}
        self._prefix_tombstones: dict[str, _Tombstone] = {}

    @property
    def ttl(self) -> float | None:
        """Seconds an entry stays fresh after it is stored (``None`` = forever)."""
        return self._ttl

    async def get(self, key: str, loader: Callable[[], Awaitable[V]]) -> V:
        """Return the fresh cached value for ``key``, loading it on a miss.

        Joins a load already in flight for ``key`` unless that load has been
        fenced by an invalidation.  Exceptions from ``loader`` propagate to
        every caller sharing the load.
        """
        while True:
            entry = self._read(key)
            if entry is not None:
                return entry.value
            flight = self._flights.get(key)
            if flight is None:
                return await self._load(key, loader)
            await flight.done.wait()
            if flight.abandoned:
                continue
            if flight.error is not None:
                raise flight.error
            return cast(V, flight.value)

    def invalidate(self, key: str) -> None:
        """Drop ``key`` and fence loads of it that are in flight."""
        epoch = self._bump()
        flight = self._flights.pop(key, None)
        if flight is not None:
            flight.fenced = True
        try:
            self._store.delete(key)
        except Exception:  # noqa: BLE001 - a failing store falls back to the loader
            _log.warning("cache delete failed for key %r; fencing it", key, exc_info=True)
            self._add_tombstone(self._key_tombstones, key, epoch)
        else:
            self._key_tombstones.pop(key, None)

    def invalidate_many(self, keys: Iterable[str]) -> None:
        """Invalidate each key in ``keys``."""
        for key in keys:
            self.invalidate(key)

    def invalidate_prefix(self, prefix: str) -> None:
        """Drop every key starting with ``prefix`` and fence their loads.

        Keys that are not cached, or were never invalidated before, are
        fenced as well; ``invalidate_prefix("")`` invalidates everything.
        """
        epoch = self._bump()
        for key in [k for k in self._flights if k.startswith(prefix)]:
            self._flights.pop(key).fenced = True
        try:
            self._store.delete_prefix(prefix)
        except Exception:  # noqa: BLE001 - a failing store falls back to the loader
            _log.warning("cache delete failed for prefix %r; fencing it", prefix, exc_info=True)
            self._add_tombstone(self._prefix_tombstones, prefix, epoch)
        else:
            for tombstones in (self._key_tombstones, self._prefix_tombstones):
                for covered in [k for k in tombstones if k.startswith(prefix)]:
                    del tombstones[covered]

    def _bump(self) -> int:
        """Advance and return the invalidation epoch."""
        self._epoch += 1
        return self._epoch

    async def _load(self, key: str, loader: Callable[[], Awaitable[V]]) -> V:
        """Run ``loader`` as the shared flight for ``key`` and store the result."""
        flight: _Flight[V] = _Flight(key=key, epoch=self._epoch)
        self._flights[key] = flight
        try:
            value = await loader()
        except Exception as exc:
            flight.error = exc
            raise
        except BaseException:
            flight.abandoned = True
            raise
        else:
            flight.value = value
            if not flight.fenced:
                self._write(key, CacheEntry(value, self._expiry(), flight.epoch))
            return value
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.done.set()

    def _expiry(self) -> float | None:
        """Return the deadline for an entry stored now."""
        return None if self._ttl is None else self._clock() + self._ttl

    def _read(self, key: str) -> CacheEntry[V] | None:
        """Return the stored entry for ``key`` if it is fresh, else ``None``."""
        self._prune_tombstones()
        try:
            entry = self._store.get(key)
        except Exception:  # noqa: BLE001 - a failing store must not fail an invalidation
            _log.warning("cache read failed for key %r; loading", key, exc_info=True)
            return None
        if entry is None:
            return None
        if entry.expires_at is not None and self._clock() >= entry.expires_at:
            return None
        if entry.epoch < self._fence_epoch(key):
            return None
        return entry

    def _write(self, key: str, entry: CacheEntry[V]) -> None:
        """Store ``entry``, logging instead of raising on failure."""
        try:
            self._store.set(key, entry)
        except Exception:  # noqa: BLE001 - a failing store must not fail an invalidation
            _log.warning("cache write failed for key %r", key, exc_info=True)
        else:
            self._key_tombstones.pop(key, None)

    def _fence_epoch(self, key: str) -> int:
        """Return the newest tombstone epoch covering ``key`` (0 if none)."""
        if not self._key_tombstones and not self._prefix_tombstones:
            return 0
        newest = 0
        tombstone = self._key_tombstones.get(key)
        if tombstone is not None:
            newest = tombstone.epoch
        for prefix, tombstone in self._prefix_tombstones.items():
            if tombstone.epoch > newest and key.startswith(prefix):
                newest = tombstone.epoch
        return newest

    def _add_tombstone(self, tombstones: dict[str, _Tombstone], name: str, epoch: int) -> None:
        """Record a failed delete, collapsing all tombstones past the bound."""
        now = self._clock()
        tombstones.pop(name, None)
        tombstones[name] = _Tombstone(epoch, now)
        self._prune_tombstones()
        if len(self._key_tombstones) + len(self._prefix_tombstones) > _MAX_TOMBSTONES:
            self._key_tombstones.clear()
            self._prefix_tombstones.clear()
            self._prefix_tombstones[""] = _Tombstone(epoch, now)

    def _prune_tombstones(self) -> None:
        """Drop tombstones old enough that every entry they fence has expired.

        Tombstones are kept in creation order, so pruning stops at the first
        one still needed.
        """
        if self._ttl is None or not (self._key_tombstones or self._prefix_tombstones):
            return
        cutoff = self._clock() - self._ttl
        for tombstones in (self._key_tombstones, self._prefix_tombstones):
            while tombstones:
                name, tombstone = next(iter(tombstones.items()))
                if tombstone.created_at > cutoff:
                    break
                del tombstones[name]
