"""Listings on big logs read one page in SQL, and their cursors walk without gaps.

The database holds 200,000 changes (and as many transitions and deliveries), written
straight into the tables: the listing commands must not care how they got there.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import reactive_core._delivery.queue as queue_module
import reactive_core._entities.logs as logs_module
from reactive_core import Host
from reactive_core._cli.main import run

ROWS = 200_000
PAGE = 5


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("big-log")
    url = f"sqlite:///{folder}/reactive.db"

    async def create_schema() -> None:
        async with Host(database_url=url, plugins=[], entry_points=False,
                        config={"run_jobs": False, "workers": False}):
            pass

    anyio.run(create_schema)
    stamp = "2026-11-29 12:00:00.000000"
    with sqlite3.connect(folder / "reactive.db") as conn:
        conn.executemany(
            "INSERT INTO entity_changes (seq, change_id, kind, entity_id, prev, next, delta, "
            "changed_fields, actor_type, actor_id, occurred_at) "
            "VALUES (?, ?, 'item', ?, NULL, ?, ?, '[\"n\"]', 'system', 'system', ?)",
            ((seq, str(uuid.UUID(int=seq)), f"e{seq % 1000}", f'{{"n":{seq}}}',
              f'{{"n":{seq}}}', stamp) for seq in range(1, ROWS + 1)))
        conn.executemany(
            "INSERT INTO entity_transitions (id, change_seq, kind, entity_id, field, "
            "from_value, to_value, transitioned_at) VALUES (?, ?, 'item', ?, 'n', NULL, ?, ?)",
            ((seq, seq, f"e{seq % 1000}", str(seq), stamp) for seq in range(1, ROWS + 1)))
        conn.executemany(
            "INSERT INTO entity_deliveries (id, change_seq, group_name, kind, entity_id, "
            "status, ready, attempts, available_at, created_at, finished_at) "
            "VALUES (?, ?, 'g', 'item', ?, 'done', 0, 1, ?, ?, ?)",
            ((seq, seq, f"e{seq % 1000}", stamp, stamp, stamp)
             for seq in range(1, ROWS + 1)))
    return url


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """How many rows each listing turned into objects (every row it read from SQL)."""
    counts = {"changes": 0, "transitions": 0, "deliveries": 0}

    def counting(name: str, module: Any, attribute: str) -> None:
        original = getattr(module, attribute)

        def wrapper(row: Any) -> Any:
            counts[name] += 1
            return original(row)

        monkeypatch.setattr(module, attribute, wrapper)

    counting("changes", logs_module, "row_to_change")
    counting("transitions", logs_module, "_transition")
    counting("deliveries", queue_module, "delivery_row")
    yield counts


def listing(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> list[dict[str, Any]]:
    assert run([*argv, "--json", "--database-url", url]) == 0
    rows: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return rows


def test_the_newest_page_of_changes_reads_only_that_page(
    big_log: str, fetched: dict[str, int], capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["changes", "--limit", str(PAGE), "--database-url", big_log]) == 0
    printed = capsys.readouterr().out
    assert str(ROWS) in printed and str(ROWS - PAGE) not in printed.split()
    assert fetched["changes"] == PAGE


@pytest.mark.parametrize(("command", "key", "after", "before"), [
    ("changes", "seq", "--after", "--before"),
    ("transitions", "id", "--after", "--before"),
    ("deliveries", "id", "--after", "--before"),
])
def test_cursors_page_back_and_forward_without_gaps(
    big_log: str, fetched: dict[str, int], capsys: pytest.CaptureFixture[str],
    command: str, key: str, after: str, before: str,
) -> None:
    pages = 4
    newest = [row[key] for row in listing(capsys, big_log, command, "--limit", str(PAGE))]
    assert newest == sorted(newest, reverse=command == "deliveries")
    seen = sorted(newest)
    for _ in range(pages - 1):  # back, from the oldest row shown
        page = [row[key] for row in listing(capsys, big_log, command, "--limit", str(PAGE),
                                            before, str(min(seen)))]
        seen = sorted(seen + page)
    assert seen == list(range(ROWS - pages * PAGE + 1, ROWS + 1))
    start = 1000
    walked: list[int] = []
    cursor = start
    for _ in range(pages):  # forward, from the newest row shown
        page = [row[key] for row in listing(capsys, big_log, command, "--limit", str(PAGE),
                                            after, str(cursor))]
        walked += sorted(page)
        cursor = max(page)
    assert walked == list(range(start + 1, start + pages * PAGE + 1))
    assert fetched[command] == 2 * pages * PAGE


def test_a_missing_cursor_value_is_a_clear_error(
    big_log: str, capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["changes", "--before", "soon", "--database-url", big_log]) == 2
    assert ("argument --before: expected a whole number (a seq or an id from a listing), "
            "received 'soon'") in capsys.readouterr().err


def test_the_log_itself_was_not_rewritten(big_log: str) -> None:
    path = Path(big_log.removeprefix("sqlite:///"))
    with sqlite3.connect(path) as conn:
        counts = [conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                  for table in ("entity_changes", "entity_transitions", "entity_deliveries")]
    assert counts == [ROWS, ROWS, ROWS]
