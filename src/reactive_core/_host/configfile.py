"""Operator configuration files: `reactive apply -f file.yaml`.

A file is a YAML mapping whose top-level keys are *sections* that plugins register
(`registry.add_config_section`): `systems`, `dependencies`, `checks`, … Each section
is a list of items validated with the section's pydantic model. Every error names the
file, the line and what was expected; the whole file is applied in one transaction,
so a bad item leaves nothing half-applied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection

from .._entities.changes import Actor
from .._errors import ConfigError

if TYPE_CHECKING:
    from .host import Host

SectionApply = Callable[[Connection, "Host", list[Any]], list[str]]

CONFIG_ACTOR = Actor("config", "apply")
"""The actor config sections record on the changes a config file causes."""
CONFIG_REASON = "declared in a config file"
"""The reason config sections record on the changes a config file causes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigSection:
    """A top-level key of config files and how its items are applied."""

    key: str
    model: type[BaseModel]
    apply: SectionApply
    order: int
    plugin: str | None
    identity: tuple[str, ...] = ()


class ConfigItemError(ConfigError):
    """Raised by a section's `apply` for item `index`; reported with that item's line."""

    def __init__(self, index: int, message: str,
                 field: str | Sequence[str | int] | None = None) -> None:
        super().__init__(message)
        self.index = index
        # A key of the item, or a path into it such as ("config", "url").
        self.field: tuple[str | int, ...] = (
            () if field is None else (field,) if isinstance(field, str) else tuple(field))


def _line_of(node: yaml.Node | None, path: Sequence[Any]) -> int | None:
    """1-based line of the YAML node reached by following `path` (keys and indexes)."""
    line = node.start_mark.line + 1 if node is not None else None
    for step in path:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(step):
                    node = value_node
                    break
            else:
                return line
        elif (isinstance(node, yaml.SequenceNode) and isinstance(step, int)
              and step < len(node.value)):
            node = node.value[step]
        else:
            return line
        line = node.start_mark.line + 1
    return line


@dataclass(frozen=True, slots=True)
class ParsedConfig:
    """A validated config file: the section items, ready to apply."""

    source: str
    items: dict[str, list[BaseModel]]
    root: yaml.Node | None

    def where(self, *path: Any) -> str:
        """`file:line` of the node at `path`."""
        line = _line_of(self.root, path)
        return f"{self.source}:{line}" if line else self.source


def _explain(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field (not expected here; check the spelling)"
    return f"{err['msg']} (received {err.get('input')!r})"


def parse_config(text: str, sections: Sequence[ConfigSection], *, source: str) -> ParsedConfig:
    """Parse and validate a config document, or raise `ConfigError` naming file and line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from exc
    parsed = ParsedConfig(source=source, items={}, root=root)
    if data is None:
        return parsed
    by_key = {s.key: s for s in sections}
    known = ", ".join(sorted(by_key)) or "none registered"
    if not isinstance(data, dict):
        raise ConfigError(
            f"{parsed.where()}: expected a mapping of sections ({known}), "
            f"received {type(data).__name__}"
        )
    for key, value in data.items():
        section = by_key.get(str(key))
        if section is None:
            raise ConfigError(
                f"{parsed.where(key)}: unknown section {key!r}: expected one of {known}")
        if value is None:
            value = []
        if not isinstance(value, list):
            raise ConfigError(
                f"{parsed.where(key)}: section {key!r} must be a list of items, "
                f"received {type(value).__name__}"
            )
        models: list[BaseModel] = []
        seen: dict[tuple[Any, ...], int] = {}
        for index, item in enumerate(value):
            try:
                models.append(section.model.model_validate(item))
            except ValidationError as exc:
                problems = [
                    f"{parsed.where(key, index, *err['loc'])}: {key}[{index}]."
                    f"{'.'.join(str(p) for p in err['loc']) or '<item>'}: {_explain(err)}"
                    for err in exc.errors()
                ]
                raise ConfigError("\n".join(problems)) from exc
            if section.identity:
                ident = tuple(getattr(models[-1], name) for name in section.identity)
                if ident in seen:
                    shown = ", ".join(
                        f"{n} {v!r}" for n, v in zip(section.identity, ident, strict=True))
                    raise ConfigError(
                        f"{parsed.where(key, index, section.identity[-1])}: {key}[{index}] "
                        f"({shown}) is already declared by {key}[{seen[ident]}]: expected "
                        f"each item once")
                seen[ident] = index
        parsed.items[str(key)] = models
    return parsed


def apply_parsed(tx: Connection, host: Host, parsed: ParsedConfig,
                 sections: Sequence[ConfigSection]) -> list[str]:
    """Apply every section in order inside `tx`; item errors are reported with their line."""
    report: list[str] = []
    for section in sorted(sections, key=lambda s: s.order):
        items = parsed.items.get(section.key)
        if not items:
            continue
        try:
            report.extend(section.apply(tx, host, items))
        except ConfigItemError as exc:
            path: list[Any] = [section.key, exc.index, *exc.field]
            raise ConfigError(f"{parsed.where(*path)}: {section.key}[{exc.index}]: {exc}") from exc
    return report


async def apply_config_file(host: Host, path: str | Path) -> list[str]:
    """Validate and apply a config file in one transaction; returns what changed."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(file)!r}: {exc.strerror}") from exc
    return await apply_config_text(host, text, source=str(file))


async def apply_config_text(host: Host, text: str, *, source: str = "<config>") -> list[str]:
    """Validate and apply a config document in one transaction; returns what changed."""
    sections = list(host.registry.config_sections.values())
    parsed = parse_config(text, sections, source=source)
    return await host.run(apply_parsed, host, parsed, sections)
