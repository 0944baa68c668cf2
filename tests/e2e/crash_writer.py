"""Writer for test_crash: commits `e2e-tick` changes at a steady pace, handling none.

Usage: python crash_writer.py DATABASE_URL COUNT ENTITIES INTERVAL

Its host loads only the kind, not the `e2e-recorder` work queue: each change still
gets its delivery row because the `reactive serve` processes under test registered
that route in the database (the test starts one before the writer), and only they
handle it.
"""

from __future__ import annotations

import sys

import anyio
from e2e_plugins import TICK_KIND, Counted, TicksPlugin

from reactive_core import Host


def bump(_tx: object, prev: Counted | None) -> Counted:
    return Counted(n=(prev.n if prev else 0) + 1)


async def write(url: str, count: int, entities: int, interval: float) -> None:
    host = Host(database_url=url, plugins=[TicksPlugin()], entry_points=False,
                config={"run_jobs": False})
    async with host:
        ticks = host.entity(TICK_KIND)
        for i in range(count):
            await ticks.mutate(f"t{i % entities}", bump)
            if (i + 1) % 25 == 0:
                print(f"committed {i + 1}", flush=True)
            await anyio.sleep(interval)
    print(f"done {count}", flush=True)


if __name__ == "__main__":
    url, count, entities, interval = sys.argv[1:5]
    anyio.run(write, url, int(count), int(entities), float(interval))
