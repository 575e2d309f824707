"""Whether each gift's pool lasts: the forecast's need against the codes left (``mailer plan``, ``mailer status``)."""

from __future__ import annotations

from datetime import date, timedelta

from sqlmodel import Session

from mailer.config import Campaign, Gift, Settings
from mailer.outbox import gifts
from mailer.planning.forecast import forecast
from mailer.planning.giftneed import GiftNeed, assess, daily_need


def needs(session: Session, settings: Settings, start: date, days: int, campaigns: list[Campaign]) -> list[GiftNeed]:
    """The need of every gift the (enabled) ``campaigns`` give, over ``days`` forecast days from ``start``."""
    giving = [c for c in campaigns if c.enabled and c.gift is not None]
    if not giving:
        return []
    per_day = daily_need(forecast(session, settings, start, days, giving), giving)
    by_name: dict[str, Gift] = {c.gift.name: c.gift for c in giving if c.gift is not None}
    return [
        assess(gift, days, per_day[name], gifts.usable_expiries(session, name, start - timedelta(days=1)))
        for name, gift in sorted(by_name.items())
    ]


def problems(session: Session, settings: Settings, today: date) -> list[str]:
    """One line per pool that runs out within its ``warn_days``, with the commands that show and fix it."""
    pooled = [c for c in settings.campaigns if c.enabled and c.gift is not None and c.gift.kind == "pool"]
    if not pooled:
        return []
    horizon = max(c.gift.warn_days for c in pooled if c.gift is not None)
    found = []
    for need in needs(session, settings, today, horizon, pooled):
        if need.runs_out is not None and need.runs_out < today + timedelta(days=need.gift.warn_days):
            found.append(
                f"{need.describe()}: see `mailer plan --days {need.days}` and `mailer gifts`, "
                f"then `mailer gifts import {need.gift.name} FILE.csv`"
            )
    return found
