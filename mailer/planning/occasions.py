"""PURE: which occasions a customer has reached, as of a date in their own time zone.

Nothing here touches the store, the network or the clock. A picker takes the
customer's facts, a campaign and a span of local dates (``today`` and the
``lookback`` days before it), and returns the occasions that fall on those
dates, each with a key that makes sending it idempotent (the send log is
UNIQUE on customer, campaign and key).

The rules, one per occasion kind (the README says the same for marketers):

``anniversary``
    the ``customer_since`` month/day, optionally only for listed ``years``;
    Feb 29 is marked on Feb 28 in common years. Key ``anniversary:<year>``.
``birthday``
    the birthday's month/day, same Feb 29 rule. Key ``birthday:<year>``.
``milestone``
    a metric first reaches a threshold. The occasion is dated by the event
    that crossed it, in the customer's zone: for ``order_count``,
    ``lifetime_spend`` and ``interaction_count`` the interaction that took the
    running total from below the threshold to at or above it; for
    ``years_as_customer`` the anniversary itself. Only crossings dated inside
    the look-back are occasions, so a customer imported with 57 orders, or a
    campaign enabled today, never yields a "10th order" email for a crossing
    that happened years ago. The running total before the look-back is the
    stored aggregate minus the interactions the look-back holds, so the pass
    never adds up a customer's history. Several thresholds crossed at once
    (one import, one big order) all become occasions in one ``series``; the
    policy sends the highest and logs the others ``skipped: superseded``.
    A refund (an order with a negative amount) lowers lifetime spend; a
    threshold reached again after one is not a new crossing inside the
    look-back, and the key keeps it to one email across passes.
    Key ``milestone:<metric>:<threshold>``, so each threshold counts once.
``silence``
    no interaction for N days (``after_days`` one number or a series). A
    silent spell starts at the local date of an interaction (or
    ``customer_since``, until the first interaction); each step is due that
    many days later, once, if no interaction came first. The next interaction
    starts a new spell with new keys. A step that fell due while the daemon
    was down, in a spell that an interaction imported since has ended, is
    still an occasion (so it is logged, not lost), but a moot one: the
    customer is back. Key ``silence:<spell start>:<N>``.
``follow_up``
    ``after_days`` days after each interaction of ``interaction_kind``. Key
    ``follow_up:<interaction id>``. Interactions whose follow-up falls before
    the look-back are never occasions (so enabling the campaign does not
    survey the whole history).
``date``
    a date the customer's ``attribute`` holds (``renewal_date``), moved by
    ``offset_days`` (``-14``: two weeks before it). ``repeat = "yearly"`` marks
    its month/day every year from the date's own year on (Feb 29 on Feb 28 in
    common years), ``"once"`` the date only. Key ``date:<attribute>:<the date
    marked>``, so a date changed by a re-import is a new occasion and the same
    date is never marked twice.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from mailer.config import Campaign


@dataclass(frozen=True, slots=True)
class InteractionFact:
    """One interaction, as the pickers see it (``occurred_at`` is aware UTC)."""

    id: int
    kind: str
    occurred_at: datetime
    amount: Decimal | None = None
    reference: str | None = None


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    """What the decisions need to know about a customer, detached from the store.

    ``recent`` holds every interaction of the customer from some instant
    onward, oldest first: the store loads them from early enough to cover the
    pass's look-back (and a follow-up's delay before it; for silence, with the
    last interaction before that instant, which started the spell then under
    way). The aggregates count all interactions ever imported, ``recent``
    ones included.
    """

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
    recent: tuple[InteractionFact, ...] = ()
    # The preference page's finer wishes (mailer.contacts.preferences): campaigns left, no mail before a date.
    opted_out_of: frozenset[str] = frozenset()
    paused_until: date | None = None
    # When the latest unhappy answer nobody has marked handled came in (see mailer.outbox.feedback); else None.
    unhappy_since: datetime | None = None
    # Date attributes a date campaign reads (attribute, date); loaded only for those campaigns.
    dates: tuple[tuple[str, date], ...] = ()


@dataclass(frozen=True, slots=True)
class Occasion:
    """An occasion reached by one customer for one campaign, marked on local date ``due``.

    Occasions of one campaign that share a ``series`` stand for the same
    moment (thresholds crossed together, steps of one silent spell): only the
    highest ``rank`` is worth an email.
    """

    customer_id: int
    campaign: str
    kind: str
    key: str
    due: date
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    series: str = ""
    rank: float = 0
    moot: str = ""  # why this occasion, though it fell due, is no longer worth an email ("" if it is)


def marked_on(month: int, day: int, year: int) -> date:
    """The day a yearly month/day is marked in ``year``: Feb 29 falls on Feb 28 in common years."""
    if month == 2 and day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return date(year, month, day)


def days_back(today: date, lookback: int) -> Iterator[date]:
    """``today`` and the ``lookback`` days before it, newest first."""
    for offset in range(lookback + 1):
        yield today - timedelta(days=offset)


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_date(instant: datetime, zone: str) -> date:
    """The calendar date of an aware instant in the IANA ``zone``."""
    return instant.astimezone(_zone(zone)).date()


def noon(day: date, zone: str) -> datetime:
    """Noon of ``day`` in the IANA ``zone``, as an aware UTC instant (never in a DST gap)."""
    return datetime.combine(day, time(12), _zone(zone)).astimezone(UTC)


def _within(due: date, today: date, lookback: int) -> bool:
    return today - timedelta(days=lookback) <= due <= today


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


def is_refund(interaction: InteractionFact) -> bool:
    """An order with a negative amount: it lowers lifetime spend but is not an order of its own."""
    return interaction.kind == "order" and interaction.amount is not None and interaction.amount < 0


def _order_contribution(interaction: InteractionFact) -> Decimal:
    return Decimal(1) if interaction.kind == "order" and not is_refund(interaction) else Decimal(0)


def _spend_contribution(interaction: InteractionFact) -> Decimal:
    return (interaction.amount or Decimal(0)) if interaction.kind == "order" else Decimal(0)


def _interaction_contribution(_interaction: InteractionFact) -> Decimal:
    return Decimal(1)


# How much one interaction adds to each metric, and the aggregate that holds the total.
# These must agree with what the importer adds to the customer's aggregates.
_METRICS: dict[str, tuple[Callable[[InteractionFact], Decimal], Callable[[CustomerFacts], Decimal]]] = {
    "order_count": (_order_contribution, lambda c: Decimal(c.order_count)),
    "lifetime_spend": (_spend_contribution, lambda c: Decimal(c.lifetime_spend)),
    "interaction_count": (_interaction_contribution, lambda c: Decimal(c.interaction_count)),
}


def threshold_text(value: float) -> str:
    """A threshold as it appears in keys and templates: ``10``, ``2500``, ``99.5``."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _milestone_occasion(customer: CustomerFacts, campaign: Campaign, threshold: float, due: date) -> Occasion:
    number: int | float = int(threshold) if float(threshold).is_integer() else threshold
    return Occasion(
        customer.id,
        campaign.name,
        "milestone",
        f"milestone:{campaign.metric}:{threshold_text(threshold)}",
        due,
        {"metric": campaign.metric, "threshold": number},
        series=f"milestone:{campaign.metric}",
        rank=float(threshold),
    )


def milestone(customer: CustomerFacts, campaign: Campaign, today: date, lookback: int) -> list[Occasion]:
    """Thresholds of ``campaign.metric`` crossed on ``today`` or up to ``lookback`` days before it.

    A crossing is dated by the interaction that made it (see the module
    docstring); crossings before the look-back, or by interactions dated after
    ``today``, are not occasions.
    """
    if campaign.metric == "years_as_customer":
        since = customer.customer_since
        found = []
        for day in days_back(today, lookback):
            years = day.year - since.year
            if years in campaign.thresholds and marked_on(since.month, since.day, day.year) == day:
                found.append(_milestone_occasion(customer, campaign, years, day))
        return found
    contribution, total = _METRICS[campaign.metric]
    value = total(customer) - sum((contribution(i) for i in customer.recent), Decimal(0))
    # A refund lowers lifetime spend; climbing back over a threshold is not reaching it for the first time.
    highest = value
    thresholds = [(t, Decimal(str(t))) for t in campaign.thresholds]
    found = []
    for interaction in sorted(customer.recent, key=lambda i: (i.occurred_at, i.id)):
        value += contribution(interaction)
        crossed = [t for t, exact in thresholds if highest < exact <= value]
        highest = max(highest, value)
        if not crossed:
            continue
        due = local_date(interaction.occurred_at, customer.timezone)
        if _within(due, today, lookback):
            found.extend(_milestone_occasion(customer, campaign, t, due) for t in crossed)
    return found


def silence(customer: CustomerFacts, campaign: Campaign, today: date, lookback: int) -> list[Occasion]:
    """Steps of the customer's silent spells that fell due on ``today`` or the ``lookback`` days before.

    Spells are rebuilt from ``recent`` and ``last_interaction_at``: each runs
    from an interaction's local date to the next one's (the spell before the
    first interaction from ``customer_since``, when ``recent`` holds every
    interaction the customer has). A step counts only if it fell due before
    the spell ended; a step of an ended spell is moot.
    """
    zone = customer.timezone
    starts = [local_date(i.occurred_at, zone) for i in customer.recent]
    if customer.last_interaction_at is not None:
        last = local_date(customer.last_interaction_at, zone)
        if not starts or last > starts[-1]:
            starts.append(last)
    if customer.last_interaction_at is None or (
        customer.recent and customer.interaction_count <= len(customer.recent)
    ):
        starts.insert(0, customer.customer_since)
    found = []
    for start, end in zip(starts, [*starts[1:], None], strict=True):
        for step in campaign.after_days:
            due = start + timedelta(days=step)
            if not _within(due, today, lookback) or (end is not None and due >= end):
                continue
            found.append(
                Occasion(
                    customer.id,
                    campaign.name,
                    "silence",
                    f"silence:{start.isoformat()}:{step}",
                    due,
                    {"days_silent": step, "silent_since": start},
                    series=f"silence:{start.isoformat()}",
                    rank=float(step),
                    moot="" if end is None else f"ended: an interaction on {end} broke the silence",
                )
            )
    return found


def follow_up(customer: CustomerFacts, campaign: Campaign, today: date, lookback: int) -> list[Occasion]:
    """One occasion per interaction of ``campaign.interaction_kind`` (refunds aside), ``after_days`` later."""
    delay = timedelta(days=campaign.after_days[0])
    found = []
    for interaction in customer.recent:
        if interaction.kind != campaign.interaction_kind or is_refund(interaction):
            continue  # nobody is asked "how did we do?" about a refund
        happened = local_date(interaction.occurred_at, customer.timezone)
        due = happened + delay
        if not _within(due, today, lookback):
            continue
        details = {
            "days_after": delay.days,
            "interaction": {
                "id": interaction.id,
                "kind": interaction.kind,
                "date": happened.isoformat(),
                "reference": interaction.reference or "",
                "amount": str(interaction.amount) if interaction.amount is not None else "",
            },
        }
        found.append(Occasion(customer.id, campaign.name, "follow_up", f"follow_up:{interaction.id}", due, details))
    return found


def date_occasion(customer: CustomerFacts, campaign: Campaign, today: date, lookback: int) -> list[Occasion]:
    """The ``campaign.attribute`` date (every year, or once), ``offset_days`` away, on ``today`` or the look-back."""
    value = dict(customer.dates).get(campaign.attribute)
    if value is None:
        return []
    found = []
    for day in days_back(today, lookback):
        marked = day - timedelta(days=campaign.offset_days)  # the date this day is offset_days away from
        if campaign.repeat == "once":
            hit = marked == value
        else:
            hit = marked.year >= value.year and marked_on(value.month, value.day, marked.year) == marked
        if not hit:
            continue
        details = {"attribute": campaign.attribute, "date": marked, "days_until": (marked - day).days}
        details["years"] = marked.year - value.year
        key = f"date:{campaign.attribute}:{marked.isoformat()}"
        found.append(Occasion(customer.id, campaign.name, "date", key, day, details))
    return found


Picker = Callable[[CustomerFacts, Campaign, date, int], list[Occasion]]

PICKERS: dict[str, Picker] = {
    "anniversary": anniversary,
    "birthday": birthday,
    "milestone": milestone,
    "silence": silence,
    "follow_up": follow_up,
    "date": date_occasion,
}


def pick(customer: CustomerFacts, campaign: Campaign, today: date, lookback: int) -> list[Occasion]:
    """All occasions of ``campaign`` the customer reached in the ``lookback`` days up to ``today``."""
    return PICKERS[campaign.occasion](customer, campaign, today, lookback)
