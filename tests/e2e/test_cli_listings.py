"""Listing commands: transitions, changes, deliveries (dead letters, replay), doctor."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_support import Cli, cli_env, sql, sql_write, table, wait_until

SYSTEMS = """\
systems:
  - id: web
    name: Web shop
    tags: [frontend]
  - id: api
    name: Orders API
"""
ITEMS = "items:\n  - {id: a, n: 1}\n  - {id: b, n: 2}\n"
FAILING = ("--plugin", "e2e_plugins:items", "--plugin", "e2e_plugins:failing")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """One database for the read-only tests: two systems declared, then both updated,
    while `reactive serve` handles the catalog's deliveries (`apply` runs no workers)."""
    folder = tmp_path_factory.mktemp("catalog")
    cli = Cli(f"sqlite:///{folder}/reactive.db", folder, cli_env())
    path = folder / "catalog.yaml"
    path.write_text(SYSTEMS, encoding="utf-8")
    cli.ok("apply", "-f", str(path))
    server = cli.serve("serve", "--poll-interval", "0.05")
    path.write_text(SYSTEMS.replace("[frontend]", "[frontend, tier-1]")
                    + "    description: orders\n", encoding="utf-8")
    cli.ok("apply", "-f", str(path))
    wait_until(lambda: [d["status"] for d in cli.json("deliveries")] == ["done"] * 4,
               timeout=20, what="serve to handle the four catalog deliveries")
    assert server.stop() == 0
    yield cli
    cli.kill_all()


def outputs(cli: Cli, *argvs: tuple[str, ...]) -> list[str]:
    """Stdout of each command, run at once; each must exit 0."""
    results = cli.many(*argvs)
    for result in results:
        assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n{result.stderr}"
    return [r.stdout for r in results]


def test_transitions_table_and_json_with_filters(catalog: Cli) -> None:
    text, by_id, newest = outputs(
        catalog, ("transitions", "--kind", "catalog-system", "--field", "tags"),
        ("transitions", "--id", "web", "--json"), ("transitions", "--limit", "1", "--json"))
    rows = table(text)

    assert rows[0] == ["TIME (UTC)", "KIND", "ID", "FIELD", "FROM → TO"]
    assert [r[1:] for r in rows[1:]] == [
        ["catalog-system", "web", "tags", '- → ["frontend"]'],
        ["catalog-system", "api", "tags", "- → []"],
        ["catalog-system", "web", "tags", '["frontend"] → ["frontend","tier-1"]'],
    ]
    assert [(t["field"], t["from_value"], t["to_value"]) for t in json.loads(by_id)] == [
        ("metadata", None, "{}"), ("name", None, "Web shop"), ("tags", None, '["frontend"]'),
        ("tags", '["frontend"]', '["frontend","tier-1"]'),
    ]
    last = json.loads(newest)
    assert [(t["entity_id"], t["field"]) for t in last] == [("api", "description")]
    assert last[0]["transitioned_at"].endswith("+00:00")


def test_changes_table_and_json_show_the_feed_newest_last(catalog: Cli) -> None:
    text, of_api, after, none = outputs(
        catalog, ("changes",), ("changes", "--kind", "catalog-system", "--id", "api", "--json"),
        ("changes", "--after", "3", "--json"), ("changes", "--kind", "nothing-of-this-kind"))
    rows = table(text)

    assert rows[0] == ["SEQ", "TIME (UTC)", "KIND", "ID", "WHAT", "CHANGED", "ACTOR", "REASON"]
    assert [(r[0], r[3], r[4], r[5], r[6], r[7]) for r in rows[1:]] == [
        ("1", "web", "created", "metadata,name,tags", "config:apply", "declared in a config file"),
        ("2", "api", "created", "metadata,name,tags", "config:apply", "declared in a config file"),
        ("3", "web", "updated", "tags", "config:apply", "declared in a config file"),
        ("4", "api", "updated", "description", "config:apply", "declared in a config file"),
    ]
    assert [(c["seq"], c["prev"], c["delta"]) for c in json.loads(of_api)] == [
        (2, None, {"metadata": {}, "name": "Orders API", "tags": []}),
        (4, {"description": None, "metadata": {}, "name": "Orders API", "tags": []},
         {"description": "orders"}),
    ]
    assert [c["seq"] for c in json.loads(after)] == [4]
    assert none == "no changes\n"


def test_listings_json_names_the_same_concept_the_same_and_every_time_is_utc(
    catalog: Cli,
) -> None:
    changes, transitions, deliveries, timers = (json.loads(out) for out in outputs(
        catalog, ("changes", "--json"), ("transitions", "--json"), ("deliveries", "--json"),
        ("timers", "--json")))

    # The entity a row is about: `kind` and `entity_id`, in every listing.
    for rows in (changes, transitions, deliveries):
        assert rows and all({"kind", "entity_id"} <= set(row) for row in rows)
    assert {(c["kind"], c["entity_id"]) for c in changes} == {
        ("catalog-system", "web"), ("catalog-system", "api")}
    assert "id" not in changes[0]  # `id` is a row's own number elsewhere, not an entity's
    # The change a row belongs to: `change_seq`, matching a change's `seq`.
    seqs = {c["seq"] for c in changes}
    assert {t["change_seq"] for t in transitions} == seqs
    assert {d["change_seq"] for d in deliveries} == seqs
    # Every moment is a `..._at` field in ISO 8601 UTC.
    moments = [value for rows in (changes, transitions, deliveries, timers) for row in rows
               for key, value in row.items() if key.endswith("_at") and value is not None]
    assert len(moments) > 20
    assert all(datetime.fromisoformat(m).utcoffset() == timedelta(0) for m in moments)
    assert all(m.endswith("+00:00") for m in moments)


def test_every_time_column_says_utc_and_its_values_are_utc(catalog: Cli) -> None:
    changes, transitions, timers, as_json = outputs(
        catalog, ("changes",), ("transitions",), ("timers",), ("changes", "--json"))

    first = json.loads(as_json)[0]
    for text, column in ((changes, 1), (transitions, 0), (timers, 2)):
        rows = table(text)
        assert rows[0][column].endswith(" (UTC)"), rows[0]
        assert not any("TIME" in h or "DUE" in h for i, h in enumerate(rows[0]) if i != column)
    assert table(changes)[1][1] == datetime.fromisoformat(first["occurred_at"]).strftime(
        "%Y-%m-%d %H:%M:%S")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \((in )?(\d+[dhm] )*\d+[dhms]( ago)?\)",
                        table(timers)[1][2])


def test_deliveries_table_and_json(catalog: Cli) -> None:
    text, newest, dead = outputs(
        catalog, ("deliveries", "--group", "catalog-edge-cleanup"),
        ("deliveries", "--limit", "2", "--json"), ("deliveries", "--dead"))
    rows = table(text)

    assert rows[0] == ["ID", "CHANGE", "GROUP", "ENTITY", "STATUS", "ATTEMPTS", "LAST ERROR"]
    assert [r[1:] for r in rows[1:]] == [
        ["#4", "catalog-edge-cleanup", "catalog-system:api", "done", "1", "-"],
        ["#3", "catalog-edge-cleanup", "catalog-system:web", "done", "1", "-"],
        ["#2", "catalog-edge-cleanup", "catalog-system:api", "done", "1", "-"],
        ["#1", "catalog-edge-cleanup", "catalog-system:web", "done", "1", "-"],
    ]
    assert [(d["id"], d["change_seq"], d["group"], d["status"]) for d in json.loads(newest)] == [
        (4, 4, "catalog-edge-cleanup", "done"), (3, 3, "catalog-edge-cleanup", "done")]
    assert dead == "no deliveries\n"


def test_doctor_is_ok_for_the_installed_plugins(catalog: Cli) -> None:
    text, report = outputs(catalog, ("doctor",), ("doctor", "--json"))
    data = json.loads(report)

    assert text.splitlines()[0] == "plugins: catalog"
    assert text.splitlines()[-1] == "ok"
    assert data["ok"] is True and data["undeclared"] == [] and data["dead_letters"] == 0
    assert [(t["table"], t["status"]) for t in data["tables"]] == [
        ("catalog_dependencies", "declared")]
    assert [(r["group"], r["kind"], r["pending"], r["stale"]) for r in data["routes"]] == [
        ("catalog-edge-cleanup", "catalog-system", 0, False)]
    routes = table(text.split("\n\n")[2])
    assert routes[0] == ["GROUP", "KIND", "LAST SEEN (UTC)", "PENDING", "ROUTE"]
    assert routes[1][:2] + routes[1][3:] == [
        "catalog-edge-cleanup", "catalog-system", "0", "live"]


def test_doctor_exits_1_on_an_undeclared_plugin_table(catalog: Cli) -> None:
    result, report = catalog.many(("--plugin", "e2e_plugins:undeclared", "doctor"),
                                  ("doctor", "--plugin", "e2e_plugins:undeclared", "--json"))

    assert (result.returncode, report.returncode) == (1, 1), result.stderr + report.stderr
    rows = {r[0]: r[1:] for r in table(result.stdout) if len(r) == 4}
    assert rows["e2e_scratch"][:2] == ["e2e-undeclared", "undeclared"]
    assert rows["e2e_samples"] == ["e2e-undeclared", "declared", "raw-sample: test samples"]
    assert result.stdout.splitlines()[-2:] == [
        "1 problem:",
        ("- table e2e_scratch (plugin e2e-undeclared) backs no entity kind and is not "
         "declared: declare it with registry.declare_non_reactive_state"),
    ]
    data = json.loads(report.stdout)
    assert data["ok"] is False and data["undeclared"] == ["e2e_scratch"]
    assert len(data["problems"]) == 1
    assert data["plugins"] == ["e2e-undeclared", "catalog"]


def test_dead_letters_are_listed_and_replayed(cli: Cli, tmp_path: Path) -> None:
    items = tmp_path / "items.yaml"
    items.write_text(ITEMS, encoding="utf-8")
    cli.ok(*FAILING, "apply", "-f", str(items))
    server = cli.serve(*FAILING, "serve", "--poll-interval", "0.1")
    wait_until(lambda: sql(cli.url, "SELECT count(*) FROM entity_deliveries "
                                    "WHERE status = 'dead'")[0][0] == 2,
               timeout=20, what="two dead letters")
    assert server.stop() == 0

    text, dead, doctor = cli.many(("deliveries", "--dead"), ("deliveries", "--dead", "--json"),
                                  ("doctor",))
    assert [r[2:] for r in table(text.stdout)[1:]] == [
        ["e2e-failing", "e2e-item:b", "dead", "1", "RuntimeError: cannot handle e2e-item:b"],
        ["e2e-failing", "e2e-item:a", "dead", "1", "RuntimeError: cannot handle e2e-item:a"],
    ]
    first, second = (d["id"] for d in reversed(json.loads(dead.stdout)))
    assert "dead letters: 2 (see `reactive deliveries --dead`)" in doctor.stdout

    replayed = cli.ok("deliveries", "--replay", str(first))
    assert replayed.splitlines()[0] == (
        f"delivery {first} re-queued: a running `reactive serve` will retry it")
    assert "pending" in table(replayed)[2]
    pending, still_dead, again, unknown = cli.many(
        ("deliveries", "--status", "pending", "--json"), ("deliveries", "--dead", "--json"),
        ("deliveries", "--replay", str(first)), ("deliveries", "--replay", "9999"))
    assert [(d["id"], d["attempts"], d["status"]) for d in json.loads(pending.stdout)] == [
        (first, 0, "pending")]
    assert [d["id"] for d in json.loads(still_dead.stdout)] == [second]
    assert again.returncode == 2
    assert again.stderr == (f"error: delivery {first} has status 'pending': expected the id "
                            "of a dead-lettered delivery\n")
    assert unknown.returncode == 2 and "delivery 9999 does not exist" in unknown.stderr


def test_doctor_exits_1_when_a_route_with_a_backlog_has_no_live_instance(
    cli: Cli, tmp_path: Path,
) -> None:
    items = tmp_path / "items.yaml"
    items.write_text(ITEMS, encoding="utf-8")
    # A serving host with the failing handler registers its route (and dead-letters
    # the first two deliveries); once it is gone, a write by a host without that
    # handler still enqueues a delivery for the group, which nobody handles.
    server = cli.serve(*FAILING, "serve", "--poll-interval", "0.05")
    cli.ok("--plugin", "e2e_plugins:items", "apply", "-f", str(items))
    wait_until(lambda: len(cli.json("deliveries", "--dead")) == 2, timeout=20,
               what="the failing handler to dead-letter both deliveries")
    assert server.stop() == 0
    items.write_text(ITEMS.replace("n: 2", "n: 3"), encoding="utf-8")
    cli.ok("--plugin", "e2e_plugins:items", "apply", "-f", str(items))
    sql_write(cli.url, "UPDATE work_queue_routes SET last_seen_at = :old "
                       "WHERE group_name = 'e2e-failing'",
              old=datetime.now(UTC) - timedelta(hours=2))

    result = cli("doctor")

    assert result.returncode == 1, result.stderr
    assert re.search(r"e2e-failing +e2e-item +\S+ \S+ +1 +stale", result.stdout)
    assert result.stdout.splitlines()[-1].startswith(
        "- work-queue group e2e-failing has 1 pending delivery of e2e-item, but no "
        "running instance handles it (last seen ")
