"""What a plugin registers for rules to use: actions (`health.pause_check`), called with
an `ActionCall`."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from .host import Host

ACTION_NAME = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)+$")
"""Plugin actions are named `plugin.action` (lower case, dotted)."""


@dataclass(frozen=True)
class ActionCall:
    """One call of a plugin action by a rule's run."""

    host: Host
    params: Any
    """The step's parameters, templates rendered; an instance of the action's `params`
    model when it declared one."""
    rule_id: str
    run_id: int
    step: str
    """Where in the rule the step is (`actions[2]`), with `run_id` a stable idempotency
    key."""
    trigger: Mapping[str, Any] = field(default_factory=dict)


ActionFn = Callable[[ActionCall], Awaitable[Any]]


@dataclass(frozen=True)
class ActionSpec:
    """A registered action: `fn(call)`, its parameter model and a line of help."""

    name: str
    fn: ActionFn
    params: type[BaseModel] | None
    description: str
    plugin: str | None
