"""When a row that failed for now is tried again: exponential backoff up to a deadline."""

from __future__ import annotations

from datetime import datetime, timedelta


def retry_at(first: datetime, attempts: int, now: datetime, initial: timedelta, max_age: timedelta) -> datetime | None:
    """When to try again after the ``attempts``-th failed attempt, or None to give up.

    Exponential backoff (``initial``, then doubling), never past
    ``first + max_age``: the last attempt happens at that deadline, and a
    failure then is final. With 30 min and 3 days: attempts at 0, 0.5, 1.5,
    3.5, 7.5, 15.5, 31.5, 63.5 and 72 hours.
    """
    deadline = first + max_age
    if now >= deadline:
        return None
    return min(now + initial * (1 << max(attempts - 1, 0)), deadline)


def span(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"
