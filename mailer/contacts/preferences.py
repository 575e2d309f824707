"""What a customer chose on the preference page: no more of one campaign, or no mail at all for a while.

An unsubscribe from everything stays on the customer row (:mod:`mailer.contacts.optout`); the
finer wishes live in their own tables, each with where it came from and when:

- ``campaign_opt_out``: one row per customer and campaign they left; the other campaigns still
  reach them. The policy logs their occasions of that campaign ``skipped: opted out of campaign``.
- ``mail_pause``: one row per customer: no mail until a date. Their occasions are deferred
  (``deferred: paused until …``), so one that falls due near the end of a pause is still sent;
  one the pause outlasts by more than the catch-up days expires like any other deferral.

Every change is one statement, so a repeat (a double click, a reloaded form) changes nothing.
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from mailer.contacts.optout import Change
from mailer.store import bulk
from mailer.store.tables import CampaignOptOut, Customer, MailPause, utcnow

log = logging.getLogger(__name__)

# The pauses the page offers, in months; anything longer is an unsubscribe in all but name.
PAUSE_MONTHS = (1, 3, 6)


@dataclass(frozen=True, slots=True)
class Preferences:
    """One customer's finer wishes: campaigns left (name → source) and the end of a pause."""

    opted_out: dict[str, str] = field(default_factory=dict)
    paused_until: date | None = None


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later; the 31st becomes the month's last day (Jan 31 + 1 → Feb 28)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _exists(session: Session, customer_id: int) -> bool:
    return session.execute(select(col(Customer.id)).where(col(Customer.id) == customer_id)).first() is not None


def opt_out_of_campaign(
    engine: Engine,
    customer_id: int,
    campaign: str,
    source: str,
    now: datetime | None = None,
    send_log_id: int | None = None,
) -> Change:
    """Record that the customer wants no more of ``campaign``; an earlier opt-out keeps its time and source."""
    with Session(engine) as session:
        if not _exists(session, customer_id):
            return Change.UNKNOWN
        try:
            session.execute(
                insert(CampaignOptOut).values(
                    customer_id=customer_id,
                    campaign=campaign,
                    source=source,
                    send_log_id=send_log_id,
                    created_at=now or utcnow(),
                )
            )
            session.commit()
        except IntegrityError:  # the UNIQUE (customer, campaign): already opted out
            return Change.UNCHANGED
    log.info("customer %s opted out of campaign %s (%s)", customer_id, campaign, source)
    return Change.CHANGED


def rejoin_campaign(engine: Engine, customer_id: int, campaign: str) -> Change:
    """Undo an opt-out of one campaign."""
    with Session(engine) as session:
        result = session.execute(
            delete(CampaignOptOut).where(
                col(CampaignOptOut.customer_id) == customer_id, col(CampaignOptOut.campaign) == campaign
            )
        )
        session.commit()
        if result.rowcount:  # type: ignore[attr-defined]
            log.info("customer %s rejoined campaign %s", customer_id, campaign)
            return Change.CHANGED
        return Change.UNCHANGED if _exists(session, customer_id) else Change.UNKNOWN


def pause(
    engine: Engine,
    customer_id: int,
    until: date,
    source: str,
    now: datetime | None = None,
    send_log_id: int | None = None,
) -> Change:
    """No mail to the customer before ``until`` (their local date); a new pause replaces an earlier one."""
    values = {"until": until, "source": source, "send_log_id": send_log_id, "created_at": now or utcnow()}
    with Session(engine) as session:
        if not _exists(session, customer_id):
            return Change.UNKNOWN
        result = session.execute(
            update(MailPause).where(col(MailPause.customer_id) == customer_id).values(**values)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            try:
                session.execute(insert(MailPause).values(customer_id=customer_id, **values))
            except IntegrityError:  # a racing request inserted it first: its pause stands
                session.rollback()
                return Change.UNCHANGED
        session.commit()
    log.info("customer %s paused until %s (%s)", customer_id, until, source)
    return Change.CHANGED


def resume(engine: Engine, customer_id: int) -> Change:
    """Lift a pause at once."""
    with Session(engine) as session:
        result = session.execute(delete(MailPause).where(col(MailPause.customer_id) == customer_id))
        session.commit()
        if result.rowcount:  # type: ignore[attr-defined]
            log.info("customer %s lifted their pause", customer_id)
            return Change.CHANGED
        return Change.UNCHANGED if _exists(session, customer_id) else Change.UNKNOWN


def preferences_of(engine: Engine, customer_id: int) -> Preferences:
    """One customer's opt-outs and pause (the preference page)."""
    with Session(engine) as session:
        return for_customers(session, [customer_id]).get(customer_id, Preferences())


def for_customers(session: Session, customer_ids: Sequence[int]) -> dict[int, Preferences]:
    """The wishes of many customers in two queries per chunk (the planner's facts; customers with none left out)."""
    opted: dict[int, dict[str, str]] = {}
    paused: dict[int, date] = {}
    connection = session.connection()
    for chunk in bulk.chunks(session, list(customer_ids)):
        for cid, campaign, source in connection.execute(
            select(col(CampaignOptOut.customer_id), col(CampaignOptOut.campaign), col(CampaignOptOut.source))
            .where(bulk.among(session, col(CampaignOptOut.customer_id), chunk))
        ):
            opted.setdefault(cid, {})[campaign] = source
        for cid, until in connection.execute(
            select(col(MailPause.customer_id), col(MailPause.until))
            .where(bulk.among(session, col(MailPause.customer_id), chunk))
        ):
            paused[cid] = until
    return {cid: Preferences(opted.get(cid, {}), paused.get(cid)) for cid in {*opted, *paused}}


@dataclass(frozen=True, slots=True)
class Wish:
    """One row of ``mailer suppressions`` beyond the whole-list ones: a campaign left or a pause."""

    external_id: str
    email: str
    state: str  # "opted out of <campaign>" or "paused until <date>"
    since: datetime
    source: str


def wishes(engine: Engine) -> list[Wish]:
    """Every campaign opt-out and every pause, newest first."""
    rows: list[Wish] = []
    with Session(engine) as session:
        for external_id, email, campaign, source, at in session.execute(
            select(
                col(Customer.external_id), col(Customer.email), col(CampaignOptOut.campaign),
                col(CampaignOptOut.source), col(CampaignOptOut.created_at),
            ).join_from(CampaignOptOut, Customer, col(Customer.id) == col(CampaignOptOut.customer_id))
        ):
            rows.append(Wish(external_id, email, f"opted out of {campaign}", at, source))
        for external_id, email, until, source, at in session.execute(
            select(
                col(Customer.external_id), col(Customer.email), col(MailPause.until),
                col(MailPause.source), col(MailPause.created_at),
            ).join_from(MailPause, Customer, col(Customer.id) == col(MailPause.customer_id))
        ):
            rows.append(Wish(external_id, email, f"paused until {until:%Y-%m-%d}", at, source))
    rows.sort(key=lambda w: w.since, reverse=True)
    return rows
