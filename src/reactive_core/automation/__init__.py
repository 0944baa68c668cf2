"""Rules over entity state: triggers, conditions and actions, run once per cluster.

`load_rules` reads and validates rules (YAML text, a file or a folder of them);
`reactive serve --rules DIR` and `reactive apply -f` install them in a host, whose
engine runs them with durable holds, delays and waits.
"""

from __future__ import annotations

from .demo import DemoWebhook
from .engine import AutomationSettings
from .errors import RuleError
from .loader import RuleSet, load_rules, parse_rules
from .model import Mode, Rule
from .numeric import numeric_state_matches
from .plugin import RULE_KIND, AutomationPlugin, automation_of
from .registration import ActionCall, ActionSpec
from .templates import Template, compile_template

__all__ = [
    "ActionCall",
    "ActionSpec",
    "AutomationPlugin",
    "AutomationSettings",
    "DemoWebhook",
    "Mode",
    "RULE_KIND",
    "Rule",
    "RuleError",
    "RuleSet",
    "Template",
    "automation_of",
    "compile_template",
    "load_rules",
    "numeric_state_matches",
    "parse_rules",
]
