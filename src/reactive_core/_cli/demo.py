"""`reactive demo`: a short, self-contained run of whatever the loaded plugins show.

The core knows no plugin: each plugin contributes `DemoStep`s (hook
`reactive_demo_steps`) — the catalog declares and deletes systems, the health plugin
runs checks against a flaky local target — and the demo runs them in `order` on one
host, on a temporary SQLite file unless told otherwise. Meanwhile a broadcast
subscriber of the core counts every change and its derived triggers; a summary ends
the run: each step's own lines, then changes, transitions, deliveries and triggers.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .._entities.changes import EntityChange
from .._errors import ReactiveCoreError
from . import tables

if TYPE_CHECKING:
    from .._host.host import Host

T = TypeVar("T")


class DemoOutputClosed(ReactiveCoreError):
    """Whoever read the demo's output went away (`reactive demo | head`): stop quietly."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoStep:
    """A part of `reactive demo` a plugin tells.

    `run(ctx)` tells it (printing through `ctx`) and returns False when its story did
    not complete (the demo then exits 1); `summary(ctx)` may add lines to the summary.
    Steps run by ascending `order` (the catalog uses 10, health 20).
    """

    title: str
    order: int
    run: Callable[[DemoContext], Awaitable[bool]]
    summary: Callable[[DemoContext], Awaitable[list[str]]] | None = None


class DemoContext:
    """What a demo step works with: the host, the output, the pace, and cleanup."""

    def __init__(self, *, host: Host, seconds: float, stack: AsyncExitStack) -> None:
        self.host = host
        self.seconds = max(seconds, 0.0)
        """About how long the whole demo should take (`--seconds`; 0: as fast as it goes)."""
        self._stack = stack
        self.closed = False

    def line(self, text: str = "") -> None:
        """Print `text` (may hold several lines) at once and flush."""
        if self.closed:
            return
        try:
            print(text, flush=True)
        except BrokenPipeError:
            self.closed = True

    def check_open(self) -> None:
        """Raise `DemoOutputClosed` once nobody reads the output any more."""
        if self.closed:
            raise DemoOutputClosed("the demo's output was closed")

    async def step(self, title: str, *, pause: float = 0.0) -> None:
        """Wait for what the last step caused to be handled, pause, print a heading."""
        await self.host.drain()
        self.check_open()
        await anyio.sleep(pause)
        self.line()
        self.line(f"== {title}")

    async def enter(self, manager: AbstractAsyncContextManager[T]) -> T:
        """Enter `manager` for the rest of the demo (left when the demo ends)."""
        return await self._stack.enter_async_context(manager)

    def callback(self, fn: Callable[[], Any]) -> None:
        """Call `fn` when the demo ends."""
        self._stack.callback(fn)

    # Formatting shared with the CLI listings.
    arrow = staticmethod(tables.arrow)
    ellipsis = staticmethod(tables.ellipsis)
    fmt_value = staticmethod(tables.fmt_value)
    table = staticmethod(tables.render_table)

    @staticmethod
    def json(value: Any) -> str:
        """`value` as one line of JSON, readable (`{"a": 1, "b": [2]}`)."""
        return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)


class _Tally:
    """The core's own broadcast subscriber: changes and derived triggers, by kind."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self.changes: Counter[str] = Counter()
        self.triggers: defaultdict[str, Counter[str]] = defaultdict(Counter)

    async def on_change(self, change: EntityChange) -> None:
        self.changes[change.kind] += 1
        self.triggers[change.kind].update(self._host.derive_triggers(change))


async def run_demo(*, host_factory: Callable[[str], Host], database_url: str | None,
                   seconds: float) -> int:
    """Run every loaded plugin's demo steps on a host from `host_factory(url)`.

    Without `database_url`, on a temporary SQLite file removed afterwards. Returns 0,
    or 1 when a step's story did not complete.
    """
    async with AsyncExitStack() as stack:
        if database_url is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="reactive-demo-"))
            database_url = f"sqlite:///{Path(folder) / 'demo.db'}"
        host = host_factory(database_url)
        host.load_plugins()
        steps = sorted((step for steps in host.hook.reactive_demo_steps() for step in steps),
                       key=lambda s: s.order)
        tally = _Tally(host)
        for kind in host.registry.kinds:
            host.registry.on_entity_changed(kind, tally.on_change)
        ctx = DemoContext(host=host, seconds=seconds, stack=stack)
        # In the stack too: what steps enter later is left before the host stops.
        await stack.enter_async_context(host)
        try:
            return await _tell(ctx, steps, tally)
        except DemoOutputClosed:
            return 0
    return 0


async def _tell(ctx: DemoContext, steps: Sequence[DemoStep], tally: _Tally) -> int:
    host = ctx.host
    ctx.line(f"reactive demo on {tables.display_url(host.database_url)}")
    ctx.line(f"plugins: {', '.join(host.plugin_names)}; host {host.instance_id}")
    if not steps:
        ctx.line("no loaded plugin has a demo to show")
    status = 0
    for step in steps:
        if not await step.run(ctx):
            status = 1
    await ctx.step("summary")
    for step in steps:
        if step.summary is not None:
            for line in await step.summary(ctx):
                ctx.line(line)
    deliveries = await host.deliveries(limit=100_000)
    statuses = Counter(d.status.value for d in deliveries)
    transitions = await host.transitions()
    ctx.line("changes: " + (", ".join(f"{n} {kind}" for kind, n in tally.changes.items())
                            or "none") + f"; transitions: {len(transitions)}")
    ctx.line(f"deliveries: {len(deliveries)} "
             f"({', '.join(f'{n} {s}' for s, n in sorted(statuses.items())) or 'none'})")
    lines = [", ".join(f"{t} x{n}" for t, n in counter.items())
             for counter in tally.triggers.values() if counter]
    ctx.line("triggers: " + ("\n          ".join(lines) or "none"))
    return status
