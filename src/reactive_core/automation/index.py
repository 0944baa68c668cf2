"""The wake index: which rules a change of `kind:id` concerns, found without looking at
the others — so a change costs in proportion to the rules that read it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .._entities.changes import EntityChange
from .model import (
    ANY_ID,
    AndCondition,
    ChooseAction,
    Condition,
    EntityTrigger,
    EventTrigger,
    NotCondition,
    NumericStateCondition,
    NumericStateTrigger,
    OrCondition,
    Ref,
    Rule,
    StateCondition,
    TemplateCondition,
    Trigger,
    WaitUntilAction,
)


def condition_refs(conditions: Iterable[Condition]) -> set[Ref]:
    """The entity refs `conditions` read."""
    refs: set[Ref] = set()
    for c in conditions:
        if isinstance(c, NumericStateCondition):
            if c.path is not None:
                refs.add(c.path.ref)
            if not isinstance(c.value, (int, float)):
                refs |= c.value.refs
        elif isinstance(c, StateCondition):
            refs.add(c.ref)
        elif isinstance(c, TemplateCondition):
            refs |= c.template.refs
        elif isinstance(c, (AndCondition, OrCondition, NotCondition)):
            refs |= condition_refs(c.conditions)
    return refs


def rule_refs(rule: Rule) -> set[Ref]:
    """Every entity ref `rule` reads: its triggers, conditions and actions' templates."""
    refs = condition_refs(rule.conditions)
    for trigger in rule.triggers:
        what = trigger.what
        if isinstance(what, EntityTrigger):
            refs.add((what.kind, what.id or ANY_ID))
        elif isinstance(what, NumericStateTrigger):
            refs.add(what.path.ref)
        if trigger.filter is not None:
            refs |= trigger.filter.refs
    return refs


def wait_refs(rule: Rule) -> set[Ref]:
    """Refs read by the rule's `wait_until` steps (where waiting runs are woken)."""
    refs: set[Ref] = set()

    def walk(actions: Iterable[object]) -> None:
        for action in actions:
            if isinstance(action, WaitUntilAction):
                refs.update(condition_refs(action.conditions))
            elif isinstance(action, ChooseAction):
                for option in action.options:
                    walk(option.actions)
                walk(action.default)

    walk(rule.actions)
    return refs


@dataclass
class RuleIndex:
    """Rules by what wakes them: entity refs, derived trigger ids, waits' kinds."""

    by_ref: dict[Ref, list[tuple[Rule, Trigger]]] = field(default_factory=dict)
    by_event: dict[str, list[tuple[Rule, Trigger]]] = field(default_factory=dict)
    wait_kinds: set[str] = field(default_factory=set)
    waits_any_kind: bool = False

    @classmethod
    def build(cls, rules: Mapping[str, Rule]) -> RuleIndex:
        index = cls()
        for rule in rules.values():
            if not rule.enabled:
                continue
            for trigger in rule.triggers:
                what = trigger.what
                if isinstance(what, EntityTrigger):
                    index.by_ref.setdefault((what.kind, what.id or ANY_ID), []).append(
                        (rule, trigger))
                elif isinstance(what, NumericStateTrigger):
                    index.by_ref.setdefault(what.path.ref, []).append((rule, trigger))
                elif isinstance(what, EventTrigger):
                    index.by_event.setdefault(what.event, []).append((rule, trigger))
            for kind, _ in wait_refs(rule):
                if kind == ANY_ID:
                    index.waits_any_kind = True
                else:
                    index.wait_kinds.add(kind)
        return index

    def kinds(self, deriver_kinds: Iterable[str], all_kinds: Iterable[str]) -> set[str]:
        """The kinds whose changes the engine must see (its work-queue routes)."""
        kinds = {kind for kind, _ in self.by_ref} | self.wait_kinds
        if self.by_event:
            kinds |= set(deriver_kinds)
        if self.waits_any_kind or ANY_ID in kinds:
            kinds |= set(all_kinds)
        kinds.discard(ANY_ID)
        return kinds

    def entity_matches(self, change: EntityChange) -> list[tuple[Rule, Trigger]]:
        """Entity and numeric-state triggers on `change`'s entity."""
        found = [*self.by_ref.get((change.kind, change.id), ()),
                 *self.by_ref.get((change.kind, ANY_ID), ())]
        return found

    def event_matches(self, events: Iterable[str]) -> list[tuple[Rule, Trigger, str]]:
        """Event triggers for the derived trigger ids `events`."""
        return [(rule, trigger, event) for event in events
                for rule, trigger in self.by_event.get(event, ())]

    def waits_on(self, kind: str) -> bool:
        """Whether some waiting run may read `kind` (look up the waits table)."""
        return self.waits_any_kind or kind in self.wait_kinds
