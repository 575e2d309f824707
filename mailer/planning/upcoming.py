"""What is coming for one customer: the forecast of ``mailer plan``, restricted to one customer id.

:func:`mailer.planning.forecast.forecast` plans every customer and only counts; a support person
(the admin view, an HTTP API) asks about one customer and wants each occasion with its verdict and
reason. This simulates the same consecutive passes, reading only that customer's candidates (the
indexed ``only=`` filter) and deciding with the same pure pickers and policy, so its answer is what
the real passes would log for them. Nothing is written.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import NamedTuple

from sqlmodel import Session

from mailer.config import Settings
from mailer.contacts import preferences
from mailer.planning import candidates
from mailer.planning.clock import PassClock
from mailer.planning.occasions import CustomerFacts, Occasion, pick
from mailer.planning.plan import Overlay, Planned, expiry_cutoff
from mailer.planning.policy import Decision, Verdict, decide
from mailer.store.tables import SendStatus


class Upcoming(NamedTuple):
    """One coming occasion: its due date, campaign, and what the passes would decide and why."""

    due: date
    campaign: str
    verdict: str  # send, defer or skip (Verdict); defer only when still held back at the end of the span
    reason: str


def upcoming(session: Session, settings: Settings, customer_id: int, start: date, days: int) -> list[Upcoming]:
    """The occasions of ``customer_id`` that ``days`` daily passes from ``start`` would decide, by due date.

    Each occasion appears once, with the verdict of the pass that settled it (a
    deferral that a later day sends shows as sent, its reason saying when and why
    it waited); one still deferred at the end of the span stays ``defer``. The
    first day looks back over the catch-up window, as a pass does, so an occasion
    due a little before ``start`` and not yet logged is still listed.
    """
    policy = settings.policy
    campaigns = [c for c in settings.campaigns if c.enabled]
    by_name = {c.name: c for c in campaigns}
    overlay = Overlay()
    for row in candidates.deferrals(session):
        if row.customer_id == customer_id:
            overlay.deferred[(row.customer_id, row.campaign, row.key)] = row.due
    stored = {
        (campaign, key): status
        for (_, campaign, key), status in candidates.logged_statuses(session, [customer_id]).items()
    }
    wish = preferences.for_customers(session, [customer_id]).get(customer_id)
    # Long enough to reach a deferral the frequency cap still holds (as plan() does for "waiting" customers).
    lookback = policy.catch_up_days + max(policy.min_days_between, 0)

    settled: dict[tuple[str, str], Upcoming] = {}
    for offset in range(days):
        day = start + timedelta(days=offset)
        clock = PassClock.on(day)
        facts, occasions = _occasions(session, settings, clock, customer_id, lookback)
        if facts is not None:  # None on a day no campaign's candidate filter picks them: nothing to decide
            if wish is not None:
                facts = replace(facts, opted_out_of=frozenset(wish.opted_out), paused_until=wish.paused_until)
            emailed = overlay.emailed.get(customer_id)
            if emailed is not None and (facts.last_emailed_at is None or emailed > facts.last_emailed_at):
                facts = replace(facts, last_emailed_at=emailed)
            mine = {**stored, **overlay.logged.get(customer_id, {})}
            moment = clock.moment_for(facts.timezone)
            # The longer look-back is for deferrals only, as in plan().
            earliest = moment.today - timedelta(days=policy.catch_up_days)
            occasions = [
                o for o in occasions if o.due >= earliest or mine.get((o.campaign, o.key)) == SendStatus.DEFERRED
            ]
            decisions = decide(facts, occasions, by_name, mine, moment, policy)
            for decision in decisions:
                _remember(settled, decision, day)
            overlay.apply([Planned(facts, d) for d in decisions], clock)
        # Deferrals whose catch-up window is over are logged expired by the day's pass (settle()).
        before = dict(overlay.deferred)
        overlay.expire(expiry_cutoff(settings, day))
        for (_, campaign, key), due in before.items():
            if (customer_id, campaign, key) not in overlay.deferred:
                waited = settled.get((campaign, key))
                why = waited.reason if waited else "deferred"
                settled[(campaign, key)] = Upcoming(due, campaign, Verdict.SKIP.value, f"expired on {day}: {why}")
    return sorted(settled.values(), key=lambda u: (u.due, u.campaign))


def _occasions(
    session: Session, settings: Settings, clock: PassClock, customer_id: int, lookback: int
) -> tuple[CustomerFacts | None, list[Occasion]]:
    """This customer's facts and their occasions of every enabled campaign within the look-back."""
    facts: CustomerFacts | None = None
    found: list[Occasion] = []
    dates = clock.local_dates(lookback)
    for campaign in settings.campaigns:
        if not campaign.enabled:
            continue
        for customer in candidates.candidates(session, campaign, dates, settings.sender.timezone, only=[customer_id]):
            facts = customer
            found.extend(pick(customer, campaign, clock.moment_for(customer.timezone).today, lookback))
    return facts, found


def _remember(settled: dict[tuple[str, str], Upcoming], decision: Decision, day: date) -> None:
    """Keep the decision that settles an occasion; a deferral only until a later day decides it again.

    A send after deferrals keeps the last deferral's reason, so "why not on the day" stays answered.
    """
    occasion = decision.occasion
    slot = (occasion.campaign, occasion.key)
    earlier = settled.get(slot)
    if earlier is not None and earlier.verdict != Verdict.DEFER:
        return  # settled by an earlier day; the overlay keeps later days from deciding it again anyway
    reason = f"sent on {day}" if decision.verdict == Verdict.SEND else decision.reason
    if earlier is not None and decision.verdict != Verdict.DEFER:
        reason = f"{reason} after deferral ({earlier.reason})"
    settled[slot] = Upcoming(occasion.due, occasion.campaign, decision.verdict.value, reason)
