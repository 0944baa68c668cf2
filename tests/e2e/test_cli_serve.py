"""`reactive serve`: announces itself when ready, stops cleanly on SIGINT and SIGTERM."""

from __future__ import annotations

import re
import signal

from cli_support import Cli


def test_serve_prints_a_ready_line_and_stops_cleanly_on_sigint(cli: Cli) -> None:
    server = cli.serve("serve", "--plugin", "e2e_plugins:items", "--poll-interval", "0.1")

    assert re.fullmatch(rf"reactive serving on {re.escape(cli.url)} as \S+-\d+-\w+",
                        server.ready_line)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=15) == 0
    logs = server.logs()
    assert "INFO    reactive_core.cli: plugins: e2e-items, catalog" in logs
    assert "received SIGINT; stopping" in logs and "reactive_core.cli: stopped" in logs
    assert "Traceback" not in logs


def test_serve_refuses_to_start_on_bad_options_or_plugins(cli: Cli) -> None:
    bad_lease, bad_plugin = cli.many(("serve", "--lease-seconds", "0"),
                                     ("serve", "--plugin", "e2e_plugins:nothing_here"))

    assert bad_lease.returncode == 2
    assert bad_lease.stderr.startswith("error: host configuration is invalid: lease_seconds:")
    assert bad_plugin.returncode == 2
    assert "--plugin 'e2e_plugins:nothing_here'" in bad_plugin.stderr
    assert bad_lease.stdout == bad_plugin.stdout == ""
