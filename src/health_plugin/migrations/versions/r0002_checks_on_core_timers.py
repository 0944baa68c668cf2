"""Checks run on the core's durable timers: their schedule table goes.

Revision ID: 0002
Revises: 0001

Each unpaused check keeps running: it gets the recurring timer `("health.check",
<check id>)` that `CheckScheduler.arm_in` would give it, due when its old schedule
said (`next_run_at`), or at once when it had none. Then `health_check_schedule` is
dropped. Needs the core at its revision 0002 (`reactive_timers`), which the core's
history, run first, guarantees.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None

CHECK_TOPIC = "health.check"  # health_plugin.scheduler.CHECK_TOPIC, frozen as of this revision

_Stamp = sa.DateTime(timezone=True)
_configs = sa.table("health_check_configurations", sa.column("id"),
                    sa.column("interval_seconds", sa.Float()), sa.column("paused", sa.Boolean()))
_schedule = sa.table("health_check_schedule", sa.column("configuration_id"),
                     sa.column("next_run_at", _Stamp))
_timers = sa.table(
    "reactive_timers", sa.column("topic"), sa.column("key"), sa.column("due_at", _Stamp),
    sa.column("every_seconds", sa.Float()), sa.column("status"),
    sa.column("available_at", _Stamp), sa.column("attempts", sa.Integer()),
    sa.column("version", sa.Integer()), sa.column("fired_count", sa.Integer()),
    sa.column("created_at", _Stamp), sa.column("updated_at", _Stamp))


def upgrade() -> None:
    bind = op.get_bind()
    now = datetime.now(UTC)
    checks = bind.execute(
        sa.select(_configs.c.id, _configs.c.interval_seconds, _schedule.c.next_run_at)
        .select_from(_configs.outerjoin(
            _schedule, _schedule.c.configuration_id == _configs.c.id))
        .where(sa.not_(_configs.c.paused))
        .order_by(_configs.c.id)).all()
    armed = set(bind.execute(sa.select(_timers.c.key)
                             .where(_timers.c.topic == CHECK_TOPIC)).scalars())
    rows = []
    for check in checks:
        if check.id in armed:
            continue
        due = check.next_run_at or now
        rows.append({
            "topic": CHECK_TOPIC, "key": check.id, "due_at": due, "available_at": due,
            "every_seconds": float(check.interval_seconds), "status": "scheduled",
            "attempts": 0, "version": 1, "fired_count": 0, "created_at": now,
            "updated_at": now})
    if rows:
        bind.execute(_timers.insert(), rows)
    op.drop_index("ix_health_schedule_due", table_name="health_check_schedule")
    op.drop_table("health_check_schedule")


def downgrade() -> None:
    raise NotImplementedError("health migrations only go forward: restore a backup")
