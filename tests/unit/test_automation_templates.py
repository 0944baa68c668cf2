"""Rule templates: refused at compile time when they reach past what is offered, blocked
by the sandbox at run time, and read statically for the entities they touch."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from jinja2 import Undefined

from reactive_core.automation import RuleError, Template, compile_template
from reactive_core.automation.templates import (
    MAX_OUTPUT,
    MAX_SOURCE,
    OFFERED_FUNCTIONS,
    TemplateError,
    simple_path,
)


def scope(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "trigger": {"id": "obj-1", "next": {"status": "down"}},
        "state": {"slo": {"obj-1": {"budgetRemainingPercent": 12.5}},
                  "health": {"api": {"status": "degraded"}}},
        "now": lambda: datetime(2024, 5, 1, 12, tzinfo=UTC),
        "in_state_for": lambda ref, field: 30.0,
        "transition_count": lambda ref, field, minutes: 2,
        "run": {"id": 7},
    }
    return {**base, **extra}


# -- refused at compile time --------------------------------------------------------------

@pytest.mark.parametrize(("source", "message"), [
    ("{{ ''.__class__ }}", "template reaches attribute '__class__': names starting with '_'"),
    ("{{ x.__init__ }}", "template reaches attribute '__init__'"),
    ("{{ foo['__globals__'] }}", "template reaches attribute '__globals__'"),
    ("{{ x._private }}", "template reaches attribute '_private'"),
    ("{{ lipsum() }}", "template calls 'lipsum': expected only in_state_for, "
                       "transition_count, now"),
    ("{{ range(10) }}", "template calls 'range'"),
    ("{{ 'a'.upper() }}", "template calls \"'a'.upper\""),
    ("{{ x.upper() }}", "template calls 'x.upper'"),
    ("{% include '/etc/passwd' %}", "templates cannot read files"),
    ("{% import 'macros.j2' as m %}", "templates cannot read files"),
    ("{% from 'macros.j2' import m %}", "templates cannot read files"),
    ("{% extends 'base.j2' %}", "templates cannot read files"),
    ("{{ x|attr('__class__') }}", "template filter 'attr' reaches attributes by name"),
    ("{{ x|no_such_filter }}", "template filter 'no_such_filter' is not a filter"),
    ("{% if x %}{{ x|no_such_filter }}{% endif %}", "'no_such_filter' is not a filter"),
    ("{{ x is no_such_test }}", "template test 'no_such_test' is not a Jinja test"),
    ("{{ x ", "not a valid template: "),
])
def test_refused_at_compile_time_with_the_line(source: str, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        compile_template(source, expression=False, path="rules/a.yaml", line=12)
    assert message in caught.value.detail
    assert caught.value.path == "rules/a.yaml"
    assert caught.value.line == 12


def test_a_refusal_on_a_later_line_of_the_template_names_that_line() -> None:
    with pytest.raises(RuleError) as caught:
        compile_template("first line\nsecond\n{{ x.__class__ }}", expression=False,
                         path="a.yaml", line=10)
    assert caught.value.line == 12


def test_expressions_are_checked_the_same_way() -> None:
    with pytest.raises(RuleError, match=r"template calls 'x\.upper'"):
        compile_template("x.upper() == 'A'", expression=True)
    with pytest.raises(RuleError, match="reaches attribute '__class__'"):
        compile_template("{{ trigger.__class__ }}", expression=True)


def test_an_expression_takes_one_expression() -> None:
    with pytest.raises(RuleError, match="not a valid template"):
        compile_template("a b", expression=True)
    with pytest.raises(RuleError, match="not a valid template"):
        compile_template("{{ a }} and {{ b }}", expression=True)


def test_a_source_too_long_is_refused() -> None:
    with pytest.raises(RuleError, match="expected at most 10,000"):
        compile_template("x" * (MAX_SOURCE + 1), expression=False)


def test_offered_functions_can_be_called() -> None:
    assert OFFERED_FUNCTIONS == ("in_state_for", "transition_count", "now")
    template = compile_template(
        "in_state_for('health:api', 'status') > 10 and transition_count('health:api', "
        "'status', 60) == 2 and now().year == 2024", expression=True)
    assert template.evaluate(scope()) is True


# -- blocked at run time ------------------------------------------------------------------

class Holder:
    _secret = "the secret"
    public = "public value"


def test_a_private_attribute_reached_by_a_computed_name_is_blocked() -> None:
    template = compile_template("x[name]", expression=True)
    blocked = template.evaluate(scope(x=Holder(), name="_secret"))
    assert isinstance(blocked, Undefined)
    assert template.render(scope(x=Holder(), name="_secret")) == ""
    assert template.evaluate(scope(x=Holder(), name="public")) == "public value"


def test_a_private_attribute_in_text_never_renders() -> None:
    text = compile_template("[{{ x[name] }}]", expression=False)
    assert text.render(scope(x=Holder(), name="_secret")) == "[]"


def test_no_jinja_globals_are_offered() -> None:
    assert compile_template("{{ range }}{{ dict }}{{ namespace }}", expression=False).render(
        scope()) == ""


@pytest.mark.parametrize("source", [
    "{{ 'a' * 100000 }}", "{{ '%999999999s' % 1 }}", "{{ 'x'|center(999999999) }}",
    "{{ 2 ** 100000 }}", "{{ ('x' * 60000) | replace('x', 'xx') }}",
])
def test_oversized_output_is_a_render_error(source: str) -> None:
    with pytest.raises(TemplateError, match="failed: SecurityError"):
        compile_template(source, expression=False).render(scope())
    assert MAX_OUTPUT == 64 * 1024


def test_render_errors_name_the_template() -> None:
    with pytest.raises(TemplateError, match=r"^template '\{\{ 1 / 0 \}\}' failed: "
                                            "ZeroDivisionError"):
        compile_template("{{ 1 / 0 }}", expression=False).render(scope())
    with pytest.raises(TemplateError, match="failed: UndefinedError"):
        compile_template("missing.value > 3", expression=True).evaluate(scope())


# -- values -------------------------------------------------------------------------------

def test_an_expression_gives_its_native_value() -> None:
    value = compile_template("state.slo['obj-1'].budgetRemainingPercent", expression=True)
    assert value.evaluate(scope()) == 12.5
    assert value.render(scope()) == "12.5"
    wrapped = compile_template("{{ trigger.next.status == 'down' }}", expression=True)
    assert wrapped.evaluate(scope()) is True


def test_a_missing_value_is_undefined_and_renders_empty() -> None:
    missing = compile_template("state.slo['nope'].budgetRemainingPercent", expression=True)
    assert isinstance(missing.evaluate(scope()), Undefined)
    assert missing.render(scope()) == ""
    assert not missing.truthy(scope())


def test_a_text_template_renders_text() -> None:
    text = compile_template("budget of {{ trigger.id }} is "
                            "{{ state.slo['obj-1'].budgetRemainingPercent }}", expression=False)
    assert text.evaluate(scope()) == "budget of obj-1 is 12.5"


@pytest.mark.parametrize(("source", "expected"), [
    ("true", True), ("false", False), ("1", True), ("0", False), ("none", False),
    ("'yes'", True), ("' Off '", False), ("'No'", False), ("'0'", False), ("''", False),
    ("'None'", False), ("'false'", False), ("'down'", True), ("[]", False), ("[0]", True),
    ("trigger.missing", False),
])
def test_truthy(source: str, expected: bool) -> None:
    assert compile_template(source, expression=True).truthy(scope()) is expected


def test_truthy_of_text_templates() -> None:
    assert not compile_template("{{ 'off' }} ", expression=False).truthy(scope())
    assert compile_template("on", expression=False).truthy(scope())


def test_templates_are_equal_by_source_and_kind() -> None:
    one = compile_template("trigger.id", expression=True, line=3)
    other = compile_template("trigger.id", expression=True, line=9)
    text = compile_template("trigger.id", expression=False)
    assert one == other and hash(one) == hash(other)
    assert one != text
    assert isinstance(one, Template) and one.line == 3


# -- what a template reads -----------------------------------------------------------------

@pytest.mark.parametrize(("source", "refs"), [
    ("state.slo['obj-1'].budgetRemainingPercent", {("slo", "obj-1")}),
    ("state.slo.main.budgetRemainingPercent", {("slo", "main")}),
    ("state['health']['api'].status", {("health", "api")}),
    ("state.slo[trigger.id].budgetRemainingPercent", {("slo", "*")}),
    ("state.slo", {("slo", "*")}),
    ("state", {("*", "*")}),
    ("state[trigger.kind]['x']", {("*", "*")}),
    ("in_state_for('health:api', 'status') > 5", {("health", "api")}),
    ("transition_count('health:api', 'status', 60)", {("health", "api")}),
    ("in_state_for(trigger.ref, 'status')", {("*", "*")}),
    ("state.slo[state.map.ids.first].x", {("slo", "*"), ("map", "ids")}),
    ("trigger.id == 'x'", set()),
])
def test_refs(source: str, refs: set[tuple[str, str]]) -> None:
    assert compile_template(source, expression=True).refs == refs


def test_refs_of_text_templates() -> None:
    text = compile_template("{% if state.slo[trigger.id] %}{{ state.health.api.status }}"
                            "{% endif %}", expression=False)
    assert text.refs == {("slo", "*"), ("health", "api")}


@pytest.mark.parametrize(("source", "path"), [
    ("state.slo['obj-1'].budgetRemainingPercent", ("slo", "obj-1", "budgetRemainingPercent")),
    ("state['slo']['obj-1']['budgetRemainingPercent']",
     ("slo", "obj-1", "budgetRemainingPercent")),
    ("{{ state.health.api.status }}", ("health", "api", "status")),
    ("state.slo[trigger.id].budgetRemainingPercent", None),
    ("state.slo['obj-1']", None),
    ("state.slo['obj-1'].budget.value", None),
    ("state.slo['obj-1'].budgetRemainingPercent + 1", None),
    ("trigger.a.b.c", None),
])
def test_simple_path(source: str, path: tuple[str, str, str] | None) -> None:
    assert simple_path(compile_template(source, expression=True)) == path


def test_a_text_template_has_no_simple_path() -> None:
    assert simple_path(compile_template("{{ state.slo.x.y }}", expression=False)) is None


@pytest.mark.parametrize("source", [
    "{% for i in trigger.items %}{% for j in trigger.items %}{{ i }}{% endfor %}{% endfor %}",
    "{% set a = 'x' %}{% set a = a ~ a %}{{ a }}",
    "{% macro m() %}x{% endmacro %}{{ m() }}",
])
def test_loops_assignments_and_macros_are_refused_so_cost_follows_size(source: str) -> None:
    with pytest.raises(RuleError, match="statement: expected expressions and"):
        compile_template(source, expression=False, path="r.yaml", line=3)
