"""Who stopped hearing from us, counted per campaign and source (``mailer stats``) and listed (``mailer suppressions``).

A campaign's count is what can be traced to it: unsubscribes and pauses made from the link in
one of its messages (the link names the send-log row), opt-outs of that campaign itself, and
suppressions for a bounce of one of its messages. The rest (an admin's ``mailer unsubscribe``,
a complaint, an old link that names no message) count under ``(any)``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from mailer.contacts import optout, preferences
from mailer.store.tables import CampaignOptOut, Customer, MailPause, SendLog, SendStatus

ANY = "(any)"

HEADERS = ("campaign", "kind", "source", "count")


def suppression_source(reason: str) -> str:
    """Where a suppression came from, read off its reason: ``bounce``, ``complaint``, ``webhook:<provider>``, ``admin``.

    Bounces say so (``hard bounce: 550 …`` at delivery, ``bounce: 5.1.1 …`` from the inbox);
    a webhook's reason starts ``webhook:<provider>`` or says ``… via webhook:<provider>: …``;
    ``mailer suppress`` without a reason says ``manual``, and any other reason there is an admin's too.
    """
    head = reason.strip().lower()
    if head.startswith("webhook:"):
        return head.split()[0].rstrip(":")
    if " via webhook:" in head:  # "bounce via webhook:ses: 5.1.1 …", "complaint via webhook:mailgun: abuse"
        return "webhook:" + head.split(" via webhook:", 1)[1].split(":", 1)[0].split()[0]
    for source in ("bounce", "complaint", "import"):
        if head.startswith(source) or head.startswith(f"hard {source}"):
            return source
    return "admin"


@dataclass(frozen=True, slots=True)
class Listed:
    """One row of ``mailer suppressions``."""

    external_id: str
    email: str
    state: str  # unsubscribed, suppressed, opted out of <campaign>, paused until <date>
    since: datetime
    source: str  # one-click, page, mailto, cli, bounce, complaint, webhook:<provider>, admin …
    detail: str  # the unsubscribe source or the suppression reason, as recorded


def listing(engine: Engine, limit: int | None = None) -> list[Listed]:
    """Everyone who gets less mail than they could, and why; newest first."""
    rows = [
        Listed(
            r.external_id, r.email, r.state, r.since,
            r.why if r.state == "unsubscribed" else suppression_source(r.why), r.why,
        )
        for r in optout.opted_out(engine)
    ]
    wishes = preferences.wishes(engine)
    rows.extend(Listed(w.external_id, w.email, w.state, w.since, w.source, w.source) for w in wishes)
    rows.sort(key=lambda r: r.since, reverse=True)
    return rows[:limit] if limit is not None else rows


def counts(engine: Engine, since: datetime | None = None) -> list[tuple[str, str, str, int]]:
    """(campaign, kind, source, count), by campaign then kind and source; ``since`` counts only later changes."""
    tally: Counter[tuple[str, str, str]] = Counter()
    message = aliased(SendLog)
    with Session(engine) as session:
        unsubscribed = (
            select(col(message.campaign), col(Customer.unsubscribe_source), func.count())
            .select_from(Customer)
            .outerjoin(message, col(message.id) == col(Customer.unsubscribe_send_log_id))
            .where(col(Customer.unsubscribed_at).is_not(None))
            .group_by(col(message.campaign), col(Customer.unsubscribe_source))
        )
        if since is not None:
            unsubscribed = unsubscribed.where(col(Customer.unsubscribed_at) >= since)
        for campaign, source, count in session.execute(unsubscribed):
            tally[(campaign or ANY, "unsubscribed", source or "")] += count

        # A bounce suppression belongs to the campaign of the customer's latest bounced message.
        bounced_campaign = (
            select(col(SendLog.campaign))
            .where(col(SendLog.customer_id) == col(Customer.id), col(SendLog.status) == SendStatus.BOUNCED)
            .order_by(col(SendLog.updated_at).desc(), col(SendLog.id).desc())
            .limit(1)
            .scalar_subquery()
        )
        suppressed: Any = select(col(Customer.suppressed_reason), bounced_campaign).where(
            col(Customer.suppressed_at).is_not(None)
        )
        if since is not None:
            suppressed = suppressed.where(col(Customer.suppressed_at) >= since)
        for reason, campaign in session.execute(suppressed):
            source = suppression_source(reason or "")
            tally[((campaign if source == "bounce" else None) or ANY, "suppressed", source)] += 1

        left = select(col(CampaignOptOut.campaign), col(CampaignOptOut.source), func.count()).group_by(
            col(CampaignOptOut.campaign), col(CampaignOptOut.source)
        )
        if since is not None:
            left = left.where(col(CampaignOptOut.created_at) >= since)
        for campaign, source, count in session.execute(left):
            tally[(campaign, "opted out", source)] += count

        paused = (
            select(col(message.campaign), col(MailPause.source), func.count())
            .select_from(MailPause)
            .outerjoin(message, col(message.id) == col(MailPause.send_log_id))
            .group_by(col(message.campaign), col(MailPause.source))
        )
        if since is not None:
            paused = paused.where(col(MailPause.created_at) >= since)
        for campaign, source, count in session.execute(paused):
            tally[(campaign or ANY, "paused", source)] += count
    return [(*key, count) for key, count in sorted(tally.items(), key=lambda item: (item[0][0] == ANY, item[0]))]
