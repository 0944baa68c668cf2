"""The small values of a rule — durations, clock times, weekdays, bounds — and where
each came from, so a refusal names the file and the line of the offending node."""

from __future__ import annotations

import math
import re
import zoneinfo
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import time
from typing import Any

import yaml

from .._entities.ids import check_id, check_name
from .._errors import InvalidIdentifier
from .._host.configfile import _line_of
from .errors import RuleError
from .templates import Template, compile_template

NodePath = tuple[str | int, ...]
"""Keys and indexes from the rule's mapping to a node: `("triggers", 0, "window")`."""

MAX_DURATION = 366 * 86400.0
"""The longest duration a rule may give (a year), in seconds."""

_UNITS = {"days": 86400.0, "hours": 3600.0, "minutes": 60.0, "seconds": 1.0}
_CLOCK = re.compile(r"^(\d+):([0-5]\d)(?::([0-5]\d))?$")
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                  "sunday")


def shown(value: Any, width: int = 60) -> str:
    """`value` for a message: its repr, cut to `width` characters."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def kind_of(value: Any) -> str:
    """What `value` is, for a message ("received a list")."""
    if value is None:
        return "nothing"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "text",
             list: "a list", tuple: "a list", dict: "a mapping"}
    return names.get(type(value), type(value).__name__)


@dataclass(frozen=True, slots=True)
class Place:
    """One rule being read: its file, its node (for lines), its id once known."""

    source: str | None
    node: yaml.Node | None
    line: int | None
    rule_id: str | None = None
    actions: frozenset[str] | None = None

    def line_at(self, path: NodePath) -> int | None:
        """The line of the node at `path` (the rule's own line without a node tree)."""
        if self.node is None:
            return self.line
        return _line_of(self.node, path)

    def error(self, path: NodePath, message: str) -> RuleError:
        """A `RuleError` at the node `path` leads to."""
        return RuleError(message, path=self.source, line=self.line_at(path),
                         rule_id=self.rule_id, where=tuple(path))

    def template(self, value: Any, path: NodePath, *, expression: bool) -> Template:
        """`value` compiled as a template; refusals name the template's own line."""
        line = self.line_at(path)
        node = self._node_at(path)
        if line is not None and isinstance(node, yaml.ScalarNode) and node.style == "|":
            line += 1  # a literal block's text starts below its indicator
        try:
            return compile_template(value, expression=expression, path=self.source,
                                    line=line)
        except RuleError as exc:
            raise RuleError(f"{where_text(path)}: {exc.detail}", path=self.source,
                            line=exc.line, rule_id=self.rule_id) from None

    def _node_at(self, path: NodePath) -> yaml.Node | None:
        node = self.node
        for step in path:
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if k.value == str(step)), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
                node = node.value[step] if step < len(node.value) else None
            else:
                return None
        return node


def where_text(path: NodePath) -> str:
    """`path` as the rule author reads it: `triggers[0].window`."""
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else f".{step}" if text else str(step)
    return text or "rule"


def check_keys(place: Place, value: Mapping[str, Any], path: NodePath, allowed: Collection[str],
               what: str) -> None:
    """Refuse a key of `value` outside `allowed`, naming the allowed ones."""
    for key in value:
        if key not in allowed:
            raise place.error((*path, key), f"unknown key {shown(key)} in {what}: expected "
                                            f"{', '.join(sorted(allowed))}")


def mapping(place: Place, value: Any, path: NodePath, what: str) -> Mapping[str, Any]:
    """`value` when it is a mapping, else a refusal naming `what` was expected."""
    if not isinstance(value, Mapping):
        raise place.error(path, f"{what}: expected a mapping, received {kind_of(value)} "
                                f"{shown(value)}")
    return value


def items(place: Place, value: Any, path: NodePath, what: str, *,
          single: bool = False) -> list[Any]:
    """`value` as a non-empty list (one item alone accepted when `single`)."""
    if single and not isinstance(value, list):
        return [value]
    if not isinstance(value, list) or not value:
        raise place.error(path, f"{what}: expected a non-empty list, received "
                                f"{kind_of(value)} {shown(value)}")
    return value


def number(place: Place, value: Any, path: NodePath, what: str) -> float:
    """A finite number (booleans refused)."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value)):
        raise place.error(path, f"{what}: expected a finite number, received "
                                f"{kind_of(value)} {shown(value)}")
    return float(value)


def integer(place: Place, value: Any, path: NodePath, what: str, low: int, high: int) -> int:
    """An int between `low` and `high` inclusive (booleans refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise place.error(path, f"{what}: expected a whole number from {low} to {high}, "
                                f"received {shown(value)}")
    return value


def text(place: Place, value: Any, path: NodePath, what: str) -> str:
    """Non-empty text."""
    if not isinstance(value, str) or not value.strip():
        raise place.error(path, f"{what}: expected text, received {kind_of(value)} "
                                f"{shown(value)}")
    return value


def boolean(place: Place, value: Any, path: NodePath, what: str) -> bool:
    """true or false."""
    if not isinstance(value, bool):
        raise place.error(path, f"{what}: expected true or false, received {shown(value)}")
    return value


def identifier(place: Place, value: Any, path: NodePath, what: str, *,
               name: bool = False) -> str:
    """`value` when it follows the identifier rule (the name rule when `name`)."""
    try:
        return check_name(value, what) if name else check_id(value, what)
    except InvalidIdentifier as exc:
        raise place.error(path, str(exc)) from None


def entity_ref(place: Place, value: Any, path: NodePath) -> tuple[str, str | None]:
    """`"kind"` or `"kind:id"` as `(kind, id)`."""
    if not isinstance(value, str):
        raise place.error(path, f"{where_text(path)}: expected an entity kind or "
                                f"\"kind:id\", received {kind_of(value)} {shown(value)}")
    kind, colon, entity_id = value.partition(":")
    kind = identifier(place, kind, path, "entity kind", name=True)
    if not colon:
        return kind, None
    if not entity_id:
        raise place.error(path, f"{where_text(path)}: expected \"kind:id\", received "
                                f"{shown(value)}")
    return kind, identifier(place, entity_id, path, "entity id")


def one_entity(place: Place, value: Any, path: NodePath) -> tuple[str, str]:
    """`"kind:id"` as `(kind, id)`: one entity, not a whole kind."""
    kind, entity_id = entity_ref(place, value, path)
    if entity_id is None:
        raise place.error(path, f"{where_text(path)}: expected one entity \"kind:id\", "
                                f"received {shown(value)}")
    return kind, entity_id


def parse_duration(value: object, *, where: str) -> float:
    """Seconds from `{days, hours, minutes, seconds}`, a number of seconds, or text
    "HH:MM:SS" / "MM:SS"; a `RuleError` (without a place) naming `where` otherwise."""
    expected = ("expected {days, hours, minutes, seconds} (non-negative numbers, at least "
                "one), a number of seconds or \"HH:MM:SS\"")
    seconds: float
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in _UNITS]
        if unknown or not value:
            what = f"unknown key {shown(unknown[0])}" if unknown else "nothing given"
            raise RuleError(f"{where}: {what}: {expected}")
        seconds = 0.0
        for unit, amount in value.items():
            if (isinstance(amount, bool) or not isinstance(amount, (int, float))
                    or not math.isfinite(amount) or amount < 0):
                raise RuleError(f"{where}: {unit} {shown(amount)}: expected a non-negative "
                                f"number")
            seconds += float(amount) * _UNITS[unit]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise RuleError(f"{where}: {shown(value)} seconds: expected a non-negative "
                            f"finite number")
        seconds = float(value)
    elif isinstance(value, str) and (match := _CLOCK.match(value.strip())):
        first, second, third = match.groups()
        if third is None:
            seconds = int(first) * 60.0 + int(second)
        else:
            seconds = int(first) * 3600.0 + int(second) * 60 + int(third)
    else:
        raise RuleError(f"{where}: received {kind_of(value)} {shown(value)}: {expected}")
    if seconds > MAX_DURATION:
        raise RuleError(f"{where}: {seconds:,.0f} seconds: expected at most "
                        f"{MAX_DURATION:,.0f} (a year)")
    return seconds


def duration(place: Place, value: Any, path: NodePath, *, minimum: float = 0.0) -> float:
    """`parse_duration` at `path`, at least `minimum` seconds."""
    what = where_text(path)
    try:
        seconds = parse_duration(value, where=what)
    except RuleError as exc:
        raise place.error(path, exc.detail) from None
    if seconds < minimum:
        raise place.error(path, f"{what}: {seconds:g} seconds: expected at least "
                                f"{minimum:g}")
    return seconds


def clock_time(place: Place, value: Any, path: NodePath) -> time:
    """"HH:MM" or "HH:MM:SS"; a whole number is minutes after midnight (how YAML 1.1
    reads an unquoted 22:00)."""
    what = where_text(path)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1440:
        return time(value // 60, value % 60)
    if isinstance(value, str) and (match := _TIME.match(value.strip())):
        hour, minute, second = match.groups()
        return time(int(hour), int(minute), int(second or 0))
    raise place.error(path, f"{what}: expected a time of day \"HH:MM\" (00:00 to 23:59), "
                            f"received {shown(value)}")


def timezone(place: Place, value: Any, path: NodePath) -> str:
    """An IANA time zone name the system knows."""
    what = where_text(path)
    if isinstance(value, str) and value.strip() == value and value:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            pass
        else:
            return value
    raise place.error(path, f"{what}: unknown time zone {shown(value)}: expected an IANA "
                            f"name such as UTC or Europe/Berlin")


def weekdays(place: Place, value: Any, path: NodePath) -> frozenset[int]:
    """Day names (mon … sun, or in full) or numbers 0 (Monday) … 6; one or a list."""
    what = where_text(path)
    days: set[int] = set()
    for index, day in enumerate(value if isinstance(value, list) else [value]):
        at: NodePath = (*path, index) if isinstance(value, list) else path
        if isinstance(day, int) and not isinstance(day, bool) and 0 <= day <= 6:
            days.add(day)
        elif isinstance(day, str) and day.strip().lower() in (*_WEEKDAYS, *_FULL_WEEKDAYS):
            name = day.strip().lower()[:3]
            days.add(_WEEKDAYS.index(name))
        else:
            raise place.error(at, f"{what}: unknown weekday {shown(day)}: expected "
                                  f"{', '.join(_WEEKDAYS)} or 0 (Monday) to 6")
    if not days:
        raise place.error(path, f"{what}: expected at least one weekday")
    return frozenset(days)


def bounds(place: Place, spec: Mapping[str, Any], path: NodePath) -> tuple[float | None,
                                                                       float | None]:
    """`above` and/or `below`: finite numbers leaving a non-empty band."""
    above = spec.get("above")
    below = spec.get("below")
    if above is None and below is None:
        raise place.error(path, f"{where_text(path)}: expected above and/or below")
    low = None if above is None else number(place, above, (*path, "above"), "above")
    high = None if below is None else number(place, below, (*path, "below"), "below")
    if low is not None and high is not None and low >= high:
        raise place.error((*path, "above"), f"above ({low:g}) must be less than below "
                                            f"({high:g}): the band would be empty")
    return low, high


class NotPlainData(ValueError):
    """A value that is not JSON data, at `path` in the rule."""

    def __init__(self, message: str, path: NodePath) -> None:
        super().__init__(f"{where_text(path)}: {message}")
        self.path = path


def plain_data(value: Any, path: NodePath = ()) -> Any:
    """A copy of `value` as JSON data (dicts with text keys, lists, text, finite numbers,
    booleans, None); `NotPlainData` naming the place of anything else."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotPlainData(f"{value!r} is not a finite number", path)
        return value
    if isinstance(value, Mapping):
        copy: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotPlainData(f"key {shown(key)} is {kind_of(key)}: expected text keys "
                                   "(quote it in YAML)", path)
            copy[key] = plain_data(item, (*path, key))
        return copy
    if isinstance(value, (list, tuple)):
        return [plain_data(item, (*path, i)) for i, item in enumerate(value)]
    raise NotPlainData(f"{shown(value)} is {kind_of(value)}, not JSON data: expected text, "
                       "a number, true/false, a list or a mapping", path)


class _WrittenLoader(yaml.SafeLoader):
    """Builds YAML data keeping what YAML 1.1 would turn into numbers or dates from
    colon- and dash-separated text (`22:00` as 1320, `2024-05-01` as a date) as written."""


def _as_written(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    if ":" in str(node.value):
        return node.value
    if node.tag.endswith(":int"):
        return loader.construct_yaml_int(node)
    return loader.construct_yaml_float(node)


def _text_as_written(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    return loader.construct_scalar(node)


_WrittenLoader.add_constructor("tag:yaml.org,2002:int", _as_written)
_WrittenLoader.add_constructor("tag:yaml.org,2002:float", _as_written)
_WrittenLoader.add_constructor("tag:yaml.org,2002:timestamp", _text_as_written)


def written_data(root: yaml.Node) -> Any:
    """The data of the (already checked) node tree `root`, times and dates as written."""
    loader = _WrittenLoader("")
    try:
        return loader.construct_document(root)
    finally:
        loader.dispose()
