"""A rule's triggers, conditions and actions, built from their YAML form.

Every builder takes the rule's `Place` and the path of the item it reads, so a refusal
names the line of the offending node and what was expected there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .loader_values import (
    NodePath,
    Place,
    boolean,
    bounds,
    check_keys,
    clock_time,
    duration,
    entity_ref,
    identifier,
    integer,
    items,
    mapping,
    number,
    one_entity,
    shown,
    text,
    timezone,
    weekdays,
    where_text,
)
from .model import (
    Action,
    AndCondition,
    ChooseAction,
    ChooseOption,
    Condition,
    DelayAction,
    EntityTrigger,
    EventTrigger,
    FieldPath,
    IntervalTrigger,
    LogAction,
    NotCondition,
    NumericStateCondition,
    NumericStateTrigger,
    OrCondition,
    PluginAction,
    StateCondition,
    StopAction,
    TemplateCondition,
    TimeCondition,
    TimeTrigger,
    Trigger,
    TriggerKind,
    WaitUntilAction,
    WebhookAction,
    Window,
)
from .registration import ACTION_NAME
from .templates import Template, simple_path

TRIGGERS = ("entity", "event", "numeric_state", "time", "interval")
CONDITIONS = ("numeric_state", "state", "time", "template", "and", "or", "not")
ACTIONS = ("log", "webhook", "delay", "wait_until", "choose", "stop")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
LEVELS = ("debug", "info", "warning", "error")

_GATES = ("filter", "window")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def _type_key(place: Place, spec: Mapping[str, Any], path: NodePath, types: tuple[str, ...],
              what: str, extra: tuple[str, ...] = ()) -> str:
    """The one key of `spec` naming its type (`entity`, `log`, …)."""
    found = [key for key in spec if key in types]
    if len(found) > 1:
        raise place.error(path, f"a {what} has one type, received {' and '.join(found)}")
    if found:
        return found[0]
    unknown = next((key for key in spec if key not in extra), None)
    if unknown is None:
        raise place.error(path, f"a {what} without a type: expected one of {', '.join(types)}")
    raise place.error(path, f"unknown {what} {shown(unknown)}: expected one of "
                            f"{', '.join(types)}")


# -- triggers ---------------------------------------------------------------------------

def trigger(place: Place, value: Any, path: NodePath, index: int) -> Trigger:
    """One item of `triggers`."""
    spec = mapping(place, value, path, where_text(path))
    kind = _type_key(place, spec, path, TRIGGERS, "trigger", (*_GATES, "id", "field"))
    extra = ("id", "field") if kind == "entity" else ()
    check_keys(place, spec, path, (kind, *_GATES, *extra), f"the {kind} trigger")
    at: NodePath = (*path, kind)
    what: TriggerKind
    if kind == "entity":
        what = _entity_trigger(place, spec, path)
    elif kind == "event":
        what = EventTrigger(identifier(place, spec[kind], at, "event"))
    elif kind == "numeric_state":
        what = _numeric_trigger(place, spec[kind], at)
    elif kind == "time":
        what = _time_trigger(place, spec[kind], at)
    else:
        what = IntervalTrigger(duration(place, spec[kind], at, minimum=1.0))
    check = spec.get("filter")
    return Trigger(
        index=index, what=what, line=place.line_at(path),
        filter=None if check is None else place.template(check, (*path, "filter"),
                                                         expression=True),
        window=None if spec.get("window") is None else _window(place, spec["window"],
                                                               (*path, "window")))


def _entity_trigger(place: Place, spec: Mapping[str, Any], path: NodePath) -> EntityTrigger:
    kind, entity_id = entity_ref(place, spec["entity"], (*path, "entity"))
    if spec.get("id") is not None:
        if entity_id is not None:
            raise place.error((*path, "id"), "the entity id is given twice (in entity "
                                             "\"kind:id\" and in id): expected it once")
        entity_id = identifier(place, spec["id"], (*path, "id"), "id")
    field = spec.get("field")
    if field is not None:
        field = identifier(place, field, (*path, "field"), "field")
    return EntityTrigger(kind=kind, id=entity_id, field=field)


def _window(place: Place, value: Any, path: NodePath) -> Window:
    spec = mapping(place, value, path, "window")
    check_keys(place, spec, path, ("count", "minutes", "refire", "partition_by"), "window")
    if "count" not in spec or "minutes" not in spec:
        raise place.error(path, "window: expected count and minutes")
    minutes = number(place, spec["minutes"], (*path, "minutes"), "window minutes")
    if minutes <= 0:
        raise place.error((*path, "minutes"), f"window minutes {minutes:g}: expected more "
                                              "than 0")
    refire = spec.get("refire", "every")
    if refire not in ("every", "once"):
        raise place.error((*path, "refire"), f"window refire {shown(refire)}: expected "
                                             "every or once")
    partition = spec.get("partition_by")
    return Window(
        count=integer(place, spec["count"], (*path, "count"), "window count", 1, 1_000_000),
        minutes=minutes, refire=refire,
        partition_by=None if partition is None else place.template(
            partition, (*path, "partition_by"), expression=True))


def _numeric_trigger(place: Place, value: Any, path: NodePath) -> NumericStateTrigger:
    spec = mapping(place, value, path, "numeric_state")
    check_keys(place, spec, path, ("value", "entity", "field", "above", "below", "for"),
               "a numeric_state trigger")
    _, field_path = _numeric_value(place, spec, path)
    if field_path is None:
        raise place.error((*path, "value"), "a numeric_state trigger watches one field: "
                                            "expected value state.<kind>.<id>.<field> or "
                                            "entity and field")
    above, below = bounds(place, spec, path)
    hold = None if spec.get("for") is None else duration(place, spec["for"], (*path, "for"))
    return NumericStateTrigger(path=field_path, above=above, below=below, hold=hold)


def _numeric_value(place: Place, spec: Mapping[str, Any],
                   path: NodePath) -> tuple[Template | float | None, FieldPath | None]:
    """`value` (a number or an expression) or `entity` + `field`, and the field path
    when it is one (no value for `entity: <kind>`: any entity of the kind)."""
    if "entity" in spec or "field" in spec:
        if "value" in spec:
            raise place.error((*path, "value"), "expected value or entity and field, not both")
        if "entity" not in spec or "field" not in spec:
            raise place.error(path, "expected entity and field together")
        kind, entity_id = entity_ref(place, spec["entity"], (*path, "entity"))
        field = identifier(place, spec["field"], (*path, "field"), "field")
        if entity_id is None:
            return None, FieldPath(kind, None, field)
        source = "state[{}][{}][{}]".format(
            *(json.dumps(part, ensure_ascii=False) for part in (kind, entity_id, field)))
        return (place.template(source, (*path, "entity"), expression=True),
                FieldPath(kind, entity_id, field))
    if "value" not in spec:
        raise place.error(path, "expected value (a number or an expression) or entity and "
                                "field")
    value = spec["value"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number(place, value, (*path, "value"), "value"), None
    template = place.template(text(place, value, (*path, "value"), "value"),
                              (*path, "value"), expression=True)
    found = simple_path(template)
    return template, None if found is None else FieldPath(*found)


def _time_trigger(place: Place, value: Any, path: NodePath) -> TimeTrigger:
    if not isinstance(value, Mapping):
        return TimeTrigger(at=clock_time(place, value, path))
    check_keys(place, value, path, ("at", "timezone", "weekdays"), "a time trigger")
    if "at" not in value:
        raise place.error(path, "time: expected at (\"HH:MM\")")
    days = value.get("weekdays")
    return TimeTrigger(
        at=clock_time(place, value["at"], (*path, "at")),
        timezone=timezone(place, value.get("timezone", "UTC"), (*path, "timezone")),
        weekdays=None if days is None else weekdays(place, days, (*path, "weekdays")))


# -- conditions -------------------------------------------------------------------------

def conditions(place: Place, value: Any, path: NodePath, *, single: bool = False,
               ) -> tuple[Condition, ...]:
    """A list of conditions (one alone accepted when `single`)."""
    listed = isinstance(value, list)
    found = items(place, value, path, where_text(path), single=single)
    return tuple(condition(place, item, (*path, i) if listed else path)
                 for i, item in enumerate(found))


def condition(place: Place, value: Any, path: NodePath) -> Condition:
    """One condition; bare text is a template condition."""
    line = place.line_at(path)
    if isinstance(value, str):
        return TemplateCondition(place.template(value, path, expression=True), line=line)
    spec = mapping(place, value, path, where_text(path))
    kind = _type_key(place, spec, path, CONDITIONS, "condition")
    check_keys(place, spec, path, (kind,), f"the {kind} condition")
    at: NodePath = (*path, kind)
    body = spec[kind]
    if kind == "numeric_state":
        return _numeric_condition(place, body, at, line)
    if kind == "state":
        return _state_condition(place, body, at, line)
    if kind == "time":
        return _time_condition(place, body, at, line)
    if kind == "template":
        source = text(place, body, at, "template")
        return TemplateCondition(place.template(source, at, expression=True), line=line)
    inner = conditions(place, body, at, single=kind == "not")
    if kind == "and":
        return AndCondition(inner, line=line)
    if kind == "or":
        return OrCondition(inner, line=line)
    return NotCondition(inner, line=line)


def _numeric_condition(place: Place, value: Any, path: NodePath,
                       line: int | None) -> NumericStateCondition:
    spec = mapping(place, value, path, "numeric_state")
    check_keys(place, spec, path, ("value", "entity", "field", "above", "below", "for"),
               "a numeric_state condition")
    measured, field_path = _numeric_value(place, spec, path)
    if measured is None:
        raise place.error((*path, "entity"), "a numeric_state condition reads one entity: "
                                             "expected entity \"kind:id\"")
    above, below = bounds(place, spec, path)
    hold = None
    if spec.get("for") is not None:
        hold = duration(place, spec["for"], (*path, "for"))
        if field_path is None:
            raise place.error((*path, "for"), "for needs one field's history: expected value "
                                              "state.<kind>.<id>.<field> or entity and field")
    return NumericStateCondition(value=measured, path=field_path, above=above, below=below,
                                 hold=hold, line=line)


def _state_condition(place: Place, value: Any, path: NodePath,
                     line: int | None) -> StateCondition:
    spec = mapping(place, value, path, "state")
    if "entity" not in spec:
        raise place.error(path, "state: expected entity (\"kind:id\") and the fields to "
                                "compare")
    ref = one_entity(place, spec["entity"], (*path, "entity"))
    fields = tuple((identifier(place, key, (*path, key), "field"), expected)
                   for key, expected in spec.items() if key not in ("entity", "for"))
    if not fields:
        raise place.error(path, "state: expected at least one field and its value, e.g. "
                                "status: degraded")
    hold = None if spec.get("for") is None else duration(place, spec["for"], (*path, "for"))
    return StateCondition(ref=ref, fields=fields, hold=hold, line=line)


def _time_condition(place: Place, value: Any, path: NodePath, line: int | None) -> TimeCondition:
    spec = mapping(place, value, path, "time")
    check_keys(place, spec, path, ("after", "before", "weekday", "weekdays", "timezone"),
               "a time condition")
    if "weekday" in spec and "weekdays" in spec:
        raise place.error(path, "time: expected weekday or weekdays, not both")
    day_key = "weekday" if "weekday" in spec else "weekdays"
    if not {"after", "before", day_key} & set(spec):
        raise place.error(path, "time: expected at least one of after, before, weekday")
    after = None if spec.get("after") is None else clock_time(place, spec["after"],
                                                              (*path, "after"))
    before = None if spec.get("before") is None else clock_time(place, spec["before"],
                                                                (*path, "before"))
    if after is not None and after == before:
        raise place.error((*path, "before"), f"time: after and before are both {after}: "
                                             "the window would be empty")
    days = spec.get(day_key)
    return TimeCondition(
        after=after, before=before, line=line,
        weekdays=None if days is None else weekdays(place, days, (*path, day_key)),
        timezone=timezone(place, spec.get("timezone", "UTC"), (*path, "timezone")))


# -- actions ----------------------------------------------------------------------------

def actions(place: Place, value: Any, path: NodePath) -> tuple[Action, ...]:
    """A non-empty list of actions."""
    found = items(place, value, path, where_text(path))
    return tuple(action(place, item, (*path, i)) for i, item in enumerate(found))


def action(place: Place, value: Any, path: NodePath) -> Action:
    """One action: a built-in one or a plugin's `plugin.action`."""
    line = place.line_at(path)
    spec = mapping(place, value, path, where_text(path))
    plugin = [key for key in spec if key not in ACTIONS and key != "default"
              and isinstance(key, str) and "." in key]
    if plugin:
        return _plugin_action(place, spec, path, plugin[0], line)
    kind = _type_key(place, spec, path, ACTIONS, "action", ("default",))
    check_keys(place, spec, path, (kind, "default") if kind == "choose" else (kind,),
               f"the {kind} action")
    at: NodePath = (*path, kind)
    body = spec[kind]
    if kind == "log":
        return _log(place, body, at, line)
    if kind == "webhook":
        return _webhook(place, body, at, line)
    if kind == "delay":
        return DelayAction(duration(place, body, at), line=line)
    if kind == "wait_until":
        return _wait_until(place, body, at, line)
    if kind == "choose":
        return _choose(place, spec, path, line)
    return _stop(place, body, at, line)


def templated(place: Place, value: Any, path: NodePath) -> Any:
    """`value` with every text in it compiled as a text template (keys stay text)."""
    if isinstance(value, str):
        return place.template(value, path, expression=False)
    if isinstance(value, list):
        return [templated(place, item, (*path, i)) for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        return {key: templated(place, item, (*path, key)) for key, item in value.items()}
    return value


def _plugin_action(place: Place, spec: Mapping[str, Any], path: NodePath, name: str,
                   line: int | None) -> PluginAction:
    check_keys(place, spec, path, (name,), f"the {name} action")
    if not ACTION_NAME.match(name):
        raise place.error(path, f"action name {shown(name)}: expected plugin.action in lower "
                                "case, e.g. health.pause_check")
    if place.actions is not None and name not in place.actions:
        offered = ", ".join(sorted(place.actions)) or "none registered"
        raise place.error(path, f"unknown action {shown(name)}: expected one of "
                                f"{', '.join(ACTIONS)} or a plugin action ({offered})")
    return PluginAction(name=name, params=templated(place, spec[name], (*path, name)),
                        line=line)


def _log(place: Place, value: Any, path: NodePath, line: int | None) -> LogAction:
    if isinstance(value, Mapping):
        check_keys(place, value, path, ("message", "level"), "a log action")
        level = value.get("level", "info")
        if level not in LEVELS:
            raise place.error((*path, "level"), f"log level {shown(level)}: expected one of "
                                                f"{', '.join(LEVELS)}")
        message = text(place, value.get("message"), (*path, "message"), "log message")
        return LogAction(place.template(message, (*path, "message"), expression=False),
                         level=level, line=line)
    message = text(place, value, path, "log")
    return LogAction(place.template(message, path, expression=False), line=line)


def _webhook(place: Place, value: Any, path: NodePath, line: int | None) -> WebhookAction:
    spec = mapping(place, value, path, "webhook")
    check_keys(place, spec, path, ("url", "method", "headers", "body", "timeout", "retries",
                                   "backoff"), "a webhook action")
    url = text(place, spec.get("url"), (*path, "url"), "webhook url")
    if "{{" not in url and "{%" not in url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise place.error((*path, "url"), f"webhook url {shown(url)}: expected an http "
                                              "or https URL")
    method = spec.get("method", "POST")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise place.error((*path, "method"), f"webhook method {shown(method)}: expected one "
                                             f"of {', '.join(METHODS)}")
    headers: list[tuple[str, Template]] = []
    for name, header in mapping(place, spec.get("headers", {}), (*path, "headers"),
                                "webhook headers").items():
        at: NodePath = (*path, "headers", name)
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise place.error(at, f"header name {shown(name)}: expected an HTTP token")
        if not isinstance(header, str) or "\r" in header or "\n" in header:
            raise place.error(at, f"header {name}: expected text on one line, received "
                                  f"{shown(header)}")
        headers.append((name, place.template(header, at, expression=False)))
    timeout = number(place, spec.get("timeout", 10), (*path, "timeout"), "webhook timeout")
    if not 0 < timeout <= 60:
        raise place.error((*path, "timeout"), f"webhook timeout {timeout:g}: expected more "
                                              "than 0 and at most 60 seconds")
    backoff = number(place, spec.get("backoff", 1), (*path, "backoff"), "webhook backoff")
    if backoff < 0:
        raise place.error((*path, "backoff"), f"webhook backoff {backoff:g}: expected 0 or "
                                              "more seconds")
    return WebhookAction(
        url=place.template(url, (*path, "url"), expression=False), method=method.upper(),
        headers=tuple(headers), body=templated(place, spec.get("body"), (*path, "body")),
        timeout=timeout, backoff=backoff, line=line,
        retries=integer(place, spec.get("retries", 3), (*path, "retries"), "webhook retries",
                        0, 10))


def _wait_until(place: Place, value: Any, path: NodePath, line: int | None) -> WaitUntilAction:
    spec = mapping(place, value, path, "wait_until")
    check_keys(place, spec, path, ("condition", "timeout", "continue_on_timeout"),
               "a wait_until action")
    if "condition" not in spec:
        raise place.error(path, "wait_until: expected condition (one condition or a list)")
    timeout = spec.get("timeout")
    return WaitUntilAction(
        conditions=conditions(place, spec["condition"], (*path, "condition"), single=True),
        timeout=None if timeout is None else duration(place, timeout, (*path, "timeout")),
        continue_on_timeout=boolean(place, spec.get("continue_on_timeout", True),
                                    (*path, "continue_on_timeout"), "continue_on_timeout"),
        line=line)


def _choose(place: Place, spec: Mapping[str, Any], path: NodePath,
            line: int | None) -> ChooseAction:
    options: list[ChooseOption] = []
    at: NodePath = (*path, "choose")
    for index, item in enumerate(items(place, spec["choose"], at, "choose")):
        where: NodePath = (*at, index)
        option = mapping(place, item, where, f"choose[{index}]")
        check_keys(place, option, where, ("conditions", "actions", "sequence"),
                   "a choose option")
        if "conditions" not in option:
            raise place.error(where, "choose option: expected conditions and actions")
        steps_key = "sequence" if "sequence" in option else "actions"
        if "sequence" in option and "actions" in option:
            raise place.error(where, "choose option: expected actions or sequence, not both")
        options.append(ChooseOption(
            conditions=conditions(place, option["conditions"], (*where, "conditions"),
                                  single=True),
            actions=actions(place, option.get(steps_key), (*where, steps_key)),
            line=place.line_at(where)))
    default = spec.get("default")
    return ChooseAction(options=tuple(options), line=line,
                        default=() if default is None else actions(place, default,
                                                                   (*path, "default")))


def _stop(place: Place, value: Any, path: NodePath, line: int | None) -> StopAction:
    if value is None or isinstance(value, str):
        return StopAction(reason=value or "", line=line)
    spec = mapping(place, value, path, "stop")
    check_keys(place, spec, path, ("reason", "error"), "a stop action")
    reason = spec.get("reason", "")
    if not isinstance(reason, str):
        raise place.error((*path, "reason"), f"stop reason: expected text, received "
                                             f"{shown(reason)}")
    return StopAction(reason=reason, line=line,
                      error=boolean(place, spec.get("error", False), (*path, "error"),
                                    "stop error"))
