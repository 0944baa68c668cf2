"""A `reactive serve` killed with SIGKILL while changes stream in loses no delivery.

A writer process (a host that loads the kind but not the work queue) commits
`e2e-tick` changes steadily; the served plugin's work-queue handler (`e2e-recorder`)
is slower than the writer, so a backlog builds up, and appends each handled change
to a file before finishing it. The server is SIGKILLed
mid-stream (a backlog pending, some deliveries leased by it mid-handling), the
writer keeps going, a second server starts, and every committed change must end up
handled: at least once (those cut short are handled again once their lease expires),
in per-entity order, with exactly one delivery per change, `done`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from cli_support import E2E_DIR, Cli, cli_env, sql, wait_until

COUNT = 120        # changes the writer commits
ENTITIES = 4       # spread over this many entities
INTERVAL = 0.015   # pause between the writer's commits (it manages ~40/s or more)
DELAY = 0.2        # seconds per handled delivery: at most ENTITIES / DELAY = 20/s
SERVE = ("--plugin", "e2e_plugins:crash", "serve", "--lease-seconds", "1",
         "--poll-interval", "0.2")


LEASED = ("SELECT c.change_id FROM entity_deliveries d JOIN entity_changes c "
          "ON c.seq = d.change_seq WHERE d.group_name = 'e2e-recorder' "
          "AND d.status = 'pending' AND d.lease_owner IS NOT NULL")


def recorded(path: Path) -> list[tuple[str, int, str]]:
    """(entity, seq, change_id) per line the handler appended (complete lines only)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        entity, seq, change_id, _pid = line.split()
        rows.append((entity, int(seq), change_id))
    return rows


def delivery_counts(url: str) -> dict[str, int]:
    """How many e2e-recorder deliveries are in each status (pending split by lease)."""
    rows = sql(url, "SELECT status, lease_owner IS NOT NULL AS leased, count(*) "
                    "FROM entity_deliveries WHERE group_name = 'e2e-recorder' "
                    "GROUP BY status, lease_owner IS NOT NULL")
    counts: dict[str, int] = defaultdict(int)
    for status, leased, n in rows:
        counts["leased" if status == "pending" and leased else status] += n
    return counts


def run_crash_scenario(url: str, tmp_path: Path) -> None:
    record = tmp_path / "handled.txt"
    env = cli_env(E2E_RECORD_FILE=str(record), E2E_HANDLER_DELAY=str(DELAY))
    cli = Cli(url, tmp_path, env)
    writer: subprocess.Popen[bytes] | None = None
    try:
        first = cli.serve(*SERVE)
        with open(tmp_path / "writer.log", "wb") as log:
            writer = subprocess.Popen(
                [sys.executable, str(E2E_DIR / "crash_writer.py"), url, str(COUNT),
                 str(ENTITIES), str(INTERVAL)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        # Kill once the server has handled some and a backlog is waiting.
        def backlog() -> bool:
            counts = delivery_counts(url)
            return counts["done"] >= 8 and counts["pending"] >= 5 and counts["leased"] >= 1
        wait_until(backlog, timeout=30, what="the first server to handle some deliveries")
        first.kill()
        at_kill = delivery_counts(url)
        assert writer.poll() is None, f"the writer should still be committing ({at_kill})"
        assert at_kill["done"] >= 8 and at_kill["pending"] + at_kill["leased"] >= 1, at_kill
        # Handled (recorded) but not done when the server died: must be handled again.
        cut_short = {row.change_id for row in sql(url, LEASED)} & {
            c for _, _, c in recorded(record)}

        second = cli.serve(*SERVE)
        status = writer.wait(timeout=60)
        output = (tmp_path / "writer.log").read_text(encoding="utf-8")
        assert status == 0 and output.splitlines()[-1] == f"done {COUNT}", output

        def all_done() -> bool:
            counts = delivery_counts(url)
            return counts["done"] == COUNT and sum(counts.values()) == COUNT
        wait_until(all_done, timeout=45, interval=0.2,
                   what=f"all {COUNT} deliveries done (now {dict(delivery_counts(url))})")
        assert second.stop() == 0
    finally:
        if writer is not None and writer.poll() is None:
            writer.kill()
            writer.wait(timeout=10)
        cli.kill_all()

    changes = sql(url, "SELECT seq, change_id, entity_id FROM entity_changes "
                       "WHERE kind = 'e2e-tick' ORDER BY seq")
    assert len(changes) == COUNT
    handled = recorded(record)
    # At least once: every committed change was handled, and nothing else was.
    assert {c for _, _, c in handled} == {row.change_id for row in changes}
    # Per-entity order: each entity's changes were first handled in seq order.
    first_seen: dict[str, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for entity, seq, change_id in handled:
        if change_id not in seen:
            seen.add(change_id)
            first_seen[entity].append(seq)
    expected: dict[str, list[int]] = defaultdict(list)
    for row in changes:
        expected[row.entity_id].append(row.seq)
    assert first_seen == expected
    # One delivery per change. The deliveries leased by the killed server were handled
    # again after their lease expired; only those were recorded twice.
    attempts = {row.change_id: row.attempts for row in sql(
        url, "SELECT c.change_id, d.attempts FROM entity_deliveries d "
             "JOIN entity_changes c ON c.seq = d.change_seq WHERE d.group_name = 'e2e-recorder'")}
    assert len(attempts) == COUNT
    retried = {change_id for change_id, n in attempts.items() if n >= 2}
    twice = {c for c, n in Counter(c for _, _, c in handled).items() if n > 1}
    assert cut_short, f"no delivery was mid-handling when the server was killed ({at_kill})"
    assert cut_short <= twice <= retried


def test_serve_killed_mid_stream_loses_no_delivery_on_sqlite(
    sqlite_url: str, tmp_path: Path,
) -> None:
    started = time.monotonic()
    run_crash_scenario(sqlite_url, tmp_path)
    assert time.monotonic() - started < 60


@pytest.mark.postgres
def test_serve_killed_mid_stream_loses_no_delivery_on_postgres(
    pg_url: str, tmp_path: Path,
) -> None:
    run_crash_scenario(pg_url, tmp_path)
