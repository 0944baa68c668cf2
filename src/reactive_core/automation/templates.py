"""Templates in rules: sandboxed Jinja expressions and texts, checked when a rule loads.

A rule's templates read `trigger`, `state`, `run` and call the functions the engine
offers (`OFFERED_FUNCTIONS`), nothing else: no Jinja globals, no files, no attribute
whose name starts with `_`, no method calls. What can be refused by reading the
template is refused at load time with the rule's file and line; what only shows while
rendering (a private attribute reached through a computed name) the sandbox blocks.
Each template also tells which entities it reads (`refs`), so the engine knows which
changes concern a rule without running it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, Undefined, nodes
from jinja2 import Template as JinjaTemplate
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.exceptions import TemplateError as JinjaError
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .._errors import ReactiveCoreError
from .errors import RuleError

OFFERED_FUNCTIONS = ("in_state_for", "transition_count", "now")
"""The only names a template may call."""

MAX_SOURCE = 10_000
"""The longest template source, in characters."""
MAX_OUTPUT = 64 * 1024
"""The longest text a template may produce (and the largest string or sequence one
operation may build), in characters."""

_ANY = ("*", "*")
_FALSE_TEXT = frozenset({"", "false", "no", "off", "0", "none"})
_FILE_NODES = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
_STATEMENT_NODES = (nodes.For, nodes.Assign, nodes.AssignBlock, nodes.Macro, nodes.CallBlock,
                    nodes.FilterBlock, nodes.With, nodes.Block)
"""Loops, assignments and macros: a rule's template is an expression and `{% if %}`s,
so its cost is bounded by its size (a loop nest or repeated doubling is not)."""
_PRINTF_WIDTH = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


class TemplateError(ReactiveCoreError):
    """A template failed while rendering (the engine records the step as failed)."""


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with `*`, `**` and `%` refusing results past `MAX_OUTPUT`."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for sized, count in ((left, right), (right, left)):
            if (isinstance(sized, (str, list, tuple)) and isinstance(count, int)
                    and len(sized) * count > MAX_OUTPUT):
                raise SecurityError(f"'*' would build {len(sized) * count:,} items: expected "
                                    f"at most {MAX_OUTPUT:,}")
    elif operator == "**":
        if (isinstance(left, int) and isinstance(right, int) and abs(left) > 1
                and right * math.log2(abs(left)) > 4096):
            raise SecurityError(f"{left} ** {right} is too large: expected at most 4096 bits")
    elif isinstance(left, str):
        _check_printf(left)


def _check_printf(text: str) -> None:
    for match in _PRINTF_WIDTH.finditer(text):
        for size in match.groups():
            if size is not None and (size == "*" or int(size) > MAX_OUTPUT):
                raise SecurityError(f"format width {size!r} is not allowed: expected a "
                                    f"number up to {MAX_OUTPUT:,}")


def _bounded_filter(name: str) -> Any:
    """The filter `name`, refusing a width or a format past `MAX_OUTPUT`."""
    original = _ENV.filters[name]

    def bounded(value: Any, *args: Any, **kwargs: Any) -> Any:
        if name == "replace":  # str.replace, bounded (Jinja's takes an eval context)
            text = str(value)
            old = args[0] if args else kwargs.get("old")
            new = args[1] if len(args) > 1 else kwargs.get("new")
            count = args[2] if len(args) > 2 else kwargs.get("count")
            if not (isinstance(old, str) and isinstance(new, str)):
                raise SecurityError("replace expects text: replace(old, new[, count])")
            hits = text.count(old) if old else len(text) + 1
            if isinstance(count, int) and count >= 0:
                hits = min(hits, count)
            if len(text) + hits * len(new) > MAX_OUTPUT:
                raise SecurityError(f"replace would build {len(text) + hits * len(new):,} "
                                    f"characters: expected at most {MAX_OUTPUT:,}")
            return text.replace(old, new, count if isinstance(count, int) else -1)
        if name == "format":
            if isinstance(value, str):
                _check_printf(value)
        else:
            width = args[0] if args else kwargs.get("width")
            if isinstance(width, int) and width > MAX_OUTPUT:
                raise SecurityError(f"{name} width {width:,}: expected at most {MAX_OUTPUT:,}")
        return original(value, *args, **kwargs)

    return bounded


_ENV = _Sandbox(undefined=ChainableUndefined, autoescape=False)
_ENV.globals.clear()
del _ENV.filters["attr"]
for _name in ("center", "indent", "format", "replace"):
    _ENV.filters[_name] = _bounded_filter(_name)


@dataclass(frozen=True, slots=True)
class _Compiled:
    code: JinjaTemplate | TemplateExpression
    refs: frozenset[tuple[str, str]]
    path: tuple[str, str, str] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Template:
    """A checked template: equal (and hashed) by its source and whether it is an
    expression; `refs` are the `(kind, id)` it reads from `state` (`"*"`: any)."""

    source: str
    expression: bool
    line: int | None = field(default=None, compare=False)
    refs: frozenset[tuple[str, str]] = field(default=frozenset(), compare=False)
    _compiled: _Compiled = field(compare=False, repr=False)

    def evaluate(self, scope: Mapping[str, Any]) -> Any:
        """An expression's value (`Undefined` when it reads something missing), or a
        text template's rendered text."""
        try:
            code = self._compiled.code
            if isinstance(code, TemplateExpression):
                return code(**scope)
            return _bounded_render(code, scope)
        except (JinjaError, TypeError, ValueError, ArithmeticError, LookupError,
                AttributeError, RecursionError) as exc:
            raise TemplateError(f"template '{_short(self.source)}' failed: "
                                f"{type(exc).__name__}: {exc}") from exc

    def render(self, scope: Mapping[str, Any]) -> str:
        """The text: an expression's value as text (nothing for a missing value)."""
        value = self.evaluate(scope)
        if value is None or isinstance(value, Undefined):
            return ""
        text = str(value)
        if len(text) > MAX_OUTPUT:
            raise TemplateError(f"template '{_short(self.source)}' failed: it produced "
                                f"{len(text):,} characters, expected at most {MAX_OUTPUT:,}")
        return text

    def truthy(self, scope: Mapping[str, Any]) -> bool:
        """Whether the value holds: text such as "false", "off", "0" or "" does not."""
        value = self.evaluate(scope)
        if isinstance(value, Undefined):
            return False
        if isinstance(value, str):
            return value.strip().lower() not in _FALSE_TEXT
        return bool(value)


def _bounded_render(code: JinjaTemplate, scope: Mapping[str, Any]) -> str:
    parts: list[str] = []
    size = 0
    for part in code.generate(**scope):
        size += len(part)
        if size > MAX_OUTPUT:
            raise SecurityError(f"the output passed {MAX_OUTPUT:,} characters")
        parts.append(part)
    return "".join(parts)


def _short(source: str) -> str:
    return source if len(source) <= 60 else source[:57] + "..."


def compile_template(source: str, *, expression: bool, path: str | None = None,
                     line: int | None = None) -> Template:
    """`source` checked and compiled, or a `RuleError` naming `path` and the line.

    An expression may be written bare (`trigger.next.status == 'down'`) or wholly in
    `{{ … }}`; a text template is rendered as text. `line` is where the template starts
    in its file.
    """
    if not isinstance(source, str):
        raise RuleError(f"expected a template (text), received {type(source).__name__}",
                        path=path, line=line)
    if len(source) > MAX_SOURCE:
        raise RuleError(f"template has {len(source):,} characters: expected at most "
                        f"{MAX_SOURCE:,}", path=path, line=line)
    try:
        compiled = _compile(source, expression)
    except _Refused as exc:
        at = line + exc.lineno - 1 if line is not None and exc.lineno else line
        raise RuleError(exc.message, path=path, line=at) from None
    return Template(source=source, expression=expression, line=line, refs=compiled.refs,
                    _compiled=compiled)


def simple_path(template: Template) -> tuple[str, str | None, str] | None:
    """`(kind, id, field)` when `template` is exactly `state.<kind>.<id>.<field>` (dots or
    constant brackets), else None."""
    return template._compiled.path if template.expression else None


class _Refused(Exception):
    def __init__(self, message: str, lineno: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.lineno = lineno


@lru_cache(maxsize=65_536)
def _compile(source: str, expression: bool) -> _Compiled:
    try:
        if expression:
            text = _unwrapped(source)
            tree: nodes.Node = _parse_expression(text)
            _check(tree)
            code: JinjaTemplate | TemplateExpression = _ENV.compile_expression(
                text, undefined_to_none=False)
            path = _simple_path(tree)
        else:
            document = _ENV.parse(source)
            _check(document)
            code, tree, path = _ENV.from_string(document), document, None
    except TemplateSyntaxError as exc:
        raise _Refused(f"not a valid template: {exc.message}", exc.lineno) from None
    refs: set[tuple[str, str]] = set()
    _collect_refs(tree, refs)
    return _Compiled(code=code, refs=frozenset(refs), path=path)


def _parse_expression(text: str) -> nodes.Expr:
    parser = Parser(_ENV, text, state="variable")
    tree = parser.parse_expression()
    if not parser.stream.eos:
        current = parser.stream.current
        raise TemplateSyntaxError(f"unexpected {current.value!r} after the expression: "
                                  "expected one expression", current.lineno)
    return tree


def _unwrapped(source: str) -> str:
    """The expression inside `{{ … }}` when `source` is wholly wrapped, else `source`."""
    text = source.strip()
    if not (text.startswith("{{") and text.endswith("}}")):
        return source
    inner = text[2:-2]
    if inner[:1] in ("-", "+") and not inner[1:2].isdigit():
        inner = inner[1:]
    if inner[-1:] in ("-", "+"):
        inner = inner[:-1]
    return inner


def _check(tree: nodes.Node) -> None:
    """Refuse what a template may not do (raises `_Refused` at the offending node)."""
    for node in _walk(tree):
        line = node.lineno
        if isinstance(node, _FILE_NODES):
            raise _Refused("template includes, imports or extends another template: "
                           "templates cannot read files", line)
        if isinstance(node, _STATEMENT_NODES):
            kind = type(node).__name__.lower()
            raise _Refused(f"template uses a {kind!r} statement: expected expressions and "
                           "{% if %} only (loops, assignments and macros are not offered)",
                           line)
        name = _private_name(node)
        if name is not None:
            raise _Refused(f"template reaches attribute {name!r}: names starting with '_' "
                           "are not offered", line)
        if isinstance(node, nodes.Call):
            callee = node.node
            if not (isinstance(callee, nodes.Name) and callee.name in OFFERED_FUNCTIONS):
                raise _Refused(f"template calls {_describe(callee)!r}: expected only "
                               f"{', '.join(OFFERED_FUNCTIONS)}", line)
        elif isinstance(node, nodes.Filter) and node.name not in _ENV.filters:
            why = ("reaches attributes by name" if node.name == "attr"
                   else "is not a filter")
            raise _Refused(f"template filter {node.name!r} {why}: expected a Jinja filter "
                           "other than attr", line)
        elif isinstance(node, nodes.Test) and node.name not in _ENV.tests:
            raise _Refused(f"template test {node.name!r} is not a Jinja test", line)


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    for child in node.iter_child_nodes():
        yield from _walk(child)


def _private_name(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
        return str(node.attr)
    if (isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str) and node.arg.value.startswith("_")):
        return node.arg.value
    return None


def _describe(node: nodes.Node) -> str:
    if isinstance(node, nodes.Name):
        return str(node.name)
    if isinstance(node, nodes.Getattr):
        return f"{_describe(node.node)}.{node.attr}"
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        return f"{_describe(node.node)}[{node.arg.value!r}]"
    if isinstance(node, nodes.Const):
        return repr(node.value)
    return f"<{type(node).__name__.lower()}>"


def _chain(node: nodes.Node) -> list[str | None] | None:
    """The steps of `state.a['b'][x]…` (None: not constant), or None when `node` is not
    rooted at `state`."""
    steps: list[str | None] = []
    while isinstance(node, (nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            steps.append(node.attr)
        else:
            arg = node.arg
            constant = isinstance(arg, nodes.Const) and isinstance(arg.value, str)
            steps.append(arg.value if constant else None)  # type: ignore[attr-defined]
        node = node.node
    if isinstance(node, nodes.Name) and node.name == "state" and node.ctx == "load":
        return steps[::-1]
    return None


def _collect_refs(node: nodes.Node, refs: set[tuple[str, str]]) -> None:
    if isinstance(node, (nodes.Getattr, nodes.Getitem)):
        chain = _chain(node)
        if chain is not None:
            kind = chain[0]
            entity = chain[1] if len(chain) > 1 else None
            refs.add(_ANY if kind is None else (kind, entity or "*"))
            inner: nodes.Node = node
            while isinstance(inner, (nodes.Getattr, nodes.Getitem)):
                if isinstance(inner, nodes.Getitem):
                    _collect_refs(inner.arg, refs)
                inner = inner.node
            return
    elif isinstance(node, nodes.Name) and node.name == "state" and node.ctx == "load":
        refs.add(_ANY)
        return
    elif (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name)
          and node.node.name in ("in_state_for", "transition_count")):
        first = node.args[0] if node.args else None
        if isinstance(first, nodes.Const) and isinstance(first.value, str):
            kind, _, entity = first.value.partition(":")
            refs.add((kind, entity or "*") if kind else _ANY)
        else:
            refs.add(_ANY)
    for child in node.iter_child_nodes():
        _collect_refs(child, refs)


def _simple_path(tree: nodes.Node) -> tuple[str, str, str] | None:
    chain = _chain(tree) if isinstance(tree, (nodes.Getattr, nodes.Getitem)) else None
    if chain is None or len(chain) != 3:
        return None
    kind, entity, name = chain
    if kind is None or entity is None or name is None:
        return None
    return (kind, entity, name)
