"""Fixtures of the CLI end-to-end tests (helpers live in cli_support.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import Cli, cli_env, health_env


@pytest.fixture
def cli(tmp_path: Path, sqlite_url: str) -> Iterator[Cli]:
    """A CLI runner on a fresh SQLite file; kills leftover servers afterwards."""
    runner = Cli(sqlite_url, tmp_path, cli_env())
    try:
        yield runner
    finally:
        runner.kill_all()


@pytest.fixture
def health_cli(cli: Cli) -> Iterator[Cli]:
    """A runner on the same database and directory as `cli`, with the health plugin too."""
    runner = Cli(cli.url, cli.cwd, health_env())
    try:
        yield runner
    finally:
        runner.kill_all()
