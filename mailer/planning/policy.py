"""PURE: for one customer and one pass, which of their occasions to send, defer or skip.

The steps run in the order of SPEC §4 and each outcome carries the reason
that ends up in the send log:

    segment → already settled → superseded → expired → moot → unsubscribed/suppressed
    → opted out of the campaign → paused → unhappy feedback waiting for a person
    → one email per customer per pass (highest priority wins, the rest deferred)
    → frequency cap → send window in the recipient's local time

The segment (``tags_any``/``tags_none``) says whom a campaign addresses: a
customer outside it never had the occasion, so nothing is logged for them
(a staff-only campaign would otherwise log a "skipped" row for every
customer's anniversary). Every other outcome is logged with its reason.

"Deferred" is never final: a deferred occasion is decided again by every
later pass until it is sent or its catch-up window is over, when it is
logged ``skipped: expired``. The frequency cap counts calendar days in the
customer's own zone (emailed on their day X, they can be emailed again from
day X + ``min_days_between``), from delivered email (``last_emailed_at``)
and from email still on its way (queued, sending, unknown), so a retrying
message is never joined by a second one. An occasion held back waits for the
cap: its catch-up days count from the day the cap lets it go, not from its
due date, so the cap alone never makes an occasion expire.

A customer who left one campaign on the preference page has its occasions
skipped (``opted out of campaign``); the other campaigns still reach them. A
pause defers every occasion (``paused until YYYY-MM-DD``, the first local day
mail may come again): one due near the end of the pause is sent when it ends,
one the pause outlasts by more than the catch-up days expires as usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from mailer.config import Campaign, PolicySettings
from mailer.planning.occasions import CustomerFacts, Occasion, local_date
from mailer.store.tables import SendStatus


class Verdict(StrEnum):
    SEND = "send"
    DEFER = "defer"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Decision:
    occasion: Occasion
    verdict: Verdict
    reason: str = ""
    history: bool = False  # the reason goes on with the row's earlier one (a deferral that expired)

    @property
    def status(self) -> SendStatus:
        return {
            Verdict.SEND: SendStatus.QUEUED,
            Verdict.DEFER: SendStatus.DEFERRED,
            Verdict.SKIP: SendStatus.SKIPPED,
        }[self.verdict]


@dataclass(frozen=True, slots=True)
class PassMoment:
    """When the pass runs, as the customer experiences it.

    ``local_now`` is the wall-clock time in the customer's zone; with
    ``window_open`` the send window is treated as open (``mailer run --date``),
    and with ``weekday_only`` as well, open on the configured weekdays only
    (a simulated day of ``mailer plan``).
    """

    today: date
    local_now: datetime | None
    window_open: bool
    weekday_only: bool = False


def in_send_window(local_now: datetime, policy: PolicySettings) -> bool:
    """True when the recipient's local wall-clock time is inside the configured window."""
    if local_now.weekday() not in policy.weekdays:
        return False
    return policy.window_start <= local_now.time().replace(tzinfo=None) < policy.window_end


def decide(
    customer: CustomerFacts,
    occasions: Iterable[Occasion],
    campaigns: Mapping[str, Campaign],
    logged: Mapping[tuple[str, str], str],
    moment: PassMoment,
    policy: PolicySettings,
) -> list[Decision]:
    """Decide every open occasion of one customer for this pass, as of ``moment.today``.

    ``logged`` maps (campaign, occasion key) to the status already in the send
    log for every row of this customer; occasions that are settled or in
    flight there get no decision at all. Every time rule compares local dates
    in the customer's zone: nothing here reads a clock.
    """
    occasions = list(occasions)
    best = _best_of_series(occasions)
    in_flight = any(status in IN_FLIGHT_STATUSES for status in logged.values())
    capped_until = cap_ends(customer, policy, moment.today, in_flight)
    decisions: list[Decision] = []
    contenders: list[Occasion] = []
    for occasion in occasions:
        if not in_segment(customer.tags, campaigns[occasion.campaign]):
            continue  # not whom this campaign addresses
        status = logged.get((occasion.campaign, occasion.key))
        if status is not None and status != SendStatus.DEFERRED:
            continue  # settled, queued for delivery, or waiting for a human
        top = best.get((occasion.campaign, occasion.series)) if occasion.series else None
        # A deferred occasion is late from the day the cap let it go, not from its due date.
        waited_from = occasion.due
        if status == SendStatus.DEFERRED and capped_until is not None:
            waited_from = max(occasion.due, capped_until)
        late = (moment.today - waited_from).days
        if top is not None and top.rank > occasion.rank:
            decisions.append(Decision(occasion, Verdict.SKIP, f"superseded: {top.key} instead"))
        elif late > policy.catch_up_days and status == SendStatus.DEFERRED:
            reason = f"expired after {(moment.today - occasion.due).days} days deferred"
            decisions.append(Decision(occasion, Verdict.SKIP, reason, history=True))
        elif late > policy.catch_up_days:
            reason = f"expired: due {occasion.due}, catch-up is {policy.catch_up_days} days"
            decisions.append(Decision(occasion, Verdict.SKIP, reason))
        elif occasion.moot:
            decisions.append(Decision(occasion, Verdict.SKIP, occasion.moot))
        elif customer.suppressed:
            decisions.append(Decision(occasion, Verdict.SKIP, "suppressed"))
        elif customer.unsubscribed:
            decisions.append(Decision(occasion, Verdict.SKIP, "unsubscribed"))
        elif occasion.campaign in customer.opted_out_of:
            decisions.append(Decision(occasion, Verdict.SKIP, "opted out of campaign"))
        elif customer.paused_until is not None and moment.today < customer.paused_until:
            reason = f"paused until {customer.paused_until:%Y-%m-%d}"
            decisions.append(Decision(occasion, Verdict.DEFER, reason))
        elif (waiting := waiting_for_a_person(customer, moment.today, policy)) is not None:
            reason = f"unhappy feedback on {waiting:%Y-%m-%d}, waiting for a person"
            decisions.append(Decision(occasion, Verdict.DEFER, reason))
        else:
            contenders.append(occasion)
    if not contenders:
        return decisions

    contenders.sort(key=lambda o: (-campaigns[o.campaign].priority, o.due, o.campaign, o.key))
    chosen, *others = contenders
    for occasion in others:
        reason = f"one email per pass: {chosen.campaign} goes first"
        decisions.append(Decision(occasion, Verdict.DEFER, reason))
    decisions.append(_gate(customer, chosen, moment, policy, capped_until, in_flight))
    return decisions


def waiting_for_a_person(customer: CustomerFacts, today: date, policy: PolicySettings) -> date | None:
    """The local date of an unhappy answer that still holds appreciation back on ``today``; None if none does.

    It holds until a person marks it handled (the store then forgets it) or ``unhappy_pause_days`` pass.
    """
    if customer.unhappy_since is None:
        return None
    since = local_date(customer.unhappy_since, customer.timezone)
    return since if today < since + timedelta(days=policy.unhappy_pause_days) else None


IN_FLIGHT_STATUSES = frozenset({SendStatus.QUEUED, SendStatus.SENDING, SendStatus.UNKNOWN})


def cap_ends(customer: CustomerFacts, policy: PolicySettings, today: date, in_flight: bool) -> date | None:
    """The first local date the frequency cap lets the customer be emailed again; None if it never held.

    ``today`` while an email is still on its way (its delivery day is not known yet).
    """
    if policy.min_days_between <= 0:
        return None
    if in_flight:
        return today + timedelta(days=1)
    if customer.last_emailed_at is None:
        return None
    return local_date(customer.last_emailed_at, customer.timezone) + timedelta(days=policy.min_days_between)


def _best_of_series(occasions: Iterable[Occasion]) -> dict[tuple[str, str], Occasion]:
    """The highest-ranked occasion of each (campaign, series): thresholds crossed together, steps of one spell."""
    best: dict[tuple[str, str], Occasion] = {}
    for occasion in occasions:
        if not occasion.series:
            continue
        slot = (occasion.campaign, occasion.series)
        if slot not in best or occasion.rank > best[slot].rank:
            best[slot] = occasion
    return best


def in_segment(tags: frozenset[str], campaign: Campaign) -> bool:
    if campaign.tags_any and not tags & campaign.tags_any:
        return False
    return not tags & campaign.tags_none


def _gate(
    customer: CustomerFacts,
    occasion: Occasion,
    moment: PassMoment,
    policy: PolicySettings,
    capped_until: date | None,
    in_flight: bool,
) -> Decision:
    """Frequency cap, then the send window, for the one occasion chosen this pass."""
    if in_flight and capped_until is not None:
        return Decision(occasion, Verdict.DEFER, "frequency cap: another email is on its way")
    if capped_until is not None and moment.today < capped_until:
        assert customer.last_emailed_at is not None
        last = local_date(customer.last_emailed_at, customer.timezone)
        return Decision(occasion, Verdict.DEFER, f"frequency cap: last email {last:%Y-%m-%d}")
    if moment.window_open and moment.weekday_only and moment.today.weekday() not in policy.weekdays:
        return Decision(occasion, Verdict.DEFER, f"not a sending day ({moment.today:%a})")
    if not moment.window_open:
        assert moment.local_now is not None
        if not in_send_window(moment.local_now, policy):
            reason = f"outside send window at {moment.local_now:%a %H:%M} local"
            return Decision(occasion, Verdict.DEFER, reason)
    return Decision(occasion, Verdict.SEND, "due")
