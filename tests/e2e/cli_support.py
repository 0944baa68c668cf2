"""Helpers of the CLI end-to-end tests: one-shot `reactive` runs and `serve` processes."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

E2E_DIR = Path(__file__).resolve().parent
READY = "reactive serving on "


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: no REACTIVE_* leaking in, test plugins
    importable, and of the installed entry-point plugins only the catalog (so output
    does not change when another plugin gets installed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTIVE_")}
    env["REACTIVE_PLUGINS"] = "catalog"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(E2E_DIR), env.get("PYTHONPATH")) if p)
    env["PYTHONIOENCODING"] = "utf-8"
    # Health checks target 127.0.0.1; a proxy from the environment must not get them.
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def health_env(**extra: str) -> dict[str, str]:
    """`cli_env` with the health plugin loaded as well as the catalog, and checks allowed
    to run every 0.1 s (config files refuse intervals under 1 s by default)."""
    return cli_env(**{"REACTIVE_PLUGINS": "catalog,health",
                      "REACTIVE_PLUGIN_SETTINGS": '{"health": {"min_interval_seconds": 0.05}}',
                      **extra})


def wait_until(predicate: Callable[[], Any], *, timeout: float, what: str,
               interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def table(out: str) -> list[list[str]]:
    """A printed table as rows of cells (split on runs of two or more spaces)."""
    return [re.split(r"\s{2,}", line.strip()) for line in out.strip().splitlines()]


class Server:
    """A `reactive serve` subprocess; its stderr (logs) goes to a file."""

    def __init__(self, cmd: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> None:
        self.cmd = cmd
        self.env = env
        self.cwd = cwd
        self.log_path = log
        self.proc: subprocess.Popen[str] | None = None
        self.ready_line = ""
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 20.0) -> Server:
        """Start and wait for the ready line."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd, stdout=subprocess.PIPE, stderr=log, text=True, encoding="utf-8",
                env=self.env, cwd=self.cwd)
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                self.kill()
                pytest.fail(f"`reactive serve` not ready after {timeout:.0f}s\n{self.logs()}")
            if line is None:
                pytest.fail(f"`reactive serve` exited with {self.proc.wait()} before it was "
                            f"ready\n{self.logs()}")
            if line.startswith(READY):
                self.ready_line = line.strip()
                return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                self._lines.put(line)
        self._lines.put(None)

    def logs(self) -> str:
        """What the server logged so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait for a clean exit; returns the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"`reactive serve` did not stop within {timeout:.0f}s of SIGTERM\n"
                        f"{self.logs()}")
        self._join()
        return status

    def kill(self) -> None:
        """SIGKILL (if still running) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._join()

    def _join(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=10)


class Cli:
    """Runs `python -m reactive_core --database-url URL ...` in a temp directory."""

    def __init__(self, url: str, cwd: Path, env: dict[str, str]) -> None:
        self.url = url
        self.cwd = cwd
        self.env = env
        self._servers: list[Server] = []

    def command(self, *args: str, url: str | None = "") -> list[str]:
        """The argv of a CLI run (`url=None`: no --database-url)."""
        chosen = self.url if url == "" else url
        prefix = ["--database-url", chosen] if chosen is not None else []
        return [sys.executable, "-m", "reactive_core", *prefix, *args]

    def __call__(self, *args: str, url: str | None = "",
                 timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args, url=url), check=False, capture_output=True,
                              text=True, encoding="utf-8", env=self.env, cwd=self.cwd,
                              timeout=timeout)

    def many(self, *argvs: Sequence[str],
             timeout: float = 60.0) -> list[subprocess.CompletedProcess[str]]:
        """Run several independent commands at once (start-up dominates their cost)."""
        procs = [subprocess.Popen(self.command(*argv), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, encoding="utf-8",
                                  env=self.env, cwd=self.cwd) for argv in argvs]
        results = []
        try:
            for argv, proc in zip(argvs, procs, strict=False):
                out, err = proc.communicate(timeout=timeout)
                results.append(subprocess.CompletedProcess(list(argv), proc.returncode, out, err))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        return results

    def ok(self, *args: str) -> str:
        """Run, assert exit 0 and no traceback; return stdout."""
        result = self(*args)
        assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stderr}"
        assert "Traceback" not in result.stderr, result.stderr
        return result.stdout

    def json(self, *args: str) -> Any:
        """Run with `--json`, assert exit 0, parse stdout."""
        return json.loads(self.ok(*args, "--json"))

    def serve(self, *args: str, env: dict[str, str] | None = None) -> Server:
        """Start `reactive [args before 'serve'] serve ...` and wait until it is ready."""
        index = len(self._servers)
        server = Server(self.command(*args), env=env or self.env, cwd=self.cwd,
                        log=self.cwd / f"serve-{index}.log")
        self._servers.append(server)
        return server.start()

    def kill_all(self) -> None:
        """Kill every server this Cli started that is still running."""
        for server in self._servers:
            server.kill()


def sql(url: str, query: str, **params: Any) -> list[Any]:
    """Rows of one read-only query against the database under test."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(query), params).all())
    finally:
        engine.dispose()


def sql_write(url: str, statement: str, **params: Any) -> None:
    """Run one statement against the database under test and commit it."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement), params)
    finally:
        engine.dispose()
