"""An example for the how-to "Durable timers and scheduled jobs": reminders.

A reminder is a one-shot durable timer keyed by its id, armed with a payload and fired
once per cluster at its deadline, even across restarts. A follow-up is a recurring
timer that nags every few seconds until it is cancelled, and a weekday digest is a
scheduled job (a recurring timer too, on a cron expression).

Run it from the repository root (a temporary SQLite file, removed afterwards):

    .venv/bin/python docs/examples/reminders.py
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

from reactive_core import Host, Registry, RetryPolicy, Timer, TimerStatus, hookimpl

REMINDER = "reminders.due"
"""The timer topic of reminders; the key is the reminder id."""


class Reminders:
    """Arms reminders and sends them when they fire."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self.sent: list[str] = []

    async def remind(self, reminder_id: str, text: str, *, at: datetime | None = None,
                     after: timedelta | None = None, every: timedelta | None = None) -> Timer:
        """Arm (or re-arm: one timer per id) the reminder `reminder_id`."""
        return await self._host.timers.schedule(REMINDER, reminder_id, at=at, after=after,
                                                every=every, payload={"text": text})

    async def forget(self, reminder_id: str) -> bool:
        """Cancel a reminder; False when there was none (it already fired)."""
        return await self._host.timers.cancel(REMINDER, reminder_id)

    async def send(self, timer: Timer) -> None:
        """Timer handler: send the reminder (here: print it)."""
        text = timer.payload["text"]
        if text == "boom":
            raise ConnectionError("the mail server refused the message")
        self.sent.append(timer.key)
        print(f"reminder {timer.key}: {text} (attempt {timer.attempts}"
              f"{', every ' + str(timer.every_seconds) + 's' if timer.recurring else ''})")


async def weekday_digest(host: Host, slot: datetime) -> None:
    """Scheduled job: a digest every weekday at 08:00 UTC, once per cluster."""
    due = await host.timers.list(REMINDER)
    print(f"digest for {slot:%a %d %b}: {len(due)} reminders pending")


class RemindersPlugin:
    """Reminders (a timer topic) and a weekday digest (a job)."""

    name = "reminders"

    def __init__(self) -> None:
        self.reminders: Reminders | None = None

    @hookimpl
    def reactive_register(self, registry: Registry, host: Host) -> None:
        self.reminders = reminders = Reminders(host)
        registry.on_timer(REMINDER, reminders.send, concurrency=4, lease_seconds=30,
                          retry=RetryPolicy(max_retries=2, base_seconds=0.1),
                          timeout_seconds=10)
        registry.add_job("reminders.digest", weekday_digest, cron="0 8 * * MON-FRI")


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'reminders.db'}"
        async with Host(database_url=url, plugins=[RemindersPlugin], entry_points=False,
                        config={"poll_interval": 0.1}) as host:
            plugin = host.plugin("reminders")
            assert isinstance(plugin, RemindersPlugin) and plugin.reminders is not None
            reminders = plugin.reminders

            await reminders.remind("tea", "the tea is ready", after=timedelta(seconds=0.3))
            await reminders.remind("call", "call the supplier", after=timedelta(hours=1))
            await reminders.remind("call", "call the supplier at once", after=timedelta(0))
            await reminders.remind("nag", "water the plants", every=timedelta(seconds=0.2))
            await reminders.remind("bad", "boom", after=timedelta(0))
            await anyio.sleep(1.0)
            print("cancelled nag:", await reminders.forget("nag"))
            print("cancelled tea:", await reminders.forget("tea"))

            dead = await host.timers.list(status=TimerStatus.DEAD)
            print("dead:", [(t.key, t.attempts, t.last_error) for t in dead])
            job = await host.timers.get("job:reminders.digest", "schedule")
            assert job is not None
            print("digest due:", job.due_at.strftime("%a %H:%M UTC"), job.cron,
                  job.due_at > datetime.now(UTC))


if __name__ == "__main__":
    anyio.run(main)
