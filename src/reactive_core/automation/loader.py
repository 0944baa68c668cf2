"""Rules from YAML: a file, a folder of files, or text; every rule checked before use.

A file holds one rule (a mapping with `id`), a list of rules, or `{rules: [...]}`.
`load_rules` raises the first problem; `parse_rules` reports every bad rule and keeps
the good ones, with a hash of each file so a reload can tell what changed. Each rule
keeps its definition as written (plain JSON data): the engine stores it and rebuilds the
rule from it with `rule_from_definition`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .._entities.ids import check_id
from .._errors import ConfigError, InvalidIdentifier
from .._host.configfile import MAX_CONFIG_BYTES, load_yaml, read_config_file
from .errors import RuleError
from .loader_items import actions as build_actions
from .loader_items import conditions as build_conditions
from .loader_items import trigger as build_trigger
from .loader_values import (
    NotPlainData,
    Place,
    boolean,
    check_keys,
    integer,
    items,
    mapping,
    parse_duration,
    plain_data,
    shown,
    written_data,
)
from .model import Mode, Rule

__all__ = ["RuleSet", "load_rules", "parse_duration", "parse_rules", "rule_from_definition"]

RULE_KEYS = ("id", "description", "enabled", "mode", "max", "triggers", "trigger",
             "conditions", "actions")
TEXT_SOURCE = "<text>"
"""The source rules given as text are reported from."""

_SHAPE = "expected a rule (a mapping with id), a list of rules or {rules: [...]}"


@dataclass(frozen=True, slots=True)
class RuleSet:
    """What `parse_rules` found: the good rules, one error per bad rule or file, and the
    sha256 of every file read (path -> hex digest)."""

    rules: list[Rule] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)


def load_rules(path_or_text: str | os.PathLike[str], *,
               actions: Collection[str] | None = None) -> list[Rule]:
    """Every rule of a YAML file, a folder of them or YAML text; the first `RuleError`
    (with its file and line) when any is malformed.

    A `str` names a file or folder when it holds no newline and one exists by that name,
    else it is YAML text. With `actions`, a plugin action outside them is refused.
    """
    found = parse_rules(path_or_text, actions=actions)
    if found.errors:
        raise found.errors[0]
    return found.rules


def parse_rules(path_or_text: str | os.PathLike[str], *,
                actions: Collection[str] | None = None) -> RuleSet:
    """Like `load_rules`, but every bad rule is reported and the good ones kept (a file
    that is not valid YAML gives one error and no rules)."""
    found = RuleSet()
    offered = None if actions is None else frozenset(actions)
    places: dict[str, str] = {}
    for source, text in _documents(path_or_text, found):
        for rule in _rules_of(text, source, offered, found.errors):
            first = places.get(rule.id)
            if first is not None:
                found.errors.append(RuleError(
                    f"rule id {rule.id!r} is already defined at {first}: expected each id "
                    "once", path=rule.source, line=rule.line, rule_id=rule.id))
                continue
            places[rule.id] = f"{rule.source}:{rule.line}" if rule.line else str(rule.source)
            found.rules.append(rule)
    return found


def rule_from_definition(definition: Mapping[str, Any], *, source: str | None = None,
                         line: int | None = None, actions: Collection[str] | None = None,
                         node: yaml.Node | None = None) -> Rule:
    """One rule from its plain data (as written in YAML, or as stored); `node`, the YAML
    node it was read from, gives every error its line."""
    place = Place(source, node, node.start_mark.line + 1 if node is not None else line,
                  actions=None if actions is None else frozenset(actions))
    spec = mapping(place, definition, (), "rule")
    if "id" not in spec:
        raise place.error((), f"a rule without id: {_SHAPE}")
    try:
        rule_id = check_id(spec["id"], "rule id")
    except InvalidIdentifier as exc:
        raise place.error(("id",), str(exc)) from None
    place = replace(place, rule_id=rule_id)
    check_keys(place, spec, (), RULE_KEYS, "a rule")
    try:
        spec = data = plain_data(spec)
    except NotPlainData as exc:
        raise place.error(exc.path, str(exc)) from None
    if "trigger" in spec and "triggers" in spec:
        raise place.error(("trigger",), "expected triggers or trigger, not both")
    key = "trigger" if "trigger" in spec else "triggers"
    if key not in spec:
        raise place.error((), "a rule without triggers: expected triggers (a list)")
    listed = isinstance(spec[key], list)
    triggers = tuple(build_trigger(place, item, (key, i) if listed else (key,), i)
                     for i, item in enumerate(items(place, spec[key], (key,), key,
                                                    single=key == "trigger")))
    if "actions" not in spec:
        raise place.error((), "a rule without actions: expected actions (a list)")
    mode = spec.get("mode", "single")
    if mode not in tuple(Mode):
        raise place.error(("mode",), f"mode {shown(mode)}: expected one of "
                                     f"{', '.join(Mode)}")
    description = spec.get("description") or ""
    if not isinstance(description, str):
        raise place.error(("description",), f"description: expected text, received "
                                            f"{shown(description)}")
    conditions = spec.get("conditions")
    return Rule(
        id=rule_id, triggers=triggers, mode=Mode(mode), description=description,
        conditions=() if conditions is None else build_conditions(place, conditions,
                                                                  ("conditions",)),
        actions=build_actions(place, spec["actions"], ("actions",)),
        max=integer(place, spec.get("max", 10), ("max",), "max", 1, 1000),
        enabled=boolean(place, spec.get("enabled", True), ("enabled",), "enabled"),
        source=source, line=place.line, definition=data, digest=digest(data))


def digest(definition: Mapping[str, Any]) -> str:
    """The sha256 of `definition` as canonical JSON: equal for equal definitions."""
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _documents(path_or_text: str | os.PathLike[str], found: RuleSet) -> Iterator[
        tuple[str, str]]:
    """`(source, text)` of each document to read; unreadable files become errors."""
    if isinstance(path_or_text, str) and not _names_path(path_or_text):
        if len(path_or_text) > MAX_CONFIG_BYTES:
            found.errors.append(RuleError(f"rules text has {len(path_or_text):,} characters: "
                                          f"expected at most {MAX_CONFIG_BYTES:,}",
                                          path=TEXT_SOURCE))
            return
        yield TEXT_SOURCE, path_or_text
        return
    root = Path(path_or_text)
    for file in _rule_files(root) if root.is_dir() else [root]:
        source = str(file)
        try:
            text = read_config_file(file)
        except ConfigError as exc:
            found.errors.append(_from_config_error(exc, source))
            continue
        found.files[source] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        yield source, text


def _names_path(text: str) -> bool:
    if not text or "\n" in text:
        return False
    try:
        return Path(text).exists()
    except (OSError, ValueError):  # a name too long, a NUL byte
        return False


def _rule_files(folder: Path) -> list[Path]:
    """Every `*.yaml` / `*.yml` below `folder`, hidden files and folders skipped."""
    found: list[Path] = []
    for directory, subdirs, names in os.walk(folder):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        found += [Path(directory, name) for name in names
                  if not name.startswith(".") and name.endswith((".yaml", ".yml"))]
    return sorted(found)


def _from_config_error(exc: ConfigError, source: str) -> RuleError:
    """A YAML or read error as a `RuleError` with the line its message names."""
    message = str(exc)
    match = re.match(rf"{re.escape(source)}(?::(\d+))?: (.*)", message, re.DOTALL)
    if match is None:
        return RuleError(message, path=source)
    line, detail = match.groups()
    return RuleError(detail, path=source, line=int(line) if line else None)


def _rules_of(text: str, source: str, actions: frozenset[str] | None,
              errors: list[RuleError]) -> Iterator[Rule]:
    """The good rules of one document; each bad one appended to `errors`."""
    try:
        root, _ = load_yaml(text, source=source)
    except ConfigError as exc:
        errors.append(_from_config_error(exc, source))
        return
    if root is None:
        return
    data = written_data(root)
    try:
        listed = _rule_nodes(root, data, source)
    except RuleError as exc:
        errors.append(exc)
        return
    for item, node in listed:
        try:
            yield rule_from_definition(item, source=source, actions=actions, node=node)
        except RuleError as exc:
            errors.append(exc)


def _rule_nodes(root: yaml.Node, data: Any, source: str) -> list[tuple[Any, yaml.Node]]:
    """Each rule's data with its node: the document is a rule, a list or `{rules: …}`."""
    line = root.start_mark.line + 1
    if isinstance(data, dict) and "id" not in data and "rules" in data:
        extra = [key for key in data if key != "rules"]
        if extra:
            raise RuleError(f"unknown key {shown(extra[0])} beside rules: {_SHAPE}",
                            path=source, line=line)
        root = next(v for k, v in root.value if k.value == "rules")
        data = data["rules"]
        if not isinstance(data, list):
            raise RuleError(f"rules: expected a list of rules, received {shown(data)}",
                            path=source, line=root.start_mark.line + 1)
    if isinstance(data, list):
        return list(zip(data, root.value, strict=True))
    if isinstance(data, dict):
        return [(data, root)]
    hint = ""
    if source == TEXT_SOURCE and isinstance(data, str) and "\n" not in data:
        hint = " (no file or folder of that name exists)"
    raise RuleError(f"{_SHAPE}, received {shown(data)}{hint}", path=source, line=line)
