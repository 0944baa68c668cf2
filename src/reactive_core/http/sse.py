"""`GET /api/events`: the change log as a server-sent event stream.

Each change is one event, `id: <seq>`, `event: change`, `data: <change JSON>`. A client
that reconnects with `Last-Event-ID` (or `?after=SEQ`) gets every change after that seq
and then the live ones: nothing missed, nothing twice, in seq order. The stream always
reads the change log by seq; a commit only says "look now" (a broadcast subscription,
held while some stream is open), and a poll every second is the backstop.

On PostgreSQL a seq is taken before its transaction commits, so a lower seq can become
visible after a higher one. A stream therefore sends a seq only once it is *settled*:
every transaction that could still hold a lower seq has ended (its snapshot's `xmin`
has passed the `xmax` the stream saw after the seq was visible). On SQLite writes are
serialized and every visible seq is settled.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import Connection, text

from .._entities.changes import EntityChange
from .._entities.logs import head_seq, read_changes
from . import problems
from .auth import ReadAccess, host_of
from .schemas import ChangeOut

if TYPE_CHECKING:
    from .._host.host import Host

KEEP_ALIVE_SECONDS = 15.0
"""A comment line at least this often, so proxies keep an idle stream open."""
POLL_SECONDS = 1.0
"""The longest a stream waits without looking at the log (wake-ups come sooner)."""
SETTLE_SECONDS = 0.2
"""How often a stream looks again while a seq it has seen is not settled yet."""
PAGE = 500
"""Changes read from the log at a time."""

router = APIRouter(tags=["logs"])


class ChangeSignal:
    """Wakes the open streams of one app when a change is committed.

    While at least one stream is open it holds a broadcast subscription to every kind
    (the host's feed calls it after each commit, of this instance or, through the
    database, of another); the last stream to close drops them again.
    """

    def __init__(self, host: Host) -> None:
        self._host = host
        self._event = anyio.Event()
        self._streams = 0
        self._unsubscribe: list[Callable[[], None]] = []

    def current(self) -> anyio.Event:
        """The event the next change sets (take it *before* reading the log)."""
        return self._event

    async def _changed(self, _change: EntityChange) -> None:
        self._event.set()
        self._event = anyio.Event()

    def attach(self) -> None:
        """A stream opens."""
        self._streams += 1
        if self._streams == 1:
            registry = self._host.registry
            self._unsubscribe = [registry.on_entity_changed(kind, self._changed)
                                 for kind in registry.kinds]

    def detach(self) -> None:
        """A stream closes."""
        self._streams -= 1
        if self._streams == 0:
            for unsubscribe in self._unsubscribe:
                unsubscribe()
            self._unsubscribe = []


def signal_of(request: Request) -> ChangeSignal:
    """The app's `ChangeSignal` (made on first use)."""
    state = request.app.state
    signal: ChangeSignal | None = getattr(state, "change_signal", None)
    if signal is None:
        signal = state.change_signal = ChangeSignal(host_of(request))
    return signal


_PG_HEAD = text(
    "SELECT pg_snapshot_xmin(s)::text AS xmin, pg_snapshot_xmax(s)::text AS xmax, "
    "(SELECT COALESCE(MAX(seq), 0) FROM entity_changes) AS head "
    "FROM (SELECT pg_current_snapshot() AS s) AS snap")


@dataclass(slots=True)
class LogCursor:
    """Where a stream stands in the change log: every matching change with a seq up to
    `position` was read; `pending` are heads seen on PostgreSQL and not settled yet, each
    with the `xmax` that settles it once known."""

    position: int
    kind: str | None = None
    entity_id: str | None = None
    postgres: bool = False
    pending: list[tuple[int, int | None]] = field(default_factory=list)

    def settled_head(self, tx: Connection) -> int:
        """The highest seq at or below which every change is visible and final."""
        if not self.postgres:
            return head_seq(tx)
        row = tx.execute(_PG_HEAD).one()
        xmin, xmax, head = int(row.xmin), int(row.xmax), int(row.head)
        settled = 0
        kept: list[tuple[int, int | None]] = []
        for seen, bound in self.pending:
            # The bound is taken one look after the head was seen, so a transaction that
            # took its seq just before that head got its transaction id before the bound.
            bound = xmax if bound is None else bound
            if xmin >= bound:
                settled = max(settled, seen)
            else:
                kept.append((seen, bound))
        if head > max([settled, self.position, *(seen for seen, _ in kept)]):
            kept.append((head, None))
        self.pending = kept
        return settled

    def next_page(self, tx: Connection) -> list[EntityChange]:
        """The next settled changes after `position` (at most `PAGE`), oldest first."""
        settled = self.settled_head(tx)
        if settled <= self.position:
            return []
        raw = read_changes(tx, kind=self.kind, entity_id=self.entity_id,
                           after_seq=self.position, limit=PAGE)
        page = [c for c in raw if c.seq <= settled]
        if len(raw) == PAGE and raw[-1].seq <= settled:
            self.position = raw[-1].seq  # more follow: read on at once
        else:
            self.position = max(self.position, settled)
        return page

    @property
    def settling(self) -> bool:
        """Whether a seen head waits to be settled (look again soon)."""
        return bool(self.pending)


def event_of(change: EntityChange) -> bytes:
    """One change as a server-sent event."""
    data = ChangeOut.of(change).model_dump_json()
    return f"id: {change.seq}\nevent: change\ndata: {data}\n\n".encode()


class ChangeHub:
    """One reader of the change log for every open stream of an app.

    It tails the log (settled seqs only, see `LogCursor`) while some stream is open and
    keeps the newest `RING` changes, each encoded once; a stream that is caught up takes
    its events from here (filtered by its kind and id), so 50 streams cost one read and
    one encoding per change, not 50. A stream further behind than the ring reads the log
    itself until it reaches the ring.
    """

    RING = 10_000

    def __init__(self, host: Host, signal: ChangeSignal) -> None:
        self._host = host
        self._signal = signal
        self._ring: deque[tuple[EntityChange, bytes]] = deque(maxlen=self.RING)
        self.floor = 0
        """Every change above `floor` and up to `position` is in the ring."""
        self._cursor: LogCursor | None = None
        self._event = anyio.Event()
        self._streams = 0
        self._running = False
        self._published = 0
        """The position streams see: moved only once the ring holds what it covers (the
        cursor itself moves inside the read, in a worker thread, before that)."""

    @property
    def position(self) -> int:
        """Every change up to here is in the ring (or was, before `floor`)."""
        return self._published

    def current(self) -> anyio.Event:
        """Set when the hub has read more changes (take it before asking `since`)."""
        return self._event

    async def attach(self) -> None:
        self._streams += 1
        self._signal.attach()
        if not self._running:
            self._running = True
            head = await self._host.read(head_seq)
            self._ring.clear()
            self._cursor = LogCursor(position=head, postgres=self._host.dialect == "postgresql")
            self.floor = self._published = head
            self._host.task_group.start_soon(self._run)

    def detach(self) -> None:
        self._streams -= 1
        self._signal.detach()

    async def _run(self) -> None:
        host, cursor = self._host, self._cursor
        assert cursor is not None
        try:
            while self._streams > 0 and host.running:
                wake = self._signal.current()
                page = await host.read(cursor.next_page)
                if page:
                    if len(page) + len(self._ring) > self.RING:
                        dropped = len(page) + len(self._ring) - self.RING
                        self.floor = (list(self._ring)[dropped - 1][0].seq
                                      if dropped <= len(self._ring) else page[0].seq - 1)
                    self._ring.extend((change, event_of(change)) for change in page)
                    self._published = cursor.position
                    self._event.set()
                    self._event = anyio.Event()
                    continue
                self._published = cursor.position  # past seqs no change holds
                self._event.set()
                self._event = anyio.Event()
                with anyio.move_on_after(SETTLE_SECONDS if cursor.settling else POLL_SECONDS):
                    await wake.wait()
        finally:
            self._running = False
            self._event.set()
            if self._streams > 0 and host.running:  # one attached as it was stopping
                self._running = True
                host.task_group.start_soon(self._run)

    def since(self, position: int, kind: str | None,
              entity_id: str | None) -> tuple[list[bytes], int] | None:
        """The encoded events after `position` the ring holds for this filter, and the
        position they bring the stream to; None when `position` is older than the ring."""
        if not self._running or position < self.floor:
            return None
        found: list[bytes] = []
        for change, data in reversed(self._ring):  # only what is newer than `position`
            if change.seq <= position:
                break
            if (kind is None or change.kind == kind) and (
                    entity_id is None or change.id == entity_id):
                found.append(data)
        found.reverse()
        return found, max(position, self.position)


def hub_of(request: Request) -> ChangeHub:
    """The app's `ChangeHub` (made on first use)."""
    state = request.app.state
    hub: ChangeHub | None = getattr(state, "change_hub", None)
    if hub is None:
        hub = state.change_hub = ChangeHub(host_of(request), signal_of(request))
    return hub


async def follow(host: Host, hub: ChangeHub, cursor: LogCursor,
                 *, keep_alive: float = KEEP_ALIVE_SECONDS) -> AsyncIterator[bytes]:
    """Every change after the cursor, then each new one, until the host stops (or the
    client goes away and the response is cancelled). Events come in batches: one write
    per batch."""
    await hub.attach()
    try:
        yield f": changes after seq {cursor.position}\n\n".encode()
        quiet_since = time.monotonic()
        while host.running:
            wake = hub.current()
            shared = hub.since(cursor.position, cursor.kind, cursor.entity_id)
            if shared is None:  # behind the hub: read the log until caught up
                page = await host.read(cursor.next_page)
                batch = [event_of(change) for change in page]
            else:
                batch, cursor.position = shared
                cursor.pending.clear()
            if batch:
                yield b"".join(batch)
                quiet_since = time.monotonic()
                continue
            if shared is None and cursor.position < hub.floor:
                continue  # more history to read
            wait = min(POLL_SECONDS, max(quiet_since + keep_alive - time.monotonic(), 0.0))
            with anyio.move_on_after(wait):
                await wake.wait()
            if time.monotonic() - quiet_since >= keep_alive:
                yield b": keep-alive\n\n"
                quiet_since = time.monotonic()
    finally:
        hub.detach()


@router.get("/api/events", summary="The change log as server-sent events",
            response_class=StreamingResponse, response_model=None,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`id: <seq>`, `event: change`, `data: <change>` "
                                            "per change; comment lines keep the stream "
                                            "open"}})
async def events(
    request: Request, _access: ReadAccess,
    kind: Annotated[str | None, Query(max_length=200, description="only this kind")] = None,
    id: Annotated[str | None, Query(max_length=300,
                                    description="only the entity with this id")] = None,
    after: Annotated[int | None, Query(ge=0, description="changes after this seq")] = None,
    last_event_id: Annotated[str | None, Header(
        alias="Last-Event-ID", description="resume after this seq (wins over `after`)",
    )] = None,
) -> Response:
    """The changes with a seq above `Last-Event-ID` (or `after`), then live ones; with
    neither, the changes committed from now on."""
    host = host_of(request)
    if last_event_id is not None:
        if not last_event_id.strip().isdigit():
            return problems.problem(
                422, "Invalid request", f"header Last-Event-ID: expected the seq of a change "
                f"(a whole number), received {last_event_id[:40]!r}", kind="invalid-request",
                errors=[{"field": "header.Last-Event-ID", "message": "expected a whole number"}])
        after = int(last_event_id)
    cursor = LogCursor(position=0, kind=kind, entity_id=id,
                       postgres=host.dialect == "postgresql")
    cursor.position = await host.read(head_seq) if after is None else after
    return StreamingResponse(
        follow(host, hub_of(request), cursor), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
