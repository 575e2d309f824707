"""PURE: for one customer and one pass, which of their occasions to send, defer or skip.

The steps run in the order of SPEC §4 and each outcome carries the reason
that ends up in the send log:

    already settled → expired → unsubscribed/suppressed → segment
    → one email per customer per pass (highest priority wins)
    → frequency cap → send window in the recipient's local time
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from mailer.config import Campaign, PolicySettings
from mailer.models import FINAL_STATUSES, SendStatus
from mailer.occasions import CustomerFacts, Occasion


class Verdict(StrEnum):
    SEND = "send"
    DEFER = "defer"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Decision:
    occasion: Occasion
    verdict: Verdict
    reason: str = ""

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
    ``window_open`` the send window is treated as open (``mailer run --date``).
    """

    today: date
    local_now: datetime | None
    window_open: bool


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
    utc_now: datetime,
) -> list[Decision]:
    """Decide every open occasion of one customer for this pass.

    ``logged`` maps (campaign, occasion key) to the status already in the send
    log; occasions that are settled or in flight there get no decision at all.
    ``utc_now`` (aware) is compared with ``customer.last_emailed_at``.
    """
    decisions: list[Decision] = []
    contenders: list[Occasion] = []
    for occasion in occasions:
        status = logged.get((occasion.campaign, occasion.key))
        if status is not None and status != SendStatus.DEFERRED:
            continue  # settled, queued for delivery, or waiting for a human
        campaign = campaigns[occasion.campaign]
        if (moment.today - occasion.due).days > policy.catch_up_days:
            decisions.append(Decision(occasion, Verdict.SKIP, f"expired: due {occasion.due}, catch-up is {policy.catch_up_days} days"))
        elif customer.suppressed:
            decisions.append(Decision(occasion, Verdict.SKIP, "suppressed"))
        elif customer.unsubscribed:
            decisions.append(Decision(occasion, Verdict.SKIP, "unsubscribed"))
        elif not in_segment(customer.tags, campaign):
            decisions.append(Decision(occasion, Verdict.SKIP, "not in segment"))
        else:
            contenders.append(occasion)
    if not contenders:
        return decisions

    contenders.sort(key=lambda o: (-campaigns[o.campaign].priority, o.due, o.campaign))
    chosen, *others = contenders
    for occasion in others:
        decisions.append(Decision(occasion, Verdict.DEFER, f"one email per pass: {chosen.campaign} goes first"))
    decisions.append(_gate(customer, chosen, moment, policy, utc_now))
    return decisions


def in_segment(tags: frozenset[str], campaign: Campaign) -> bool:
    if campaign.tags_any and not tags & campaign.tags_any:
        return False
    return not tags & campaign.tags_none


def _gate(
    customer: CustomerFacts, occasion: Occasion, moment: PassMoment, policy: PolicySettings, utc_now: datetime
) -> Decision:
    """Frequency cap, then the send window, for the one occasion chosen this pass."""
    if customer.last_emailed_at is not None and policy.min_days_between > 0:
        allowed_from = customer.last_emailed_at + timedelta(days=policy.min_days_between)
        if utc_now < allowed_from:
            return Decision(occasion, Verdict.DEFER, f"frequency cap: last email {customer.last_emailed_at:%Y-%m-%d}")
    if not moment.window_open:
        assert moment.local_now is not None
        if not in_send_window(moment.local_now, policy):
            return Decision(occasion, Verdict.DEFER, f"outside send window at {moment.local_now:%a %H:%M} local")
    return Decision(occasion, Verdict.SEND, "due")


def is_final(status: str) -> bool:
    return status in FINAL_STATUSES
