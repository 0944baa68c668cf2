"""The public surface: exactly these names, sorted, each really exported."""

from __future__ import annotations

import reactive_core

EXPECTED = {
    "Actor", "Broadcast", "CONFIG_ACTOR", "CONFIG_REASON", "CacheEntry", "CacheStore",
    "CliCommand", "CliContext", "ConfigError", "ConfigItemError", "DatabaseBusy",
    "DeliveryNotFound", "DeliveryRow", "DeliveryStatus", "DemoContext", "DemoStep",
    "DoctorReport", "DuplicateRegistration", "EntityChange", "EntityHandle", "EntityKind",
    "Host", "HostConfig", "Identifier", "InvalidEntityState", "InvalidIdentifier",
    "MemoryCacheStore", "PluginLoadError", "QueueStatus", "ReactiveCoreError",
    "ReadThroughCache", "Registry", "RegistryError", "RetryPolicy", "RouteFinding",
    "RouteStatus", "SYSTEM_ACTOR", "TableFinding", "Timer", "TimerError", "TimerStatus",
    "Timers", "TransactionEnded", "Transition", "UnknownEntityKind", "WorkQueue", "Write", "after_commit",
    "apply_config_file", "apply_config_text", "check_id", "diff_states", "doctor", "hookimpl",
    "hookspec", "with_entity_remove", "with_entity_write",
}


def test_public_names_are_pinned_and_sorted() -> None:
    assert set(reactive_core.__all__) == EXPECTED
    assert reactive_core.__all__ == sorted(reactive_core.__all__)
    for name in reactive_core.__all__:
        assert getattr(reactive_core, name) is not None


def test_errors_form_one_tree() -> None:
    for name in reactive_core.__all__:
        obj = getattr(reactive_core, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, reactive_core.ReactiveCoreError), name


AUTOMATION = {
    "RULE_KIND", "ActionCall", "ActionSpec", "AutomationPlugin", "AutomationSettings",
    "DemoWebhook", "Mode", "Rule", "RuleError", "RuleSet", "Template", "automation_of",
    "compile_template", "load_rules", "numeric_state_matches", "parse_rules",
}


def test_the_automation_surface_is_pinned_and_sorted() -> None:
    import reactive_core.automation as automation

    assert set(automation.__all__) == AUTOMATION
    assert automation.__all__ == sorted(automation.__all__)
    assert issubclass(automation.RuleError, reactive_core.ReactiveCoreError)
