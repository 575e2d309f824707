"""The plan of one pass: every decision, from the store's facts through the pure pickers and policy.

Reads only; recording the decisions is the outbox's job.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from sqlmodel import Session

from mailer.config import Campaign, Settings
from mailer.contacts import preferences
from mailer.planning import candidates
from mailer.planning.clock import PassClock
from mailer.planning.occasions import CustomerFacts, Occasion, pick
from mailer.planning.policy import Decision, PassMoment, Verdict, decide
from mailer.store import bulk
from mailer.store.tables import PlanMark, SendStatus

log = logging.getLogger(__name__)


# However long the outage, a pass never looks back further than this.
MAX_LOOKBACK_DAYS = 400


PLAN_MARK = "plan"


@dataclass(frozen=True, slots=True)
class Planned:
    """One decision of a pass; ``redecided`` when it decides again an occasion the send log holds as deferred."""

    customer: CustomerFacts
    decision: Decision
    redecided: bool = False


@dataclass
class Overlay:
    """Decisions a simulation has taken on top of the store (``mailer plan``): nothing is written.

    ``logged`` adds send-log statuses per customer, ``emailed`` the instants
    customers count as emailed, ``deferred`` the due date of every occasion
    held back, by (customer, campaign, key): the store's deferrals first,
    then the simulation's.
    """

    logged: dict[int, dict[tuple[str, str], str]] = field(default_factory=dict)
    emailed: dict[int, datetime] = field(default_factory=dict)
    deferred: dict[tuple[int, str, str], date] = field(default_factory=dict)

    def apply(self, planned: Iterable[Planned], clock: PassClock) -> None:
        """Take this pass's decisions as if they had been recorded and delivered by the pass."""
        for item in planned:
            occasion = item.decision.occasion
            status = SendStatus.SENT if item.decision.verdict is Verdict.SEND else item.decision.status
            self.logged.setdefault(occasion.customer_id, {})[(occasion.campaign, occasion.key)] = status
            slot = (occasion.customer_id, occasion.campaign, occasion.key)
            if status == SendStatus.DEFERRED:
                self.deferred[slot] = occasion.due
            else:
                self.deferred.pop(slot, None)
            if status == SendStatus.SENT:
                self.emailed[occasion.customer_id] = clock.emailed_at(item.customer.timezone)

    def expire(self, cutoff: date) -> Counter[str]:
        """Log every deferral due before ``cutoff`` as expired, as :func:`settle` does; how many, per campaign."""
        expired: Counter[str] = Counter()
        for slot, due in list(self.deferred.items()):
            if due < cutoff:
                customer_id, campaign, key = slot
                self.logged.setdefault(customer_id, {})[(campaign, key)] = SendStatus.SKIPPED
                del self.deferred[slot]
                expired[campaign] += 1
        return expired

    def waiting(self, due_from: date, due_before: date) -> set[int]:
        """Customers with a deferral due in [``due_from``, ``due_before``)."""
        return {slot[0] for slot, due in self.deferred.items() if due_from <= due < due_before}


def lookback_days(session: Session, settings: Settings, clock: PassClock) -> int:
    """How many days before today this pass looks for occasions.

    The catch-up window: an occasion at most that late is still sent, and a
    deferred one is decided again by every pass until the window is over
    (:func:`settle` then logs it expired). After an outage, every day since
    the last planned one (the plan mark), so that what fell due meanwhile is
    logged ``skipped: expired`` rather than lost (at most
    ``MAX_LOOKBACK_DAYS``). Days before the catch-up window that the mark says
    were planned are not looked at again: every occasion due on them was
    decided by the pass that planned them.
    """
    lookback = settings.policy.catch_up_days
    mark = session.get(PlanMark, PLAN_MARK)
    if mark is not None:
        latest_today = max(clock.local_dates(0))
        lookback = max(lookback, (latest_today - mark.planned_through).days)
    if lookback > MAX_LOOKBACK_DAYS:
        log.warning("last planned %s; looking back %d days only", mark and mark.planned_through, MAX_LOOKBACK_DAYS)
    return min(lookback, MAX_LOOKBACK_DAYS)


def plan(
    session: Session,
    settings: Settings,
    clock: PassClock,
    campaigns: Iterable[Campaign],
    *,
    lookback: int | None = None,
    overlay: Overlay | None = None,
    only: Sequence[int] | None = None,
) -> list[Planned]:
    """Every decision for this pass, from the store's facts and the pure pickers and policy.

    Reads only: nothing is written. ``lookback`` defaults to
    :func:`lookback_days`; ``overlay`` adds a simulation's earlier decisions.
    Deferrals due before the look-back are decided again too, up to
    ``min_days_between`` days before it: the frequency cap may still hold
    them (see :mod:`mailer.planning.policy`), and they expire only when it no longer does.
    ``only`` restricts the pass to these customer ids (one customer's outlook).
    """
    policy = settings.policy
    if lookback is None:
        lookback = lookback_days(session, settings, clock)
    campaigns = [c for c in campaigns if c.enabled]
    by_name = {c.name: c for c in campaigns}
    dates = clock.local_dates(lookback)
    waiting = _waiting_customers(session, clock, lookback, policy.min_days_between, overlay)
    if only is not None:
        waiting &= set(only)

    moments: dict[str, PassMoment] = {}  # one per time zone: the same for every customer in it

    def moment_for(zone: str) -> PassMoment:
        moment = moments.get(zone)
        if moment is None:
            moment = moments[zone] = clock.moment_for(zone)
        return moment

    found: dict[int, tuple[CustomerFacts, list[Occasion]]] = {}
    for campaign in campaigns:
        # Customers with a deferral waiting are picked below, with the longer look-back.
        for customer in candidates.candidates(
            session, campaign, dates, settings.sender.timezone, only=only, skip=waiting
        ):
            occasions = pick(customer, campaign, moment_for(customer.timezone).today, lookback)
            if occasions:
                found.setdefault(customer.id, (customer, []))[1].extend(occasions)
        if waiting:
            longer = lookback + policy.min_days_between
            ids = sorted(waiting)
            for chunk in bulk.chunks(session, ids):
                for customer in candidates.candidates(
                    session, campaign, clock.local_dates(longer), settings.sender.timezone, only=chunk
                ):
                    occasions = pick(customer, campaign, moment_for(customer.timezone).today, longer)
                    if occasions:
                        found.setdefault(customer.id, (customer, []))[1].extend(occasions)

    wishes = preferences.for_customers(session, sorted(found))
    logged: dict[int, dict[tuple[str, str], str]] = {}
    for (customer_id, campaign_name, key), status in candidates.logged_statuses(session, sorted(found)).items():
        logged.setdefault(customer_id, {})[(campaign_name, key)] = status
    planned: list[Planned] = []
    for customer_id, (customer, occasions) in found.items():
        stored = mine = logged.get(customer_id, {})
        wish = wishes.get(customer_id)
        if wish is not None:
            customer = replace(customer, opted_out_of=frozenset(wish.opted_out), paused_until=wish.paused_until)
        if overlay is not None:
            mine = {**mine, **overlay.logged.get(customer_id, {})}
            emailed = overlay.emailed.get(customer_id)
            if emailed is not None and (customer.last_emailed_at is None or emailed > customer.last_emailed_at):
                customer = replace(customer, last_emailed_at=emailed)
        moment = moment_for(customer.timezone)
        if customer_id in waiting:
            # The longer look-back is for deferrals only: an occasion first seen there is not this pass's.
            earliest = moment.today - timedelta(days=lookback)
            occasions = [
                o for o in occasions
                if o.due >= earliest or mine.get((o.campaign, o.key)) == SendStatus.DEFERRED
            ]
        for decision in decide(customer, occasions, by_name, mine, moment, policy):
            slot = (decision.occasion.campaign, decision.occasion.key)
            planned.append(Planned(customer, decision, redecided=slot in stored))
    return planned


def _waiting_customers(
    session: Session, clock: PassClock, lookback: int, cap_days: int, overlay: Overlay | None
) -> set[int]:
    """Customers with a deferral due up to ``cap_days`` days before the look-back of their zone."""
    if cap_days <= 0:
        return set()
    dates = clock.local_dates(lookback)
    # Wide enough for every zone: the earliest date anyone's look-back can reach, to the latest "today" less it.
    due_from = min(dates) - timedelta(days=cap_days)
    due_before = max(dates) - timedelta(days=lookback)
    if overlay is not None:
        return overlay.waiting(due_from, due_before)
    return {d.customer_id for d in candidates.deferrals(session, due_before=due_before, due_from=due_from)}


def expiry_cutoff(settings: Settings, planned_through: date) -> date:
    """Deferrals due before this date are over once ``planned_through`` is planned: no pass decides them again.

    The catch-up window, and the frequency cap's days before it (a deferral
    the cap still held may wait that long; see :mod:`mailer.planning.policy`).
    """
    policy = settings.policy
    return planned_through - timedelta(days=policy.catch_up_days + max(policy.min_days_between, 0))


def expired_reason(today: date, due: date, deferred_because: str) -> str:
    """``expired after 5 days deferred: frequency cap: last email 2027-03-01``: the deferral's reason is kept."""
    return f"expired after {(today - due).days} days deferred: {deferred_because}"[:1000]
