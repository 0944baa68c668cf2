"""The `maintenance` and `objectives` sections of config files (`reactive apply`).

Both run inside the one transaction of the apply, after the catalog's `systems` (10)
and `dependencies` (20) and the health plugin's `checks` (30) and `associations` (40):
`maintenance` at 50, `objectives` at 60. So an objective may name a system, its
dependencies and a check declared in the same file, and is created with the
maintenance windows of the same file already in place.

Items are checked when the file is read, each field by the rule of the model it
becomes (`Objective`, `MaintenanceWindow`), so every bad field of every item is
reported with its line before anything is written. What only the database can tell
— an unknown system, a check not associated with the system, a system or check that
cannot change — is refused while applying, naming the item's field, and the whole
file rolls back. Unchanged items change nothing and report nothing.

With `reactive apply --prune`, what the files no longer declare goes too: objectives
first (each `slo` entity tombstoned), then maintenance windows (the `slo` entities of
the objectives that subtracted one move in the same transaction).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from sqlalchemy import Connection, delete, select

from reactive_core import CONFIG_ACTOR, ConfigItemError, Identifier, after_commit

from . import store
from .commands import fmt_days
from .entity import SLO_KIND, SloState
from .models import (
    BurnRateThresholds,
    DependencyExclusion,
    MaintenanceWindow,
    Objective,
)
from .schema import slo_maintenance_windows
from .service import InvalidObjective

if TYPE_CHECKING:
    from reactive_core import Host

    from .service import SloService

MAINTENANCE_SECTION = "maintenance"
OBJECTIVES_SECTION = "objectives"
MAINTENANCE_ORDER = 50
OBJECTIVES_ORDER = 60
PRUNE_REASON = "no longer declared in a config file"
"""The reason recorded on the changes `reactive apply --prune` causes."""

CONFIG_NAMES = {
    "system_id": "system",
    "health_check_configuration_id": "check",
    "excluded_dependency_ids": "excluded_dependencies",
}
"""`Objective` field names as config items spell them (the others are the same)."""

_PROBE: dict[str, Any] = {"id": "probe", "system_id": "probe", "target": 99.0,
                          "window_days": 30}


def _objective_field(name: str, value: Any) -> Any:
    """`value` checked and normalised by `Objective`'s own rule for its field `name`
    (one rule, whether an objective comes from a file or from code)."""
    try:
        probe = Objective.model_validate({**_PROBE, name: value})
    except ValidationError as exc:
        raise ValueError("; ".join(str(e["msg"]).removeprefix("Value error, ")
                                   for e in exc.errors())) from None
    return getattr(probe, name)


class ObjectiveDeclaration(BaseModel):
    """One item of the `objectives` config section; unknown keys are errors (typos).

    `system` and `check` (a `health_check_configuration_id`: the objective then
    follows that one check) cannot change once the objective exists.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Identifier
    system: Identifier
    target: float
    window_days: int
    dependency_exclusion: DependencyExclusion = DependencyExclusion.STRICT
    excluded_dependencies: tuple[Identifier, ...] = ()
    burn_rate_thresholds: BurnRateThresholds = Field(default_factory=BurnRateThresholds)
    check: Identifier | None = None
    exclude_maintenance: bool = False

    @field_validator("target", "window_days", "dependency_exclusion", mode="before")
    @classmethod
    def _as_objective(cls, value: Any, info: ValidationInfo) -> Any:
        return _objective_field(str(info.field_name), value)

    def objective(self) -> Objective:
        """The `Objective` this item declares."""
        return Objective(
            id=self.id, system_id=self.system, health_check_configuration_id=self.check,
            target=self.target, window_days=self.window_days,
            dependency_exclusion=self.dependency_exclusion,
            excluded_dependency_ids=self.excluded_dependencies,
            burn_rate_thresholds=self.burn_rate_thresholds,
            exclude_maintenance=self.exclude_maintenance)


_MOMENT = "an ISO 8601 time with a timezone, such as 2026-03-01T02:00:00Z"


class MaintenanceDeclaration(BaseModel):
    """One item of the `maintenance` config section: planned work on `system` from
    `start` to `end` (times with a timezone; end after start). A `cancelled` window
    stays on record but excludes nothing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Identifier
    system: Identifier
    start: datetime
    end: datetime
    cancelled: bool = False

    @field_validator("start", "end", mode="before")
    @classmethod
    def _with_timezone(cls, value: Any, info: ValidationInfo) -> Any:
        # A time without an offset would be read in whatever zone the server runs in.
        moment = value
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.strip())
            except ValueError:
                moment = None
        if not isinstance(moment, datetime) or moment.utcoffset() is None:
            raise ValueError(f"{info.field_name} must be {_MOMENT}, received {value!s}")
        return moment

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is not None and value <= start:
            raise ValueError(f"end must be after start ({start.isoformat()}), received "
                             f"{value.isoformat()}")
        return value

    def window(self) -> MaintenanceWindow:
        """The `MaintenanceWindow` this item declares (in UTC)."""
        return MaintenanceWindow(start=self.start, end=self.end, cancelled=self.cancelled)


# -- objectives ---------------------------------------------------------------------------

def _changed_fields(before: Objective, after: Objective) -> list[str]:
    return [CONFIG_NAMES.get(name, name) for name in Objective.model_fields
            if getattr(before, name) != getattr(after, name)]


def _refused(item: ObjectiveDeclaration, existing: Objective | None,
             exc: InvalidObjective) -> tuple[str, tuple[str, ...]]:
    """The report of an objective the service refused, in the file's own names."""
    first, *rest = exc.field.split(".")
    field = CONFIG_NAMES.get(first, first)
    what = f"objective {item.id!r}"
    if existing is not None and first in ("system_id", "health_check_configuration_id"):
        was = getattr(existing, first)
        return (f"{what}: {field} cannot change (is {was!r}, received "
                f"{getattr(item, field)!r}): expected the same {field}, or a new objective "
                f"id", (field,))
    if first == "system_id":
        return (f"{what}: unknown system {item.system!r}, expected a system declared under "
                f"'systems' in this file or already in the catalog", (field,))
    if first == "health_check_configuration_id":
        return (f"{what}: check {item.check!r} is not associated with system "
                f"{item.system!r}, expected a check associated with it under 'associations' "
                f"in this file or already", (field,))
    return f"{what}: {exc}", (field, *rest)


def apply_objectives(tx: Connection, service: SloService,
                     items: list[ObjectiveDeclaration]) -> list[str]:
    """Create or update each declared objective (its downtime reconciled with live
    health at once); report created and updated ones."""
    lines: list[str] = []
    for index, item in enumerate(items):
        wanted = item.objective()
        existing = store.objective_in(tx, item.id)
        if existing == wanted:
            continue
        try:
            service.upsert_objective_in(tx, wanted, actor=CONFIG_ACTOR)
        except InvalidObjective as exc:
            message, field = _refused(item, existing, exc)
            raise ConfigItemError(index, message, field=field) from exc
        if existing is None:
            lines.append(f"created objective {item.id} ({item.target:g}% of {item.system} "
                         f"over {fmt_days(item.window_days)})")
        else:
            lines.append(f"updated objective {item.id} "
                         f"({', '.join(_changed_fields(existing, wanted))})")
    return lines


# -- maintenance windows ----------------------------------------------------------------------

def _fmt(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def _as_mutations_in(tx: Connection, host: Host, service: SloService,
                     objective_ids: Sequence[str], write: Callable[[Connection], None],
                     reason: str) -> None:
    """Run `write` as one mutation of the `slo` entity of each of `objective_ids`.

    The mutations nest, `write` innermost: a computed entity's previous state is read
    when its mutation starts, so each one must start before the write for its change
    to show what the write moved.
    """
    slo = host.entity(SLO_KIND)
    if not objective_ids:
        write(tx)
        return
    first, rest = objective_ids[0], objective_ids[1:]

    def apply(inner: Connection, _prev: object) -> SloState | None:
        _as_mutations_in(inner, host, service, rest, write, reason)
        return service.reader.read(inner, [first]).get(first)

    slo.mutate_in(tx, first, apply, actor=CONFIG_ACTOR, reason=reason)


def apply_maintenance(tx: Connection, host: Host, service: SloService,
                      items: list[MaintenanceDeclaration]) -> list[str]:
    """Create or update each declared maintenance window; report created and updated
    ones. The `slo` entities of the objectives that subtract the system's maintenance
    move in the same transaction."""
    after_commit(tx, service.invalidate)
    lines: list[str] = []
    for index, item in enumerate(items):
        if not service.surroundings.system_exists_in(tx, item.system):
            raise ConfigItemError(
                index, f"maintenance window {item.id!r}: unknown system {item.system!r}, "
                       f"expected a system declared under 'systems' in this file or already "
                       f"in the catalog", field="system")
        window = item.window()
        before = store.maintenance_window_in(tx, item.id)
        if before == (item.system, window):
            continue
        systems = {item.system} | ({before[0]} if before is not None else set())
        subtracting = [o.id for o in store.objectives_in(tx, system_ids=sorted(systems))
                       if o.exclude_maintenance]

        def save(inner: Connection, item: MaintenanceDeclaration = item,
                 window: MaintenanceWindow = window) -> None:
            store.save_maintenance_in(inner, item.id, item.system, window)

        _as_mutations_in(tx, host, service, subtracting, save,
                         f"maintenance window {item.id} declared")
        if before is None:
            lines.append(f"created maintenance window {item.id} ({item.system}, "
                         f"{_fmt(window.start)} to {_fmt(window.end)} UTC"
                         f"{', cancelled' if window.cancelled else ''})")
        else:
            was_system, was = before
            changed = [name for name, old, new in (
                ("system", was_system, item.system), ("start", was.start, window.start),
                ("end", was.end, window.end), ("cancelled", was.cancelled, window.cancelled))
                if old != new]
            lines.append(f"updated maintenance window {item.id} ({', '.join(changed)})")
    return lines


# -- `reactive apply --prune` -----------------------------------------------------------------

def prune_objectives(tx: Connection, service: SloService,
                     items: list[ObjectiveDeclaration]) -> list[str]:
    """Delete every objective that `items` do not declare (its `slo` entity tombstoned)."""
    declared = {item.id for item in items}
    lines: list[str] = []
    for objective_id in store.objective_ids_in(tx):
        if objective_id not in declared and service.delete_objective_in(
                tx, objective_id, actor=CONFIG_ACTOR, reason=PRUNE_REASON):
            lines.append(f"removed objective {objective_id}")
    return lines


def prune_maintenance(tx: Connection, host: Host, service: SloService,
                      items: list[MaintenanceDeclaration]) -> list[str]:
    """Delete every maintenance window that `items` do not declare; the `slo` entities of
    the objectives that subtracted it move in the same transaction."""
    after_commit(tx, service.invalidate)
    windows = slo_maintenance_windows
    declared = {item.id for item in items}
    lines: list[str] = []
    rows = tx.execute(select(windows.c.id, windows.c.system_id).order_by(windows.c.id)).all()
    for window_id, system_id in rows:
        if window_id in declared:
            continue
        subtracting = [o.id for o in store.objectives_in(tx, system_ids=[system_id])
                       if o.exclude_maintenance]

        def drop(inner: Connection, window_id: str = window_id) -> None:
            inner.execute(delete(windows).where(windows.c.id == window_id))

        _as_mutations_in(tx, host, service, subtracting, drop,
                         f"maintenance window {window_id} removed")
        lines.append(f"removed maintenance window {window_id} ({system_id})")
    return lines
