"""The automation engine's part of `reactive demo`: after the plugins' stories (whose
own rules they install at their start), every run the rules made, and the trace of each
rule's last run — what `reactive runs` and `reactive runs show` print."""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import anyio

from .._cli.demo import DemoContext, DemoStep
from .commands import run_row
from .runs import list_runs

if TYPE_CHECKING:
    from .plugin import AutomationPlugin

ORDER = 90
"""After every plugin's story."""


class AutomationDemo:
    def __init__(self, plugin: AutomationPlugin) -> None:
        self._plugin = plugin

    def steps(self) -> list[DemoStep]:
        return [DemoStep(title="automation runs", order=ORDER, run=self.run,
                         summary=self.summary)]

    async def run(self, ctx: DemoContext) -> bool:
        engine = self._plugin.engine
        if engine is None or not engine.rules:
            return True
        await ctx.step("automation: the runs the rules made (what `reactive runs` prints)")
        runs = list(reversed(await ctx.host.read(list_runs, limit=200)))
        rows = [run_row(r) for r in runs]
        ctx.line(ctx.table(["run", "rule", "status", "trigger", "entity", "steps", "error"], [
            [r["run_id"], r["rule_id"], r["status"], r["event"] or r["trigger"],
             r["entity_id"] or "-", r["steps"], (r["error"] or "")[:50]] for r in rows])
            if rows else "  no runs")
        last = {r.rule_id: r for r in runs if r.status.value != "not_met"}
        for run in last.values():
            ctx.line(f"  run {run.id} of {run.rule_id}: {run.status.value}")
            for step in run.trace:
                detail = step.get("message") or step.get("status") or step.get("until") or ""
                ctx.line(f"    {step['step']} {step['action']}: {step['outcome']}"
                         f"{'  ' + str(detail) if detail else ''}")
        return True

    async def summary(self, ctx: DemoContext) -> list[str]:
        runs = await ctx.host.read(list_runs, limit=1000)
        if not runs:
            return []
        by_status = Counter(r.status.value for r in runs)
        return [f"rule runs: {len(runs)} (" + ", ".join(
            f"{n} {status}" for status, n in sorted(by_status.items())) + ")"]


class DemoWebhook:
    """A local HTTP endpoint for demo rules to call: prints each request it receives."""

    def __init__(self, ctx: DemoContext) -> None:
        self.received: list[dict[str, Any]] = []
        self.got_one = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = min(int(self.headers.get("Content-Length") or 0), 65_536)
                body = self.rfile.read(size).decode("utf-8", "replace")
                hook.received.append({"path": self.path, "body": body,
                                      "key": self.headers.get("Idempotency-Key")})
                ctx.line(f"  webhook POST {self.path} received {body} "
                         f"(Idempotency-Key {self.headers.get('Idempotency-Key')})")
                hook.got_one.set()
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        ctx.callback(self._close)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    async def wait(self, seconds: float) -> bool:
        """Whether a request arrived within `seconds`."""
        with anyio.move_on_after(seconds):
            while not self.got_one.is_set():
                await anyio.sleep(0.02)
        return self.got_one.is_set()
