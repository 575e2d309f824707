"""One customer's outlook: the occasions the coming passes would decide for them, and how.

The same simulation as the forecast (:mod:`mailer.planning.forecast`): one
:func:`plan` per day from ``start``, each day's decisions carried over to the
next as if recorded and delivered; but restricted to one customer, so it reads
only that customer's rows, and kept per occasion rather than counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, timedelta

from sqlmodel import Session

from mailer.config import Campaign, Settings
from mailer.planning import candidates
from mailer.planning.clock import PassClock
from mailer.planning.plan import Overlay, expired_reason, expiry_cutoff, plan
from mailer.planning.policy import Verdict

MAX_DAYS = 366  # a year and a day: every yearly occasion once


@dataclass(frozen=True, slots=True)
class Upcoming:
    """An occasion of one customer and the last decision the simulated passes took on it.

    ``decided_on`` is the day of that pass: the due date, or later when the
    occasion was deferred (then sent, or still waiting at the end of the span).
    """

    campaign: str
    key: str
    kind: str
    due: date
    decided_on: date
    verdict: Verdict
    reason: str
    waited: str = ""  # why it was deferred before this decision, when it was


def outlook(
    session: Session, settings: Settings, customer_id: int, start: date, days: int, campaigns: Iterable[Campaign]
) -> list[Upcoming]:
    """What ``days`` consecutive passes from ``start`` would decide for one customer, by due date; writes nothing."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be 1 to {MAX_DAYS}, not {days}")
    campaigns = [c for c in campaigns if c.enabled]
    overlay = Overlay()
    for row in candidates.deferrals(session):
        if row.customer_id == customer_id:
            overlay.deferred[(row.customer_id, row.campaign, row.key)] = row.due
    found: dict[tuple[str, str], Upcoming] = {}
    for offset in range(days):
        day = start + timedelta(days=offset)
        clock = PassClock.on(day)
        # The first day looks back as a real pass would; later ones need only the catch-up window.
        lookback = None if offset == 0 else settings.policy.catch_up_days
        planned = plan(session, settings, clock, campaigns, lookback=lookback, overlay=overlay, only=[customer_id])
        for item in planned:
            decision, occasion = item.decision, item.decision.occasion
            earlier = found.get((occasion.campaign, occasion.key))
            waited = earlier.reason if earlier is not None and earlier.verdict is Verdict.DEFER else ""
            found[(occasion.campaign, occasion.key)] = Upcoming(
                occasion.campaign, occasion.key, occasion.kind, occasion.due, day, decision.verdict, decision.reason,
                waited,
            )
        overlay.apply(planned, clock)
        # A deferral whose catch-up window is over is logged expired by the pass, as settle() does.
        waiting = set(overlay.deferred)
        overlay.expire(expiry_cutoff(settings, day))
        for _, campaign, key in waiting - set(overlay.deferred):
            held = found.get((campaign, key))
            if held is not None:
                reason = expired_reason(day, held.due, held.reason)
                found[(campaign, key)] = replace(held, decided_on=day, verdict=Verdict.SKIP, reason=reason)
    return sorted(found.values(), key=lambda u: (u.due, u.campaign, u.key))
