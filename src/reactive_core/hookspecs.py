"""The hooks a reactive-core plugin may implement (pluggy project ``reactive_core``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ._host import Host
    from ._registry import Registry

PROJECT = "reactive_core"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def reactive_register(registry: Registry) -> None:
    """Declare everything the plugin brings: tables, entity kinds, derivers, subscriptions, jobs.

    Called once per host, before the database schema is created. Declare only; do no I/O.
    """


@hookspec
def reactive_startup(host: Host) -> Any:
    """Run once the host is up (tables created, workers running); may return an awaitable."""


@hookspec
def reactive_shutdown(host: Host) -> Any:
    """Run when the host stops, before its workers are cancelled; may return an awaitable."""
