"""The forecast (``mailer plan``): consecutive simulated passes over the store, nothing written."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from sqlmodel import Session

from mailer.config import Campaign, Settings
from mailer.planning import candidates
from mailer.planning.clock import PassClock
from mailer.planning.plan import Overlay, expiry_cutoff, plan
from mailer.planning.policy import Verdict


@dataclass(frozen=True, slots=True)
class ForecastRow:
    day: date
    campaign: str
    send: int
    defer: int
    skip: int
    # Of those, how many the customers' own wishes held back (the preference page).
    paused: int = 0
    opted_out: int = 0


def forecast(
    session: Session, settings: Settings, start: date, days: int, campaigns: Iterable[Campaign]
) -> list[ForecastRow]:
    """What ``days`` consecutive ``mailer run --date`` passes from ``start`` would decide; writes nothing.

    Each day runs the real :func:`plan` with that day's :class:`PassClock`;
    its decisions carry over to the next day as if they had been recorded and
    delivered, and deferrals expire as :func:`settle` expires them, so the
    counts per day and campaign are those of the real passes (send = queued
    for delivery; skip includes deferrals the day's pass logs expired). Rows
    only for a day and campaign with something to report.
    """
    campaigns = [c for c in campaigns if c.enabled]
    overlay = Overlay()
    for row in candidates.deferrals(session):
        overlay.deferred[(row.customer_id, row.campaign, row.key)] = row.due
    rows: list[ForecastRow] = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        clock = PassClock.on(day)
        # The first day looks back like a real pass would (an outage shows as expired occasions);
        # later days need only the catch-up window, as the simulated day before was planned.
        lookback = None if offset == 0 else settings.policy.catch_up_days
        planned = plan(session, settings, clock, campaigns, lookback=lookback, overlay=overlay)
        counts = Counter((item.decision.occasion.campaign, item.decision.verdict) for item in planned)
        wished = Counter(
            (item.decision.occasion.campaign, wish)
            for item in planned
            if (wish := _wish(item.decision.reason))
        )
        overlay.apply(planned, clock)
        expired = overlay.expire(expiry_cutoff(settings, day))
        for campaign in campaigns:
            send, defer, skip = (counts[(campaign.name, v)] for v in (Verdict.SEND, Verdict.DEFER, Verdict.SKIP))
            skip += expired[campaign.name]
            if send or defer or skip:
                wishes = (wished[(campaign.name, "paused")], wished[(campaign.name, "opted out")])
                rows.append(ForecastRow(day, campaign.name, send, defer, skip, *wishes))
    return rows


def _wish(reason: str) -> str:
    """``paused`` or ``opted out`` when a customer's own wish decided (see :mod:`mailer.planning.policy`), else ""."""
    if reason.startswith("paused until "):
        return "paused"
    return "opted out" if reason == "opted out of campaign" else ""
