"""Fixtures of the CLI end-to-end tests (helpers live in cli_support.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


class _Handler(BaseHTTPRequestHandler):
    """`/ok` answers 200, anything else 500."""

    def do_GET(self) -> None:
        ok = self.path == "/ok"
        body = b"ok" if ok else b"broken"
        self.send_response(200 if ok else 500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 in a thread; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
