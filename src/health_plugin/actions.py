"""Actions the health plugin offers to automation rules (`health.pause_check`, …).

Each takes its parameters as a small model, so a rule with a missing or mistyped
parameter fails with the parameter named; changes are made as the actor
`rule:<rule id>` with the run as the reason, so the transition log says who did it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from reactive_core import Actor
from reactive_core.automation import ActionCall

if TYPE_CHECKING:
    from reactive_core import Registry

    from .service import HealthService


class CheckParams(BaseModel):
    """Which check."""

    model_config = ConfigDict(extra="forbid")

    check_id: str


class AssociationParams(BaseModel):
    """Which system-check association, and whether it counts."""

    model_config = ConfigDict(extra="forbid")

    system_id: str
    check_id: str
    enabled: bool


def _who(call: ActionCall) -> tuple[Actor, str]:
    return Actor("rule", call.rule_id), f"automation run {call.run_id} ({call.step})"


class HealthActions:
    """The actions, bound to one host's health service."""

    def __init__(self, service: HealthService) -> None:
        self._service = service

    def register(self, registry: Registry) -> None:
        registry.add_action("health.pause_check", self.pause_check, params=CheckParams,
                            description="pause a check: it stops running and counting")
        registry.add_action("health.resume_check", self.resume_check, params=CheckParams,
                            description="resume a paused check")
        registry.add_action("health.run_now", self.run_now, params=CheckParams,
                            description="run a check now and record the run")
        registry.add_action("health.set_association_enabled", self.set_association_enabled,
                            params=AssociationParams,
                            description="make a system-check association count or not")

    async def pause_check(self, call: ActionCall) -> Any:
        actor, reason = _who(call)
        changed = await self._service.pause_check(call.params.check_id, actor=actor,
                                                  reason=reason)
        return "paused" if changed else "already paused"

    async def resume_check(self, call: ActionCall) -> Any:
        actor, reason = _who(call)
        changed = await self._service.resume_check(call.params.check_id, actor=actor,
                                                   reason=reason)
        return "resumed" if changed else "already running"

    async def run_now(self, call: ActionCall) -> Any:
        actor, _reason = _who(call)
        outcome = await self._service.run_check(call.params.check_id, actor=actor)
        return str(getattr(outcome, "status", outcome))

    async def set_association_enabled(self, call: ActionCall) -> Any:
        actor, reason = _who(call)
        params: AssociationParams = call.params
        await self._service.set_enabled(params.system_id, params.check_id, params.enabled,
                                        actor=actor, reason=reason)
        return "enabled" if params.enabled else "disabled"
