"""Soft bounces: temporary failures are noted per address, and enough of them in a span suppress it.

One "delayed" notice or one 4xx answer says little (a full mailbox, a greylisting server);
``[inbox] soft_bounce_limit`` of them for different messages within ``soft_bounce_days`` say
the address does not take mail, and it is suppressed with source ``bounce``. Noting the same
message twice (a report read again, several warnings about one message) counts once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from mailer.config import SoftBounces
from mailer.contacts import optout
from mailer.store.tables import TransientFailure

log = logging.getLogger(__name__)


def verdict(count: int, rule: SoftBounces, last: str) -> str | None:
    """The suppression reason once ``count`` failures within the rule's span reach its limit; else None."""
    if count < rule.limit:
        return None
    return f"bounce: {count} transient failures in {rule.days} days (last: {last})"


def note(
    engine: Engine, address: str, message_key: str, status: str, detail: str, now: datetime, rule: SoftBounces
) -> str | None:
    """Record one temporary failure of ``message_key`` to ``address``; the suppression reason if it reached the limit.

    The address is suppressed here when it did (every customer with it; an earlier suppression stays).
    """
    email = address.strip().lower()
    last = f"{status} {detail}".strip()[:200]
    with Session(engine) as session:
        session.add(
            TransientFailure(email=email, message_key=message_key[:300], status=status[:20], detail=detail[:1000],
                             occurred_at=now)
        )
        try:
            session.commit()
        except IntegrityError:
            session.rollback()  # this message's failure was noted before: it counts once
        count = session.execute(
            select(func.count())
            .select_from(TransientFailure)
            .where(col(TransientFailure.email) == email,
                   col(TransientFailure.occurred_at) > now - timedelta(days=rule.days),
                   col(TransientFailure.occurred_at) <= now)
        ).scalar_one()
    reason = verdict(count, rule, last)
    if reason is None:
        return None
    try:
        optout.suppress_address(engine, email, reason, now)
    except optout.UnknownAddress:
        log.info("%s for %s, whom no customer has", reason, email)
    return reason
