"""Forgetting a customer (``mailer forget``, ``DELETE /api/v1/customers/<id>``): personal data removed,
a one-way hash of the address kept so that the address, imported again, is suppressed.

The customer row stays (the send log points at it, and its external_id keeps a re-import by
id suppressed too), but with every personal field blank: address, names, birthday, zone,
locale, tags, attributes. Their interactions and date attributes are deleted; the send log
keeps its rows (no occasion is sent twice) without the address, subject or reply, and their
answers to "how did we do?" lose the comment. What is kept of the address is the SHA-256 of
it lower-cased (:func:`address_hash`); only someone who already knows the address can match it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Engine, delete, select, update
from sqlmodel import Session, col

from mailer.store.tables import (
    Customer,
    CustomerDate,
    ErasedAddress,
    Feedback,
    Interaction,
    SendLog,
    TransientFailure,
    utcnow,
)

ERASED_REASON = "erased (mailer forget)"


class Erasure(StrEnum):
    ERASED = "erased"
    ALREADY = "already erased"
    UNKNOWN = "unknown"


def address_hash(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def forget(engine: Engine, external_id: str, now: datetime | None = None) -> Erasure:
    """Erase the customer ``external_id`` in one transaction."""
    moment = now or utcnow()
    with Session(engine) as session:
        customer = session.execute(
            select(Customer).where(col(Customer.external_id) == external_id)
        ).scalar_one_or_none()
        if customer is None or customer.id is None:
            return Erasure.UNKNOWN
        if customer.suppressed_reason == ERASED_REASON and not customer.email:
            return Erasure.ALREADY
        for address in {customer.email, customer.owner_email or ""} - {""}:
            digest = address_hash(address)
            if session.get(ErasedAddress, digest) is None:
                session.add(ErasedAddress(address_hash=digest, erased_at=moment))
        if customer.email:
            session.execute(delete(TransientFailure).where(col(TransientFailure.email) == customer.email.lower()))
        for name in ("first_name", "last_name", "birthday_month", "birthday_day", "birthday_year", "birthday_md",
                     "timezone", "locale", "owner_name", "owner_email"):
            setattr(customer, name, None)
        customer.email = ""
        customer.tags, customer.attributes = [], {}
        customer.order_count, customer.interaction_count = 0, 0
        customer.lifetime_spend = customer.lifetime_spend * 0
        customer.last_interaction_at = None
        customer.suppressed_at, customer.suppressed_reason = moment, ERASED_REASON
        customer.updated_at = moment
        session.add(customer)
        cid = customer.id
        session.execute(delete(Interaction).where(col(Interaction.customer_id) == cid))
        session.execute(delete(CustomerDate).where(col(CustomerDate.customer_id) == cid))
        session.execute(update(SendLog).where(col(SendLog.customer_id) == cid).values(
            to_address="", subject="", last_reply=""))
        session.execute(update(Feedback).where(col(Feedback.customer_id) == cid).values(comment=""))
        session.commit()
    return Erasure.ERASED


def suppress_erased(session: Session, customers: Sequence[Customer], now: datetime) -> int:
    """Suppress those of ``customers`` (just written by an import) whose address was erased before."""
    by_hash = {address_hash(c.email): c for c in customers if c.email and c.suppressed_at is None}
    if not by_hash:
        return 0
    erased = set(session.execute(
        select(col(ErasedAddress.address_hash)).where(col(ErasedAddress.address_hash).in_(list(by_hash)))
    ).scalars())
    for digest in erased:
        customer = by_hash[digest]
        customer.suppressed_at, customer.suppressed_reason = now, ERASED_REASON
        session.add(customer)
    return len(erased)
