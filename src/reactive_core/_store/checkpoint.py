"""SQLite's WAL checkpoints on a thread of their own, off the writer's path.

Commits append pages to the write-ahead log; a *checkpoint* copies them into the
database file, with two fsyncs. Left to SQLite, the commit that fills the log past
`wal_autocheckpoint` pages runs the whole checkpoint before it returns: on a busy
writer one commit in a few hundred stalls for tens of milliseconds, and every write
queued behind it waits. Here a thread with a connection of its own runs a *passive*
checkpoint (it never waits for, nor blocks, the writer or a reader) after commits, at
most every `CHECKPOINT_INTERVAL` seconds, in parallel with the writer (SQLite releases
the GIL while it copies and syncs). The writer's own checkpoint stays as the backstop:
when it comes, it finds the log copied but for the last moments' pages, and restarts
the log from its beginning as before.

A background checkpoint that fails is logged and tried again after `_FAILURE_PAUSE`
seconds; meanwhile the writer checkpoints on its own, as SQLite always does. Nothing
is lost either way: the pages stay in the log until some checkpoint copies them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("reactive_core.db")

CHECKPOINT_INTERVAL = 0.05
"""Seconds between two background checkpoints while commits keep coming."""
_FAILURE_PAUSE = 5.0
"""Seconds before the next background checkpoint after one failed."""


class WalCheckpointer:
    """Checkpoints a SQLite database's WAL on its own thread after the writer's commits.

    `connect` opens a DBAPI connection to the database (called on the thread, when the
    first checkpoint is due, and again after a failure).
    """

    def __init__(self, connect: Callable[[], Any], *,
                 interval: float = CHECKPOINT_INTERVAL) -> None:
        self._connect = connect
        self._interval = interval
        self._due = threading.Event()
        self._stop = threading.Event()
        self._asked = False  # a checkpoint is due and not yet started
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def poke(self) -> None:
        """The writer committed: checkpoint soon. Cheap when one is already due."""
        if self._asked:
            return
        self._asked = True
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(
                        target=self._run, name="reactive-wal-checkpoint", daemon=True)
                    self._thread.start()
        self._due.set()

    def close(self) -> None:
        """Stop the thread, once the checkpoint it may be running is done; later pokes
        start nothing."""
        with self._lock:
            self._stop.set()
            thread, self._thread = self._thread, None
        self._due.set()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        conn: Any = None
        try:
            while True:
                self._due.wait()
                if self._stop.is_set():
                    return
                self._due.clear()
                self._asked = False
                pause = self._interval
                try:
                    if conn is None:
                        conn = self._connect()
                    cursor = conn.cursor()
                    try:
                        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                        cursor.fetchall()
                    finally:
                        cursor.close()
                except Exception:  # the writer's own checkpoint goes on
                    logger.warning(
                        "background WAL checkpoint failed: the writer checkpoints on its "
                        "own; trying again in %gs", _FAILURE_PAUSE, exc_info=True)
                    _close(conn)
                    conn = None
                    pause = _FAILURE_PAUSE
                if self._stop.wait(pause):
                    return
        finally:
            _close(conn)


def _close(conn: Any) -> None:
    """Close `conn` (if any), whatever that raises."""
    if conn is not None:
        try:
            conn.close()
        except Exception:  # a connection that failed may not close cleanly
            logger.debug("closing the checkpoint connection failed", exc_info=True)
