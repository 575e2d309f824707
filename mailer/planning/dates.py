"""Calendar arithmetic for passes: which local dates an instant stands for, month/day keys, their instants."""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from mailer.store.tables import month_day

# Every local date on Earth at one UTC instant lies within this span of it.
_EARLIEST_OFFSET = timedelta(hours=-12)


_LATEST_OFFSET = timedelta(hours=14)


def local_dates_span(utc_now: datetime, lookback_days: int) -> list[date]:
    """Every calendar date that is 'today' somewhere, plus the catch-up days before them."""
    earliest = (utc_now + _EARLIEST_OFFSET).date() - timedelta(days=lookback_days)
    latest = (utc_now + _LATEST_OFFSET).date()
    return [earliest + timedelta(days=i) for i in range((latest - earliest).days + 1)]


def month_days_for(dates: Iterable[date]) -> set[int]:
    """MMDD values that can be marked on these dates (Feb 28 also stands for Feb 29 in common years)."""
    values = set()
    for day in dates:
        values.add(month_day(day))
        if day.month == 2 and day.day == 28 and not calendar.isleap(day.year):
            values.add(229)
    return values


def earliest_instant(day: date) -> datetime:
    """The first UTC instant at which ``day`` is the local date somewhere on Earth."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) - _LATEST_OFFSET


def latest_instant(day: date) -> datetime:
    """The first UTC instant at which ``day`` is over everywhere on Earth."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1) - _EARLIEST_OFFSET
