"""Soft bounces: temporary failures are noted per address, and enough of them in a span suppress it.

One "delayed" notice or one 4xx answer says little (a full mailbox, a greylisting server);
``[inbox] soft_bounce_limit`` of them for different messages within ``soft_bounce_days`` say
the address does not take mail, and it is suppressed with source ``bounce``. Noting the same
message twice (a report read again, several warnings about one message) counts once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Engine, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from mailer.config import SoftBounces
from mailer.contacts import optout
from mailer.store.tables import TransientFailure

log = logging.getLogger(__name__)


def verdict(count: int, rule: SoftBounces, last: str) -> str | None:
    """The suppression reason once ``count`` failures within the rule's span reach its limit; else None."""
    if count < rule.limit:
        return None
    failures = "1 transient failure" if count == 1 else f"{count} transient failures"
    return f"bounce: {failures} in {rule.days} days (last: {last})"


def count(
    session: Session, address: str, message_key: str, status: str, detail: str, now: datetime, rule: SoftBounces
) -> str | None:
    """Note one temporary failure of ``message_key`` to ``address`` in the session's transaction (not committed);
    the suppression reason when the address has reached the limit, else None. Suppressing is the caller's.
    """
    email = address.strip().lower()
    table = cast(Table, TransientFailure.__table__)  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    # A failure of this message noted before (the same report read again) counts once.
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).on_conflict_do_nothing(
        index_elements=["email", "message_key"]
    )
    session.execute(
        insert.values(email=email, message_key=message_key[:300], status=status[:20], detail=detail[:1000],
                      occurred_at=now)
    )
    found = session.execute(
        select(func.count())
        .select_from(TransientFailure)
        .where(col(TransientFailure.email) == email,
               col(TransientFailure.occurred_at) > now - timedelta(days=rule.days),
               col(TransientFailure.occurred_at) <= now)
    ).scalar_one()
    return verdict(found, rule, f"{status} {detail}".strip()[:200])


def note(
    engine: Engine, address: str, message_key: str, status: str, detail: str, now: datetime, rule: SoftBounces
) -> str | None:
    """:func:`count` in a transaction of its own; an address that reached the limit is suppressed (every
    customer with it; an earlier suppression stays). Returns the reason it was suppressed with, else None.
    """
    with Session(engine) as session:
        reason = count(session, address, message_key, status, detail, now, rule)
        session.commit()
    if reason is None:
        return None
    try:
        optout.suppress_address(engine, address, reason, now)
    except optout.UnknownAddress:
        log.info("%s for %s, whom no customer has", reason, address)
    return reason
