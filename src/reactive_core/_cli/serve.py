"""How `reactive serve` ends when stopping takes too long: a second signal, or work stuck
in a thread past the shutdown deadline, exits at once with status 3, leases handed
back first."""

from __future__ import annotations

import os
import signal
import sys
import threading

from .._host.host import Host
from .commands import EXIT_ABANDONED

FORCE_GRACE_SECONDS = 2.0
"""How long past its shutdown deadline `serve` waits for cancelled work before it exits."""


class ForcedExit:
    """While a host stops: a second signal, or the deadline passing with a handler that
    cannot be cancelled (stuck in a thread), ends the process — leases released first,
    exit status 3."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self._lock = threading.Lock()

    def arm(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: self.force("a second signal"))
        # The host cancels what still runs at its deadline; a thread it cannot cancel
        # gets a little longer, then the process goes without it.
        deadline = self._host.config.shutdown_timeout_seconds + FORCE_GRACE_SECONDS
        timer = threading.Timer(deadline, self.force, args=("the shutdown deadline",))
        timer.daemon = True
        timer.start()

    def force(self, why: str) -> None:
        if not self._lock.acquire(blocking=False):
            return
        try:
            running = [*(f"delivery {d.id} ({d.group} {d.kind}:{d.entity_id})"
                         for d in self._host.dispatcher.running),
                       *(f"timer {t.topic}:{t.key}" for t in self._host.timer_runner.firing)]
            print(f"{why}: stopping now, abandoning {', '.join(running) or 'nothing'}",
                  file=sys.stderr, flush=True)
            self._host.release_leases_now()
        except Exception as exc:  # noqa: BLE001 - exiting anyway; leases will expire
            print(f"could not release leases ({exc}); they expire on their own",
                  file=sys.stderr, flush=True)
        finally:
            os._exit(EXIT_ABANDONED)
