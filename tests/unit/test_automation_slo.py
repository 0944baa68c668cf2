"""The automation engine end to end on the real `slo` entity: catalog, health and SLO
plugins on one host, the SLO refresh timer moving `budgetRemainingPercent` while a system
stays down, a numeric-state hold on it and a webhook to a real HTTP server on 127.0.0.1.

The objective (99 % over one day) has 14.4 minutes of budget, so each minute of downtime
costs 6.94 points: after 11 minutes 23.6 % remain, after 12 minutes 16.7 % (below 20).
Time is the settable clock; `World.settle()` lets every due timer fire (the refresh runs
every 60 s of that clock).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from automation_support import Clock, Receiver, World, receiver
from catalog_plugin import Catalog, CatalogPlugin
from health_plugin import CheckOutcome, HealthPlugin, HealthStatus, Thresholds, health_service
from reactive_core import Host
from reactive_core.automation.engine import HOLD_TOPIC
from reactive_core.automation.plugin import AutomationPlugin
from slo_plugin import SLO_KIND, Objective, SloPlugin, slo_service

pytestmark = pytest.mark.anyio

EAGER = Thresholds(degraded_min_failures=1, unhealthy_min_failures=1)
DOWN = CheckOutcome(status=HealthStatus.UNHEALTHY, latency_ms=1.0)
UP = CheckOutcome(status=HealthStatus.HEALTHY, latency_ms=1.0)

LOW_BUDGET = """
id: low-budget
triggers:
  - numeric_state:
      value: "state.slo['obj-1'].budgetRemainingPercent"
      below: 20
      for: {minutes: 10}
actions:
  - webhook:
      url: "%s/alerts"
      retries: 0
      body:
        text: "{{ trigger.entity_id }} of {{ trigger.systemId }}: budget below 20 %% for {{ trigger.for_seconds }} s"
        objective: "{{ trigger.objectiveId }}"
        remaining: "{{ state.slo['obj-1'].budgetRemainingPercent }}"
"""

FAILING = """
id: notify
triggers:
  - entity: "slo:obj-1"
    field: target
actions:
  - webhook:
      url: "%s/hook"
      retries: 2
      backoff: 0
      body: {target: "{{ trigger.target }}"}
"""

REFRESH_LOGS_NOTHING = (
    "the slo.refresh timer re-read obj-1 but logged no change of budgetRemainingPercent: "
    "a computed kind's prev is re-read at the same clock as its next, so a move made by "
    "time alone diffs to nothing")


class SloWorld(World):
    """A host with the engine and the catalog, health and SLO plugins: system `api`,
    its check, and objective `obj-1` on it."""

    async def build(self, target: float = 99.0) -> None:
        health = health_service(self.host)
        await Catalog(self.host).upsert_system("api", name="API")
        await health.upsert_check("api-check", strategy="tcp",
                                  config={"host": "127.0.0.1", "port": 9})
        await health.associate("api", "api-check", thresholds=EAGER)
        await self.objective(target)

    async def objective(self, target: float) -> None:
        await slo_service(self.host).upsert_objective(
            Objective(id="obj-1", system_id="api", target=target, window_days=1))
        await self.settle()

    async def system(self, up: bool) -> None:
        await health_service(self.host).record_run("api-check", UP if up else DOWN,
                                                   timestamp=self.clock())
        await self.settle()

    async def budget(self) -> float:
        state = await self.host.entity(SLO_KIND).get("obj-1")
        assert state is not None
        return float(state.budget_remaining_percent)

    async def logged_budgets(self) -> list[float]:
        """`budgetRemainingPercent` of every `slo:obj-1` change, in order: what rules see."""
        return [float((c.next or {})["budgetRemainingPercent"])
                for c in await self.host.changes(kind=SLO_KIND, entity_id="obj-1")]

    async def holds(self) -> list[str]:
        return [t.key for t in await self.host.timers.list(limit=1000)
                if t.topic == HOLD_TOPIC and t.status == "scheduled"]


@pytest.fixture
async def world(sqlite_url: str) -> AsyncIterator[SloWorld]:
    clock = Clock()
    async with Host(database_url=sqlite_url, clock=clock, entry_points=False,
                    plugins=[AutomationPlugin, CatalogPlugin, HealthPlugin, SloPlugin],
                    config={"poll_interval": 0.05, "retry_base_seconds": 0.01,
                            "run_jobs": False,
                            "plugins": {"automation": {"max_backoff_seconds": 0.01},
                                        "health": {"scheduler": False},
                                        "slo": {"refresh_seconds": 60}}}) as host:
        yield SloWorld(host, clock)


async def _alerting(world: SloWorld, tmp_path: Path, hook: Receiver) -> None:
    await world.build(target=99.0)
    assert await world.budget() == 100.0
    await world.load(LOW_BUDGET % hook.url, tmp_path)
    await world.system(up=False)                          # down from T0


def _bodies(hook: Receiver) -> list[object]:
    return [r["body"] for r in hook.requests]


async def test_a_budget_below_20_for_10_minutes_posts_exactly_once(
        world: SloWorld, tmp_path: Path) -> None:
    with receiver() as hook:
        await _alerting(world, tmp_path, hook)
        await world.later(minutes=11)
        assert await world.budget() == pytest.approx(23.61, abs=0.01)
        await world.later(minutes=1)                      # the refresh at 12 min: 16.7 %
        assert await world.budget() == pytest.approx(16.67, abs=0.01)
        # The refresh must log the move, or no rule can see it.
        assert min(await world.logged_budgets()) < 20, REFRESH_LOGS_NOTHING
        await world.later(minutes=9, seconds=59)          # 21:59: below for 9:59
        assert hook.requests == []
        await world.later(seconds=1)                      # 22:00: below for 10 minutes
        assert len(hook.requests) == 1
        [call] = hook.requests
        assert call["path"] == "/alerts"
        [run] = await world.runs("low-budget")
        assert run.status.value == "succeeded"
        assert call["headers"]["Idempotency-Key"] == f"run-{run.id}-actions[0]"
        assert call["body"] == {
            "text": "obj-1 of api: budget below 20 % for 600.0 s", "objective": "obj-1",
            "remaining": "0.0"}
        for _ in range(3):                                # still below: more refreshes
            await world.later(minutes=10)
        assert len(hook.requests) == 1
        assert len(await world.runs("low-budget")) == 1


async def test_a_dip_below_20_that_recovers_within_5_minutes_posts_nothing(
        world: SloWorld, tmp_path: Path) -> None:
    with receiver() as hook:
        await _alerting(world, tmp_path, hook)
        await world.later(minutes=12)                     # 16.7 %: the dip
        assert await world.budget() < 20
        assert min(await world.logged_budgets()) < 20, REFRESH_LOGS_NOTHING
        assert len(await world.holds()) == 1              # the engine armed its hold
        await world.later(minutes=4)
        await world.objective(target=95.0)                # 72 min of budget: 77.8 %
        assert await world.budget() == pytest.approx(77.78, abs=0.01)
        assert await world.holds() == []
        await world.later(minutes=30)                     # still down: 36.1 % at 46 min
        assert await world.budget() > 20
        assert hook.requests == []
        assert await world.runs("low-budget") == []


async def test_a_crossing_logged_by_an_objective_change_posts_once_after_the_hold(
        world: SloWorld, tmp_path: Path) -> None:
    """The same rule when the crossing is a written change (the objective tightened while
    down), not the refresh: the hold and the webhook on the real `slo` entity."""
    with receiver() as hook:
        await _alerting(world, tmp_path, hook)
        await world.later(minutes=5)                      # 65.3 % on 99 %
        await world.objective(target=99.5)                # 7.2 min of budget: 30.6 %
        assert await world.budget() == pytest.approx(30.56, abs=0.01)
        await world.objective(target=99.6)                # 5.76 min: 13.2 %: crossing
        assert await world.budget() == pytest.approx(13.19, abs=0.01)
        assert len(await world.holds()) == 1
        await world.later(minutes=9, seconds=59)
        assert hook.requests == []
        await world.later(seconds=1)
        [call] = hook.requests
        [run] = await world.runs("low-budget")
        assert run.status.value == "succeeded"
        assert call["headers"]["Idempotency-Key"] == f"run-{run.id}-actions[0]"
        assert call["body"] == {
            "text": "obj-1 of api: budget below 20 % for 600.0 s", "objective": "obj-1",
            "remaining": "0.0"}
        await world.later(minutes=30)
        assert len(hook.requests) == 1


async def test_a_webhook_answered_500_is_retried_then_the_run_fails_with_its_attempts(
        world: SloWorld, tmp_path: Path) -> None:
    with receiver(status=500) as hook:
        await world.build(target=99.0)
        await world.load(FAILING % hook.url, tmp_path)
        await world.objective(target=99.5)
        assert len(hook.requests) == 3
        keys = {r["headers"]["Idempotency-Key"] for r in hook.requests}
        [run] = await world.runs("notify")
        assert keys == {f"run-{run.id}-actions[0]"}
        assert _bodies(hook) == [{"target": "99.5"}] * 3
        assert run.status.value == "failed"
        [step] = run.trace
        assert step["outcome"] == "error" and step["attempts"] == ["500", "500", "500"]
        assert run.error == "actions[0]: webhook POST failed: 500, 500, 500"
