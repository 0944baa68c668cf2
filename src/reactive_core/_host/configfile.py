"""Operator configuration files: `reactive apply -f file.yaml`.

A file is a YAML mapping whose top-level keys are *sections* that plugins register
(`registry.add_config_section`): `systems`, `dependencies`, `checks`, … Each section
is a list of items validated with the section's pydantic model. Every error names the
file, the line and what was expected; the whole file is applied in one transaction,
so a bad item leaves nothing half-applied.

Several files apply in order in one transaction. With `prune`, what the files no longer
declare is removed afterwards, by each section's `prune` (sections without one keep
what they have). A dry run applies everything inside the transaction and rolls it back:
the lines say what would change, nothing is stored.
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
SectionPrune = Callable[[Connection, "Host", list[Any]], list[str]]
"""`prune(tx, host, items) -> [lines]`: remove what the section holds and `items` (every
item of the section the applied files declare, possibly none) no longer declare."""

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
    prune: SectionPrune | None = None


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

    def where_key(self, key: Any) -> str:
        """`file:line` of the top-level key `key` itself (not of its value)."""
        if isinstance(self.root, yaml.MappingNode):
            for key_node, _value in self.root.value:
                if key_node.value == str(key):
                    return f"{self.source}:{key_node.start_mark.line + 1}"
        return self.where(key)


MAX_CONFIG_BYTES = 1024 * 1024
"""The default size limit of a config file (`HostConfig.config_max_bytes`)."""
MAX_CONFIG_NODES = 100_000
"""The most YAML nodes a config document may expand to, aliases counted each time used."""
MAX_PROBLEMS = 50
"""The most problems one error reports (the rest are counted)."""


def _shown(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _explain(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field (not expected here; check the spelling)"
    return f"{err['msg']} (received {_shown(err.get('input'))})"


def _loader() -> type[Any]:
    # libyaml's parser where it is built in: several times faster on big files.
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_nodes(root: yaml.Node, source: str) -> None:
    """Refuse duplicate mapping keys (naming both lines), recursive aliases, and documents
    whose aliases expand to more than `MAX_CONFIG_NODES` nodes (an "alias bomb")."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in active:
            raise ConfigError(f"{source}:{node.start_mark.line + 1}: a YAML alias refers to "
                              "a node that contains it: expected no recursive aliases")
        active.add(id(node))
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    line = key.start_mark.line + 1
                    if key.value in seen:
                        raise ConfigError(
                            f"{source}:{line}: key {_shown(key.value)} is given twice in "
                            f"one mapping (first at line {seen[key.value]}): expected each "
                            f"key once")
                    seen[key.value] = line
                total += size(key) + size(value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += size(item)
        active.discard(id(node))
        if total > MAX_CONFIG_NODES:
            raise ConfigError(f"{source}: the document expands to more than "
                              f"{MAX_CONFIG_NODES:,} YAML nodes (aliases count each time they "
                              f"are used): expected a smaller document")
        sizes[id(node)] = total
        return total

    size(root)


def load_yaml(text: str, *, source: str) -> tuple[yaml.Node | None, Any]:
    """Parse `text` once: its node tree (for line numbers) and its data, or `ConfigError`."""
    loader = _loader()(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        _check_nodes(root, source)
        return root, loader.construct_document(root)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        if context:  # what the parser expected ("expected a single document in the stream")
            problem = f"{context}, {problem}"
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    finally:
        loader.dispose()


def read_config_file(path: str | Path, *, max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """The text of config file `path`: refused when missing, too big or not UTF-8."""
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > max_bytes:
            raise ConfigError(f"config file {str(file)!r} has {size:,} bytes: expected at most "
                              f"{max_bytes:,} (host config config_max_bytes)")
        # At most one byte more than allowed is read: a device, a pipe or a file that
        # grows after the size check (all of which `stat` may report small) stays bounded.
        with file.open("rb") as stream:
            raw = stream.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(file)!r}: "
                          f"{exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise ConfigError(f"config file {str(file)!r} has more than {max_bytes:,} bytes: "
                          f"expected at most {max_bytes:,} (host config config_max_bytes)")
    return decode_config(raw, source=str(file), max_bytes=max_bytes)


def decode_config(raw: bytes, *, source: str, max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """`raw` as UTF-8 text, or a `ConfigError` saying where it is not."""
    if len(raw) > max_bytes:
        raise ConfigError(f"{source} has {len(raw):,} bytes: expected at most {max_bytes:,} "
                          f"(host config config_max_bytes)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{source}:{line}: byte 0x{raw[exc.start]:02x} at offset "
                          f"{exc.start} is not UTF-8: expected a UTF-8 text file") from None


def parse_config(text: str, sections: Sequence[ConfigSection], *, source: str,
                 max_bytes: int = MAX_CONFIG_BYTES) -> ParsedConfig:
    """Parse and validate a config document, or raise `ConfigError` naming file and line.

    Every bad item of every section is reported (up to `MAX_PROBLEMS`), not only the
    first; nothing is applied unless all are good.
    """
    # Each character is at least one byte: a text longer than the limit is refused
    # without encoding it (an encoded copy of a huge text is as huge again).
    if len(text) > max_bytes or len(text.encode("utf-8", errors="replace")) > max_bytes:
        raise ConfigError(f"{source} is larger than {max_bytes:,} bytes (host config "
                          f"config_max_bytes): expected a smaller document")
    root, data = load_yaml(text, source=source)
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
    problems: list[str] = []
    for key, value in data.items():
        section = by_key.get(str(key))
        if section is None:
            problems.append(f"{parsed.where_key(key)}: unknown section {_shown(key)}: expected "
                            f"one of {known}")
            continue
        if value is None:
            value = []
        if not isinstance(value, list):
            problems.append(f"{parsed.where(key)}: section {key!r} must be a list of items, "
                            f"received {type(value).__name__}")
            continue
        models: list[BaseModel] = []
        seen: dict[tuple[Any, ...], int] = {}
        for index, item in enumerate(value):
            try:
                model = section.model.model_validate(item)
            except ValidationError as exc:
                problems += [
                    f"{parsed.where(key, index, *err['loc'])}: {key}[{index}]."
                    f"{'.'.join(str(p) for p in err['loc']) or '<item>'}: {_explain(err)}"
                    for err in exc.errors()
                ]
                continue
            models.append(model)
            if section.identity:
                ident = tuple(getattr(model, name) for name in section.identity)
                if ident in seen:
                    shown = ", ".join(
                        f"{n} {v!r}" for n, v in zip(section.identity, ident, strict=True))
                    problems.append(
                        f"{parsed.where(key, index, section.identity[-1])}: {key}[{index}] "
                        f"({shown}) is already declared by {key}[{seen[ident]}]: expected "
                        f"each item once")
                seen[ident] = index
        parsed.items[str(key)] = models
    if problems:
        more = len(problems) - MAX_PROBLEMS
        shown_problems = problems[:MAX_PROBLEMS] + ([f"... and {more} more"] if more > 0 else [])
        raise ConfigError("\n".join(shown_problems))
    return parsed


def apply_parsed(tx: Connection, host: Host, parsed: ParsedConfig | Sequence[ParsedConfig],
                 sections: Sequence[ConfigSection], *, prune: bool = False) -> list[str]:
    """Apply every section of each parsed file (in the order given) inside `tx`; item
    errors are reported with their file and line. With `prune`, then remove what the
    files no longer declare: each section's `prune` gets every item of that section
    the files declare, the sections last applied pruned first (rules before objectives
    before checks before systems)."""
    documents = [parsed] if isinstance(parsed, ParsedConfig) else list(parsed)
    ordered = sorted(sections, key=lambda s: s.order)
    report: list[str] = []
    for document in documents:
        for section in ordered:
            items = document.items.get(section.key)
            if not items:
                continue
            try:
                report.extend(section.apply(tx, host, items))
            except ConfigItemError as exc:
                path: list[Any] = [section.key, exc.index, *exc.field]
                raise ConfigError(
                    f"{document.where(*path)}: {section.key}[{exc.index}]: {exc}") from exc
    if prune:
        for section in reversed(ordered):
            if section.prune is not None:
                declared = [item for document in documents
                            for item in document.items.get(section.key, [])]
                report.extend(section.prune(tx, host, declared))
    return report


class _DryRun(Exception):
    """Raised at the end of a dry run's unit of work to roll it back, with its report."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("dry run: rolled back")
        self.lines = lines


async def apply_documents(host: Host, parsed: Sequence[ParsedConfig], *,
                          prune: bool = False, dry_run: bool = False) -> list[str]:
    """Apply parsed files in order in one transaction; returns what changed.

    With `dry_run` the transaction is rolled back after everything was applied (and
    pruned): the lines say what would change, nothing is stored.
    """
    sections = list(host.registry.config_sections.values())

    def unit(tx: Connection) -> list[str]:
        lines = apply_parsed(tx, host, parsed, sections, prune=prune)
        if dry_run:
            raise _DryRun(lines)
        return lines

    try:
        return await host.run(unit)
    except _DryRun as done:
        return done.lines


async def apply_config_file(host: Host, path: str | Path) -> list[str]:
    """Validate and apply a config file in one transaction; returns what changed."""
    text = read_config_file(path, max_bytes=host.config.config_max_bytes)
    return await apply_config_text(host, text, source=str(path))


async def apply_config_text(host: Host, text: str, *, source: str = "<config>",
                            prune: bool = False, dry_run: bool = False) -> list[str]:
    """Validate and apply a config document in one transaction; returns what changed
    (with `dry_run`, what would change: the transaction is rolled back). With `prune`,
    what the document no longer declares is removed too."""
    sections = list(host.registry.config_sections.values())
    parsed = parse_config(text, sections, source=source, max_bytes=host.config.config_max_bytes)
    return await apply_documents(host, [parsed], prune=prune, dry_run=dry_run)
