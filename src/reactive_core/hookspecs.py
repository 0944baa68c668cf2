"""The hooks a reactive-core plugin may implement (pluggy project ``reactive_core``).

A plugin is a class (or an object, or a module) with `@hookimpl` methods. Entry points
name the class: each `Host` creates its own instance, so a plugin keeps its state on
`self` and hands what its services need to their constructors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ._cli.commands import CliCommand
    from ._cli.demo import DemoStep
    from ._host.host import Host
    from ._host.registry import Registry

PROJECT = "reactive_core"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def reactive_register(registry: Registry, host: Host) -> None:
    """Declare everything the plugin brings: tables, entity kinds, derivers, subscriptions,
    timers, jobs, config sections.

    Called once per host, before the database schema is created. Declare only; do no
    I/O. `host` is the host being set up: build the plugin's services here and give
    them what they need (`host.run`, `host.entity(kind)` of kinds already defined,
    `host.timers`, `host.plugin_settings(...)`). A plugin may take only `registry`.
    """


@hookspec
def reactive_startup(host: Host) -> Any:
    """Run once the host is up (tables created, workers running); may return an awaitable."""


@hookspec
def reactive_shutdown(host: Host) -> Any:
    """Run when the host stops: claiming has stopped and running handlers had their
    chance to finish, before the host's tasks are cancelled; may return an awaitable."""


@hookspec
def reactive_cli_commands() -> list[CliCommand]:
    """Commands the plugin adds to the `reactive` command line (e.g. `reactive status`).

    Each `CliCommand` names itself, describes its arguments and runs with a
    `CliContext` holding the parsed arguments and this plugin's host.
    """
    return []


@hookspec
def reactive_http_routes(host: Host) -> list[Any]:
    """`fastapi.APIRouter`s the plugin adds to `reactive serve`'s HTTP API.

    Handlers reach the host with `reactive_core.http.host_of(request)` and declare
    `reactive_core.http.ReadAccess` / `WriteAccess` to be public-or-token and
    write-token routes; errors they raise become problem documents.
    """
    return []


@hookspec
def reactive_metrics(host: Host) -> list[Any]:
    """Collectors the plugin adds to `/metrics`, used at each scrape.

    A reading collector has `read(tx) -> snapshot` (run inside the scrape's one read
    unit of work) and `render(snapshot) -> metric families`; reading from the database
    keeps every instance of a cluster in agreement. A plain `prometheus_client`
    collector (`collect()` only) is accepted too, for numbers kept in memory.
    """
    return []


@hookspec
def reactive_demo_steps() -> list[DemoStep]:
    """Parts of `reactive demo` the plugin tells, in `order` with the other plugins'."""
    return []


@hookspec(firstresult=True)
def reactive_system_runs(host: Host, system_id: str, check_id: str | None,
                         limit: int) -> Any:
    """The newest `limit` check runs of system `system_id` (of check `check_id` only,
    when given), newest first, for `reactive runs --system`: a list of mappings with
    `check_id`, `status`, `status_code`, `error`, `latency_ms` and `at` (a datetime),
    or an awaitable of that list.

    The first plugin that returns something answers (the health plugin); a plugin that
    records no check runs does not implement it.
    """


@hookspec
def reactive_summary(host: Host) -> Any:
    """What the plugin adds to the one-line summary `reactive serve` logs periodically:
    a mapping of short snake_case names to counts (or to mappings of counts), such as
    `{"systems": {"healthy": 3, "unhealthy": 1}}`. May return an awaitable of it; read
    from the database, so every instance reports the same.
    """
