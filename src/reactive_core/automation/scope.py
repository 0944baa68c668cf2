"""What templates and conditions see: `trigger.*`, `state.<kind>.<id>.<field>`, `now()`,
`in_state_for(ref, field)` and `transition_count(ref, field, minutes)`.

A scope lives for one evaluation inside one read unit of work. Entity states are read
lazily, one batched read per kind: the first time a template touches `state.slo`, every
`slo` id the rule names statically is read at once (ids only known at evaluation time
are read one by one as they are reached).
"""

from __future__ import annotations

import json
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select

from .._clock import as_utc
from .._entities.changes import value_text
from .._entities.ids import is_identifier
from .._errors import UnknownEntityKind
from .._store.schema import entity_transitions
from .model import (
    ANY_ID,
    AndCondition,
    Condition,
    NotCondition,
    NumericStateCondition,
    OrCondition,
    Ref,
    StateCondition,
    TemplateCondition,
    TimeCondition,
)
from .numeric import numeric_state_matches

if TYPE_CHECKING:
    from .._host.host import Host


def plain(state: Any) -> dict[str, Any] | None:
    """An entity state as the JSON mapping templates read (field names as stored)."""
    if state is None:
        return None
    if isinstance(state, Mapping):
        return dict(state)
    dumped: dict[str, Any] = json.loads(state.model_dump_json(by_alias=True))
    return dumped


class _Kind(Mapping[str, Any]):
    """`state.<kind>`: entities of one kind by id, read on first access."""

    def __init__(self, scope: Scope, kind: str) -> None:
        self._scope = scope
        self._kind = kind
        self._states: dict[str, dict[str, Any] | None] = {}
        self._batched = False

    def __getitem__(self, entity_id: str) -> Any:
        if not isinstance(entity_id, str):
            raise KeyError(entity_id)
        if not self._batched:
            self._batched = True
            self._load([i for k, i in self._scope.refs if k == self._kind and i != ANY_ID])
        if entity_id not in self._states:
            self._load([entity_id])
        state = self._states.get(entity_id)
        if state is None:
            raise KeyError(entity_id)
        return state

    def _load(self, ids: Iterable[str]) -> None:
        wanted = [i for i in dict.fromkeys(ids) if i not in self._states]
        if not wanted:
            return
        found = self._scope.read_states(self._kind, wanted)
        for entity_id in wanted:
            self._states[entity_id] = found.get(entity_id)

    def __iter__(self) -> Iterator[str]:
        return iter(k for k, v in self._states.items() if v is not None)

    def __len__(self) -> int:
        return sum(v is not None for v in self._states.values())


class _State(Mapping[str, Any]):
    """`state`: kinds by name."""

    def __init__(self, scope: Scope) -> None:
        self._scope = scope
        self._kinds: dict[str, _Kind] = {}

    def __getitem__(self, kind: str) -> _Kind:
        if not isinstance(kind, str) or kind not in self._scope.known_kinds:
            raise KeyError(kind)
        if kind not in self._kinds:
            self._kinds[kind] = _Kind(self._scope, kind)
        return self._kinds[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)


def split_ref(ref: object) -> tuple[str, str] | None:
    """`"kind:id"` as `(kind, id)`, else None."""
    if not isinstance(ref, str) or ":" not in ref:
        return None
    kind, _, entity_id = ref.partition(":")
    return (kind, entity_id) if kind and entity_id else None


class Scope:
    """One evaluation's view of the world, bound to the read unit of work `tx`."""

    def __init__(self, host: Host, tx: Connection, *, trigger: Mapping[str, Any],
                 refs: Iterable[Ref] = (), run: Mapping[str, Any] | None = None,
                 now: datetime | None = None) -> None:
        self.host = host
        self.tx = tx
        self.refs = frozenset(refs)
        self.now = now or host.clock()
        self.known_kinds = host.registry.kinds
        self.variables: dict[str, Any] = {
            "trigger": trigger,
            "state": _State(self),
            "now": lambda: self.now,
            "in_state_for": self.in_state_for,
            "transition_count": self.transition_count,
            "run": dict(run or {}),
        }

    # -- reads ----------------------------------------------------------------------

    def read_states(self, kind: str, ids: list[str]) -> dict[str, dict[str, Any] | None]:
        try:
            handle = self.host.entity(kind)
        except UnknownEntityKind:
            return {}
        return {i: plain(s) for i, s in handle.get_many_in(self.tx, ids).items()}

    def field(self, kind: str, entity_id: str, name: str) -> Any:
        """The current value of one field; None when the entity or field is absent."""
        try:
            state = self.variables["state"][kind][entity_id]
        except KeyError:
            return None
        return state.get(name)

    def in_state_since(self, kind: str, entity_id: str, name: str) -> datetime | None:
        if kind not in self.known_kinds or not is_identifier(entity_id):
            return None
        try:
            return self.host.entity(kind).in_state_since_in(self.tx, entity_id, name)
        except UnknownEntityKind:
            return None

    def in_state_for(self, ref: object, field: object) -> float:
        """Seconds `field` of entity `ref` ("kind:id") has held its current value (0 when
        unknown)."""
        parts = split_ref(ref)
        if parts is None or not isinstance(field, str):
            return 0.0
        since = self.in_state_since(*parts, field)
        return max((self.now - since).total_seconds(), 0.0) if since else 0.0

    def transition_count(self, ref: object, field: object, minutes: object) -> int:
        """How many times `field` of `ref` changed in the last `minutes`."""
        parts = split_ref(ref)
        if (parts is None or not isinstance(field, str) or isinstance(minutes, bool)
                or not isinstance(minutes, (int, float)) or not is_identifier(parts[1])):
            return 0
        t = entity_transitions
        since = self.now - timedelta(minutes=float(minutes))
        return int(self.tx.execute(select(func.count()).select_from(t).where(
            t.c.kind == parts[0], t.c.entity_id == parts[1], t.c.field == field,
            t.c.transitioned_at >= since)).scalar_one())

    def held_for(self, kind: str, entity_id: str, name: str, seconds: float,
                 matches: Callable[[Any], bool]) -> bool:
        """True when `matches` was true of the field for the whole last `seconds`, read
        from the transition log (the value before the window included)."""
        if not is_identifier(entity_id):
            return False
        t = entity_transitions
        since = self.now - timedelta(seconds=seconds)
        rows = self.tx.execute(
            select(t.c.from_value, t.c.to_value, t.c.transitioned_at)
            .where(t.c.kind == kind, t.c.entity_id == entity_id, t.c.field == name,
                   t.c.transitioned_at > since)
            .order_by(t.c.transitioned_at, t.c.id)).all()
        if not rows:
            first = self.tx.execute(
                select(t.c.transitioned_at).where(
                    t.c.kind == kind, t.c.entity_id == entity_id, t.c.field == name)
                .order_by(t.c.transitioned_at).limit(1)).first()
            return first is not None and as_utc(first.transitioned_at) <= since
        if rows[0].from_value is None and not matches(None):
            return False
        return matches(_parsed(rows[0].from_value)) and all(
            matches(_parsed(r.to_value)) for r in rows)

    # -- conditions -----------------------------------------------------------------

    def check_all(self, conditions: Iterable[Condition]) -> tuple[bool, list[dict[str, Any]]]:
        """Evaluate `conditions` in order until one fails: (all true, one record each)."""
        results: list[dict[str, Any]] = []
        for condition in conditions:
            ok, detail = self.check(condition)
            results.append({"condition": describe(condition), "result": ok, **detail})
            if not ok:
                return False, results
        return True, results

    def check(self, condition: Condition) -> tuple[bool, dict[str, Any]]:
        """One condition: (true?, details for the run's trace)."""
        if isinstance(condition, NumericStateCondition):
            return self._numeric(condition)
        if isinstance(condition, StateCondition):
            return self._state(condition)
        if isinstance(condition, TimeCondition):
            return time_matches(condition, self.now), {}
        if isinstance(condition, TemplateCondition):
            return condition.template.truthy(self.variables), {}
        if isinstance(condition, AndCondition):
            return self.check_all(condition.conditions)[0], {}
        if isinstance(condition, OrCondition):
            return any(self.check(c)[0] for c in condition.conditions), {}
        if isinstance(condition, NotCondition):
            return not any(self.check(c)[0] for c in condition.conditions), {}
        raise TypeError(f"not a condition: {condition!r}")

    def _numeric(self, c: NumericStateCondition) -> tuple[bool, dict[str, Any]]:
        if isinstance(c.value, (int, float)):
            value: Any = c.value
        elif c.path is not None and c.path.id is not None:
            value = self.field(c.path.kind, c.path.id, c.path.field)
        else:
            value = c.value.evaluate(self.variables)
        ok = numeric_state_matches(value, above=c.above, below=c.below)
        detail: dict[str, Any] = {"value": _shown(value)}
        if ok and c.hold and c.path is not None and c.path.id is not None:
            ok = self.held_for(c.path.kind, c.path.id, c.path.field, c.hold,
                               lambda v: numeric_state_matches(v, above=c.above, below=c.below))
            detail["held"] = ok
        return ok, detail

    def _state(self, c: StateCondition) -> tuple[bool, dict[str, Any]]:
        kind, entity_id = c.ref
        values = {name: self.field(kind, entity_id, name) for name, _ in c.fields}
        ok = all(_equal(values[name], expected) for name, expected in c.fields)
        if ok and c.hold:
            since = [self.in_state_since(kind, entity_id, name) for name, _ in c.fields]
            ok = all(s is not None and (self.now - s).total_seconds() >= c.hold for s in since)
        return ok, {"values": {k: _shown(v) for k, v in values.items()}}


def _parsed(text: str | None) -> Any:
    """A transition value back from its text form (JSON for non-strings)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _equal(actual: Any, expected: Any) -> bool:
    if actual == expected and type(actual) is not bool and type(expected) is not bool:
        return True
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected
    return value_text(actual) == value_text(expected)


def _shown(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def time_matches(c: TimeCondition, now: datetime) -> bool:
    """Whether `now` falls in the condition's window (overnight when after > before)."""
    local = now.astimezone(zoneinfo.ZoneInfo(c.timezone))
    if c.weekdays is not None and local.weekday() not in c.weekdays:
        return False
    clock = local.time().replace(tzinfo=None)
    after, before = c.after, c.before
    if after is not None and before is not None and after > before:
        return clock >= after or clock < before
    return (after is None or clock >= after) and (before is None or clock < before)


def describe(condition: Condition) -> str:
    """A short text form of a condition for traces and listings."""
    if isinstance(condition, NumericStateCondition):
        what = (condition.path and str(condition.path)) or (
            condition.value if isinstance(condition.value, (int, float))
            else condition.value.source)
        bounds = " ".join(f"{n} {v:g}" for n, v in (("above", condition.above),
                                                    ("below", condition.below)) if v is not None)
        hold = f" for {condition.hold:g}s" if condition.hold else ""
        return f"numeric_state {what} {bounds}{hold}"
    if isinstance(condition, StateCondition):
        fields = ", ".join(f"{k}={v!r}" for k, v in condition.fields)
        return f"state {condition.ref[0]}:{condition.ref[1]} {fields}"
    if isinstance(condition, TimeCondition):
        return (f"time after {condition.after or '-'} before {condition.before or '-'} "
                f"{condition.timezone}")
    if isinstance(condition, TemplateCondition):
        return f"template {condition.template.source}"
    name = {AndCondition: "and", OrCondition: "or", NotCondition: "not"}[type(condition)]
    return f"{name}({', '.join(describe(c) for c in condition.conditions)})"
