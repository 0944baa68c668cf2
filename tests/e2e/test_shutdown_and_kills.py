"""`reactive serve` under the faults an operator's day brings: repeated SIGKILLs, a
handler stuck in a thread at shutdown, an impatient second signal."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from cli_support import E2E_DIR, Cli, cli_env, sql, wait_until

from reactive_core import HostConfig

KILLS = 7
DISPATCH_CONCURRENCY = HostConfig().dispatch_concurrency
"""The most handlers one claim round starts."""
COUNT = 120
ENTITIES = 40


def starts(path: Path) -> Counter[str]:
    """How many times each change's handler started (one line per start)."""
    if not path.exists():
        return Counter()
    return Counter(line.split()[2] for line in path.read_text(encoding="utf-8").splitlines())


def write_ticks(url: str, count: int, entities: int, tmp_path: Path, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, str(E2E_DIR / "crash_writer.py"), url, str(count),
                    str(entities), "0"], check=True, env=env, cwd=tmp_path,
                   capture_output=True, timeout=60)


def test_repeated_sigkills_count_an_attempt_only_for_handlers_that_started(
    sqlite_url: str, tmp_path: Path,
) -> None:
    record = tmp_path / "started.txt"
    env = cli_env(E2E_RECORD_FILE=str(record), E2E_HANDLER_DELAY="0.3")
    cli = Cli(sqlite_url, tmp_path, env)
    serve = ("--plugin", "e2e_plugins:crash", "serve", "--lease-seconds", "1",
             "--poll-interval", "0.1")
    try:
        first = cli.serve(*serve)  # records the route, so the writer queues for it
        write_ticks(sqlite_url, COUNT, ENTITIES, tmp_path, env)
        server = first
        for _ in range(KILLS):
            before = sum(starts(record).values())
            wait_until(lambda b=before: sum(starts(record).values()) >= b + 3, timeout=30,
                       what="the server to start some handlers")
            server.kill()
            server = cli.serve(*serve)
        wait_until(lambda: sql(sqlite_url, "SELECT count(*) FROM entity_deliveries "
                                           "WHERE status = 'pending'")[0][0] == 0,
                   timeout=60, interval=0.2, what="every delivery finished")
        assert server.stop() == 0
    finally:
        cli.kill_all()
    rows = sql(sqlite_url, "SELECT c.change_id, d.status, d.attempts FROM entity_deliveries d "
                           "JOIN entity_changes c ON c.seq = d.change_seq")
    started = starts(record)
    assert len(rows) == COUNT
    # An attempt is a handler that started: never a row only claimed, however often
    # the servers died (each kill left several handlers running and rows waiting).
    attempts = {change_id: n for change_id, _, n in rows}
    # A kill can land between the commit that starts a round's handlers (counting their
    # attempts) and their first line: those count an attempt with no record line, one
    # per kill that caught the row there (rarely two kills for one row).
    over = {c: attempts[c] - started.get(c, 0) for c in attempts
            if attempts[c] != started.get(c, 0)}
    assert all(0 < extra <= 2 for extra in over.values()), sorted(over.values())
    assert sum(over.values()) <= KILLS * DISPATCH_CONCURRENCY, over
    assert max(started.values()) >= 2  # some were cut short by a kill and ran again
    # Finished, every one: done, or dead after five real starts at least (a change whose
    # handler was cut short by every kill is given up on, as a poison change must be) —
    # never a row dead-lettered for attempts it did not make.
    for change_id, status, _ in rows:
        assert status == "done" or (status == "dead" and started.get(change_id, 0) >= 5)


def stuck_server(tmp_path: Path, url: str) -> tuple[Cli, Path]:
    record = tmp_path / "started.txt"
    return Cli(url, tmp_path, cli_env(E2E_RECORD_FILE=str(record))), record


LEASED = "SELECT count(*) FROM entity_deliveries WHERE lease_owner IS NOT NULL"


def test_a_handler_stuck_in_a_thread_cannot_hold_shutdown_past_its_deadline(
    sqlite_url: str, tmp_path: Path,
) -> None:
    cli, record = stuck_server(tmp_path, sqlite_url)
    try:
        server = cli.serve("--plugin", "e2e_plugins:stuck", "serve", "--shutdown-timeout", "1",
                           "--poll-interval", "0.1")
        write_ticks(sqlite_url, 1, 1, tmp_path, cli.env)
        wait_until(record.exists, timeout=20, what="the handler to start")
        assert sql(sqlite_url, LEASED)[0][0] == 1
        assert server.proc is not None
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        status = server.proc.wait(timeout=20)
        took = time.monotonic() - started
    finally:
        cli.kill_all()
    assert status == 3  # it had to abandon work
    assert took < 1 + 2 + 3  # deadline, grace for cancelled work, margin
    assert "abandoning delivery 1 (e2e-stuck e2e-tick:t0)" in server.logs()
    assert sql(sqlite_url, LEASED)[0][0] == 0  # handed back for another instance


def test_a_second_signal_stops_serve_at_once(sqlite_url: str, tmp_path: Path) -> None:
    cli, record = stuck_server(tmp_path, sqlite_url)
    try:
        server = cli.serve("--plugin", "e2e_plugins:stuck", "serve", "--shutdown-timeout", "60",
                           "--poll-interval", "0.1")
        write_ticks(sqlite_url, 1, 1, tmp_path, cli.env)
        wait_until(record.exists, timeout=20, what="the handler to start")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGINT)
        status = server.proc.wait(timeout=20)
        took = time.monotonic() - started
    finally:
        cli.kill_all()
    assert status == 3 and took < 3
    assert "a second signal: stopping now" in server.logs()
    assert sql(sqlite_url, LEASED)[0][0] == 0
