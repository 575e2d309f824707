"""PURE: how many codes each gift needs over a forecast, and whether its pool lasts.

The need is the forecast's ``send`` count of every campaign that gives the
gift. A pooled code is usable on a day only while it has not expired (its
expiry is after that day), and a pass takes the soonest-expiring code first,
so the pool is drawn down day by day in that order: codes that expire unused
do not count as left.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from mailer.config import Campaign, Gift
from mailer.planning.forecast import ForecastRow


@dataclass(frozen=True, slots=True)
class GiftNeed:
    gift: Gift
    days: int  # the horizon the need is counted over
    need: int  # codes the forecast's emails take
    left: int | None  # codes usable on the first day (None: generated, never runs out)
    short: int  # emails over the horizon that would find the pool empty
    runs_out: date | None  # the first day an email finds no code

    def describe(self) -> str:
        if self.left is None:
            return f"gift {self.gift.name!r}: {self.need} code(s) to be made over the next {self.days} days"
        text = f"gift {self.gift.name!r}: {self.need} needed over the next {self.days} days, {self.left} left"
        if self.runs_out is not None:
            text += f": runs out on {self.runs_out}, {self.short} short"
        return text


def daily_need(rows: Iterable[ForecastRow], campaigns: Iterable[Campaign]) -> dict[str, Counter[date]]:
    """Per gift name: how many of its codes each forecast day's emails take."""
    gift_of = {c.name: c.gift.name for c in campaigns if c.gift is not None}
    need: dict[str, Counter[date]] = {name: Counter() for name in gift_of.values()}
    for row in rows:
        name = gift_of.get(row.campaign)
        if name is not None and row.send:
            need[name][row.day] += row.send
    return need


def assess(gift: Gift, days: int, per_day: Mapping[date, int], expiries: Sequence[date | None]) -> GiftNeed:
    """Draw the pool (the expiry of each usable code; None: never) down by ``per_day``'s need, soonest expiry first."""
    need = sum(per_day.values())
    if gift.kind == "generated":
        return GiftNeed(gift, days, need, None, 0, None)
    pool = sorted(expiries, key=lambda d: (d is None, d or date.min))
    taken = 0  # codes before this index are given or expired
    short = 0
    runs_out: date | None = None
    for day in sorted(per_day):
        while taken < len(pool) and (expiry := pool[taken]) is not None and expiry <= day:
            taken += 1  # expired before anyone could get it
        wanted = per_day[day]
        served = min(wanted, len(pool) - taken)
        taken += served
        if served < wanted:
            short += wanted - served
            runs_out = runs_out or day
    return GiftNeed(gift, days, need, len(pool), short, runs_out)
