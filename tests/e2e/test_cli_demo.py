"""`reactive demo`: a self-contained run of the catalog, of health checks against a
flaky local target and of an objective's error budget, printing what happens, then
exiting by itself."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from cli_support import Cli, table

ARROW = "→"
SLO = ("--plugin", "slo_plugin.hooks:SloPlugin")


def health_blocks(out: str) -> list[tuple[str, dict[str, str]]]:
    """The printed health changes: (system id, {field or label: value}), in order."""
    blocks: list[tuple[str, dict[str, str]]] = []
    for line in out.splitlines():
        if start := re.match(r"\s+\+\d+\.\d\ds  health:(\S+)\s+(\S+)\s+(.*)$", line):
            blocks.append((start.group(1), {start.group(2): start.group(3)}))
        elif blocks and (more := re.match(r"\s{20,}(\S+)\s+(.*)$", line)):
            blocks[-1][1][more.group(1)] = more.group(2)
    return blocks


def test_demo_prints_the_catalog_health_and_slo_story_then_exits(health_cli: Cli) -> None:
    cli = health_cli
    result = cli("demo", "--seconds", "0", *SLO, url=None, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout
    # The catalog part.
    assert re.search(r"change  #1 +catalog-system:web  created by user:demo  "
                     r"triggers catalog\.created", out)
    assert re.search(r"#5 +catalog-system:api  updated by user:demo\n +triggers +catalog\.updated",
                     out)
    assert re.search(r"#7 +catalog-system:cdn  deleted by user:demo\n +triggers +catalog\.deleted",
                     out)
    assert '"systemId": "cdn", "changedFields"' in out  # tombstone payload has no name
    assert re.search(rf'\n +tags +\["backend"\] {ARROW} \["backend","tier-1"\]\n', out)
    assert "worker  demo-audit handled #1 #2 #3 #4\n" in out
    assert "web unchanged: nothing logged, nothing delivered (0 new changes)" in out
    assert re.search(r"edges   into cdn after catalog-edge-cleanup \(delivery \d+ done\): none",
                     out)

    # The health part: api degrades, turns unhealthy and recovers; db turns unhealthy.
    assert re.search(r"target  http://127\.0\.0\.1:\d+/ answers 4x 200, 4x 500, 2x no answer, "
                     r"then 200", out)
    blocks = health_blocks(out)
    assert [(system, fields.get("created", "")[:8]) for system, fields in blocks[:2]] == [
        ("api", "healthy:"), ("db", "healthy:")]
    api = [fields for system, fields in blocks[2:] if system == "api"]
    db = [fields for system, fields in blocks[2:] if system == "db"]
    assert api[0]["status"] == f"healthy {ARROW} degraded"
    assert api[0]["healthyChecks"] == f"1 {ARROW} 0"
    assert api[0]["runs"] == "200 200 200 200 500 500 (newest last)"
    assert api[0]["triggers"] == "healthcheck.system_degraded, healthcheck.system_health_changed"
    assert api[1]["status"] == f"degraded {ARROW} unhealthy"
    assert api[1]["runs"].endswith("500 500 500 500 timeout (newest last)")
    assert api[1]["triggers"] == "healthcheck.system_health_changed"
    assert api[2]["status"] == f"unhealthy {ARROW} healthy"
    assert api[2]["runs"].endswith("timeout timeout 200 (newest last)")
    assert api[2]["triggers"] == "healthcheck.system_healthy, healthcheck.system_health_changed"
    assert db[0]["status"] == f"healthy {ARROW} unhealthy"
    assert db[0]["runs"] == "refused refused (newest last)"
    assert db[0]["triggers"] == "healthcheck.system_degraded, healthcheck.system_health_changed"

    # The status table, then the summary.
    status = table(out.split("== status (what `reactive status` prints)\n")[1].split("\n\n")[0])
    assert [row[:4] for row in status] == [["SYSTEM", "NAME", "STATUS", "HEALTHY"],
                                           ["api", "Orders API", "healthy", "1/1"],
                                           ["db", "Orders database", "unhealthy", "0/1"],
                                           ["dns", "Name service", "healthy", "1/1"]]
    assert status[0][4] == "SINCE (UTC)"
    assert all(re.fullmatch(r"\S+ \S+ \(for \d+s\)", row[4]) for row in status[1:])
    assert (f"edges: api {ARROW} db (critical), api {ARROW} dns (critical), "
            f"web {ARROW} api (critical)") in out
    assert re.search(r"target: \d+ requests \(4 ok, 4 error, 2 hang, \d+ ok\)", out)
    assert "demo-audit handled 8 changes\n" in out
    assert re.search(r"changes: 8 catalog-system, \d+ health, \d+ slo\b[^;\n]*; transitions: \d+\n"
                     r"deliveries: (\d+) \(\1 done\)\n", out)
    assert "triggers: catalog.created x5, catalog.updated x2, catalog.deleted x1\n" in out
    assert re.search(r"healthcheck\.system_degraded x3, healthcheck\.system_health_changed x\d+, "
                     r"healthcheck\.system_healthy x2", out)

    # The SLO part: dns, which api depends on, fails first; api's outage is blamed on it,
    # then split into api's own once dns is fixed; the slo entity's changes as they happen.
    assert re.search(r"change  #8 +catalog-system:dns  created by user:demo", out)
    assert re.search(rf"check   dns-tcp  tcp 127\.0\.0\.1:\d+, where nothing listens {ARROW} "
                     r"system dns, unhealthy after 1 failure: ran unhealthy", out)
    assert ("slo     slo:api-availability  created  budgetRemainingPercent 100, burnAlert none, "
            "availability 100\n") in out
    story = [(m.group(1), m.group(2)) for m in re.finditer(
        r"^  (?:event   #\d+ (upstream \(dns\)|self) +(opened|closed)|(fix)     dns)", out,
        re.MULTILINE)]
    assert [(what or "fix", how or "") for what, how in story] == [
        ("upstream (dns)", "opened"), ("fix", ""), ("upstream (dns)", "closed"),
        ("self", "opened"), ("self", "closed")]
    assert "(the outage is split)" in out
    recovered = re.search(r"slo:api-availability  updated  \(api recovered\)\n"
                          rf" +budgetRemainingPercent +[\d.]+ {ARROW} ([\d.]+)\n"
                          rf" +burnAlert +none {ARROW} fast_burn\n", out)
    assert recovered is not None and float(recovered.group(1)) < 50  # 0.864s of budget
    slo = table(out.split("== slo (what `reactive slo` prints)\n")[1].split("\n\n")[0])
    assert slo[0][:5] == ["OBJECTIVE", "SYSTEM", "TARGET", "WINDOW", "AVAILABILITY"]
    assert slo[1][:4] == ["api-availability", "api", "99.999%", "1d"]
    assert slo[1][7] == "fast_burn"
    shown = out.split("`reactive slo api-availability` prints)\n")[1].split("\n\n== ")[0]
    assert "target        99.999% over 1 day (self-only, excluding db)" in shown
    events = table(shown.split("\n\n")[1])
    assert [row[3:] for row in events] == [["ATTRIBUTION", "UPSTREAM"], ["self", "-"],
                                           ["upstream", "dns (Name service)"]]
    assert re.search(r"objective api-availability: [\d.]+% of its budget left, burn alert "
                     r"fast_burn; events: upstream \(dns\), self\n", out)

    # The default database is a temporary file, gone afterwards; nothing lands in the cwd.
    location = re.search(r"reactive demo on sqlite:///(\S+)", out)
    assert location is not None and not Path(location.group(1)).exists()
    assert not any(cli.cwd.iterdir())


def test_demo_on_a_given_database_is_paced_and_leaves_its_history_there(
    cli: Cli, health_cli: Cli,
) -> None:
    started = time.monotonic()
    result = health_cli("demo", "--seconds", "2", timeout=60)
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stdout + result.stderr
    assert "the scheduler runs two checks every 0.1s" in result.stdout
    assert elapsed >= 1.5  # paced (checks every 0.1s instead of 0.05s)
    changes = cli.json("changes", "--limit", "1000")
    catalog = [(c["seq"], c["entity_id"]) for c in changes if c["kind"] == "catalog-system"]
    assert catalog[-1] == (7, "cdn") and changes[6]["next"] is None
    assert {c["kind"] for c in changes[7:]} == {"health"}
    assert {d["status"] for d in cli.json("deliveries")} == {"done"}
    # `reactive status` on the demo's database shows where the story ended.
    status = health_cli("status", "--json")
    assert status.returncode == 2  # db is unhealthy
    assert [(r["system_id"], r["status"]) for r in json.loads(status.stdout)] == [
        ("api", "healthy"), ("db", "unhealthy")]
