"""Registry validation and change derivation."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from plugins_for_tests import Counter
from reactive_core import (
    DuplicateRegistration,
    EntityChange,
    Registry,
    RegistryError,
    UnknownEntityKind,
    WorkQueue,
)


def change(kind: str = "counter", prev: dict | None = None, next_: dict | None = None) -> EntityChange:
    return EntityChange(change_id="c1", seq=1, kind=kind, id="a", prev=prev, next=next_,
                        delta={}, changed_fields=(), occurred_at=datetime(2026, 1, 1, tzinfo=UTC))


def test_derivers_union_dedupe_in_order_and_isolate_failures(caplog: pytest.LogCaptureFixture) -> None:
    registry = Registry()
    registry.register_change_deriver("counter", lambda c: ["a", "b"])

    def broken(c: EntityChange) -> list[str]:
        raise RuntimeError("deriver bug")

    registry.register_change_deriver("counter", broken)
    registry.register_change_deriver("counter", lambda c: ["b", "c", "a"])
    with caplog.at_level(logging.ERROR, logger="reactive_core.registry"):
        assert registry.derive_triggers(change()) == ["a", "b", "c"]
    assert "broken" in caplog.text
    assert registry.derive_triggers(change(kind="other")) == []


def test_payload_default_form_and_single_mapper_rule() -> None:
    registry = Registry()
    c = change(prev={"n": 1}, next_={"n": 2, "label": "x"})
    assert registry.trigger_payload(c) == {
        "kind": "counter", "id": "a", "prev": {"n": 1}, "next": {"n": 2, "label": "x"},
        "delta": {}, "changed_fields": [], "n": 2, "label": "x",
    }

    def mapper(c: EntityChange) -> dict:
        return {"custom": c.id}

    registry.register_change_deriver("counter", lambda c: [], to_payload=mapper)
    registry.register_change_deriver("counter", lambda c: [], to_payload=mapper)  # same: fine
    registry.register_change_deriver("counter", lambda c: [])  # none: keeps the mapper
    assert registry.trigger_payload(c) == {"custom": "a"}
    with pytest.raises(DuplicateRegistration, match="at most one per kind"):
        registry.register_change_deriver("counter", lambda c: [], to_payload=lambda c: {})


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.define_entity("", state=Counter), "define_entity: kind '' is empty: expected a name"),
        (lambda r: r.define_entity("k" * 101, state=Counter), "has 101 characters: expected a name of printable text, 1 to 100"),
        (lambda r: r.define_entity("a\nb", state=Counter), "non-printable character U+000A at position 1"),
        (lambda r: r.define_entity(" x", state=Counter), "starts or ends with whitespace"),
        (lambda r: r.define_entity("x", state=dict), "pydantic BaseModel subclass, received <class 'dict'>"),
        (lambda r: r.define_entity("x", state=Counter, read="nope"), "read must be callable"),
        (lambda r: r.register_change_deriver("", lambda c: []), "register_change_deriver: kind '' is empty"),
        (lambda r: r.register_change_deriver(None, lambda c: []), "kind None is a NoneType, not text"),
        (lambda r: r.on_entity_changed("x", lambda c: None, delivery=WorkQueue("g\x00")), "non-printable character"),
        (lambda r: r.on_timer("t\u200b", lambda t: None), "ZERO WIDTH SPACE"),
        (lambda r: r.on_entity_changed("x", lambda c: None, delivery="queue"), "Broadcast() or WorkQueue"),
        (lambda r: r.declare_non_reactive_state("t", "because", "n"), "raw-sample, sensitive"),
        (lambda r: r.add_job("j", lambda h, s: None), "exactly one of every= and cron="),
        (lambda r: r.add_config_section("items", Counter, lambda tx, h, i: [], identity=["id"]),
         "identity names id, which Counter has no field for: expected some of n, label, tags"),
    ],
)
def test_registration_errors_say_what_was_received_and_expected(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RegistryError) as info:
        call(Registry())
    assert message in str(info.value)


def test_work_queue_needs_a_group() -> None:
    with pytest.raises(RegistryError, match="WorkQueue group '' is empty"):
        WorkQueue("")
    with pytest.raises(RegistryError, match="max_retries must be an integer >= 0"):
        WorkQueue("g", max_retries=-1)


def test_duplicates_are_rejected() -> None:
    registry = Registry()
    registry.current_plugin = "first"
    registry.define_entity("counter", state=Counter)
    registry.current_plugin = "second"
    with pytest.raises(DuplicateRegistration, match="already defined by plugin 'first'"):
        registry.define_entity("counter", state=Counter)

    async def handler(c: EntityChange) -> None: ...

    registry.on_entity_changed("counter", handler, delivery=WorkQueue("g"))
    with pytest.raises(DuplicateRegistration, match="one handler per"):
        registry.on_entity_changed("counter", handler, delivery=WorkQueue("g"))


def test_unknown_kind_lists_the_known_ones() -> None:
    registry = Registry()

    class Other(BaseModel):
        x: int

    registry.define_entity("b", state=Other)
    registry.define_entity("a", state=Counter)
    with pytest.raises(UnknownEntityKind, match=r"unknown entity kind 'zzz': expected one of the declared kinds \(a, b\)"):
        registry.kind("zzz")


def test_work_queue_lookups_follow_subscribe_and_unsubscribe() -> None:
    registry = Registry()
    registry.define_entity("counter", state=Counter)
    registry.define_entity("other", state=Counter)

    async def handler(change: EntityChange) -> None:
        return None

    async def handler2(change: EntityChange) -> None:
        return None

    assert registry.work_queue_groups("counter") == ()
    assert registry.local_routes() == []
    drop_a = registry.on_entity_changed("counter", handler, delivery=WorkQueue("a"))
    registry.on_entity_changed("counter", handler2, delivery=WorkQueue("b"))
    registry.on_entity_changed("other", handler, delivery=WorkQueue("a"))
    assert registry.work_queue_groups("counter") == ("a", "b")
    assert registry.local_routes() == [("a", "counter"), ("a", "other"), ("b", "counter")]
    sub = registry.work_queue_handler("b", "counter")
    assert sub is not None and sub.handler is handler2
    drop_a()
    assert registry.work_queue_groups("counter") == ("b",)
    assert registry.work_queue_handler("a", "counter") is None
    assert registry.local_routes() == [("a", "other"), ("b", "counter")]
    routes = registry.local_routes()
    routes.clear()  # a caller's copy: the registry's own is untouched
    assert registry.local_routes() == [("a", "other"), ("b", "counter")]
