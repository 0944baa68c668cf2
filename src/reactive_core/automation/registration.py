"""What plugins register for rules: actions. The types live with the registry (which
plugins fill in before the engine exists); rules and the engine import them from here."""

from __future__ import annotations

from .._host.actions import ACTION_NAME, ActionCall, ActionFn, ActionSpec

__all__ = ["ACTION_NAME", "ActionCall", "ActionFn", "ActionSpec"]
