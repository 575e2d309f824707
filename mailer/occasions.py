"""PURE: which occasions a customer has reached, as of a date in their own time zone.

Nothing here touches the store, the network or the clock. A picker takes the
customer's facts, a campaign and a span of local dates, and returns the
occasions that fall on those dates, each with a key that makes sending it
idempotent (the send log is UNIQUE on customer, campaign and key).
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from mailer.config import Campaign


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    """What the decisions need to know about a customer, detached from the store."""

    id: int
    external_id: str
    email: str
    customer_since: date
    timezone: str
    tags: frozenset[str] = frozenset()
    birthday_month: int | None = None
    birthday_day: int | None = None
    birthday_year: int | None = None
    order_count: int = 0
    lifetime_spend: Decimal = Decimal(0)
    interaction_count: int = 0
    last_interaction_at: datetime | None = None
    last_emailed_at: datetime | None = None
    unsubscribed: bool = False
    suppressed: bool = False


@dataclass(frozen=True, slots=True)
class Occasion:
    """An occasion reached by one customer for one campaign, marked on local date ``due``."""

    customer_id: int
    campaign: str
    kind: str
    key: str
    due: date
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def marked_on(month: int, day: int, year: int) -> date:
    """The day a yearly month/day is marked in ``year``: Feb 29 falls on Feb 28 in common years."""
    if month == 2 and day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return date(year, month, day)


def days_back(today: date, lookback: int) -> Iterator[date]:
    """``today`` and the ``lookback`` days before it, newest first."""
    for offset in range(lookback + 1):
        yield today - timedelta(days=offset)


def anniversary(customer: CustomerFacts, campaign: Campaign, today: date, lookback: int) -> list[Occasion]:
    """Customer-since anniversaries on ``today`` or up to ``lookback`` days before it."""
    since = customer.customer_since
    found = []
    for day in days_back(today, lookback):
        years = day.year - since.year
        if years < 1 or marked_on(since.month, since.day, day.year) != day:
            continue
        if campaign.years and years not in campaign.years:
            continue
        found.append(
            Occasion(customer.id, campaign.name, "anniversary", f"anniversary:{day.year}", day, {"years": years})
        )
    return found


def birthday(customer: CustomerFacts, campaign: Campaign, today: date, lookback: int) -> list[Occasion]:
    """Birthdays on ``today`` or up to ``lookback`` days before it; ``age`` only when the year is known."""
    if customer.birthday_month is None or customer.birthday_day is None:
        return []
    found = []
    for day in days_back(today, lookback):
        if marked_on(customer.birthday_month, customer.birthday_day, day.year) != day:
            continue
        age = day.year - customer.birthday_year if customer.birthday_year else None
        found.append(Occasion(customer.id, campaign.name, "birthday", f"birthday:{day.year}", day, {"age": age}))
    return found


Picker = Callable[[CustomerFacts, Campaign, date, int], list[Occasion]]

PICKERS: dict[str, Picker] = {
    "anniversary": anniversary,
    "birthday": birthday,
}


def pick(customer: CustomerFacts, campaign: Campaign, today: date, lookback: int) -> list[Occasion]:
    """All occasions of ``campaign`` the customer reached in the ``lookback`` days up to ``today``."""
    picker = PICKERS.get(campaign.occasion)
    return picker(customer, campaign, today, lookback) if picker else []
