"""When the ``[schedule] passes`` crontab starts the next pass (read in the sender's time zone)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from mailer.config import Settings


def pass_triggers(settings: Settings) -> list[CronTrigger]:
    zone = ZoneInfo(settings.sender.timezone)
    return [CronTrigger.from_crontab(expression, timezone=zone) for expression in settings.schedule.passes]


def next_pass(settings: Settings, after: datetime) -> datetime:
    """When the schedule next starts a pass after ``after`` (aware, UTC)."""
    times: list[datetime] = [t.get_next_fire_time(None, after) for t in pass_triggers(settings)]
    return min(times).astimezone(UTC)
