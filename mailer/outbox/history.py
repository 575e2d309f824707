"""The send log read back for people: a filtered listing (``mailer log``) and the rows a pass delivered."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session, col

from mailer.store.tables import Customer, SendLog

LISTING_HEADERS = (
    "id", "updated", "customer", "to", "campaign", "occasion", "status", "attempts", "reason", "subject", "message_id",
)


def listing(
    session: Session,
    *,
    status: str | None = None,
    campaign: str | None = None,
    customer: str | None = None,
    since: datetime | None = None,
    limit: int = 200,
    until: datetime | None = None,
    row_id: int | None = None,
) -> tuple[list[str], list[tuple[object, ...]]]:
    """Send-log rows, newest first, as (headers, rows).

    For one ``customer`` (external id) it is their timeline instead: their
    occasions in the order they fell due, each with its latest decision, and
    the due date leading.
    """
    query = (
        select(
            col(SendLog.id), col(SendLog.updated_at), col(Customer.external_id), col(SendLog.to_address),
            col(SendLog.campaign), col(SendLog.occasion_key), col(SendLog.status), col(SendLog.attempts),
            col(SendLog.reason), col(SendLog.subject), col(SendLog.message_id), col(SendLog.due_date),
        )
        .join(Customer, col(Customer.id) == col(SendLog.customer_id))
        .limit(limit)
    )
    if status:
        query = query.where(col(SendLog.status) == status)
    if campaign:
        query = query.where(col(SendLog.campaign) == campaign)
    if since:
        query = query.where(col(SendLog.updated_at) >= since)
    if row_id is not None:
        query = query.where(col(SendLog.id) == row_id)
    if until:  # exclusive: the admin view's "to" date is the start of the day after
        query = query.where(col(SendLog.updated_at) < until)
    if customer:
        query = query.where(col(Customer.external_id) == customer).order_by(
            col(SendLog.due_date), col(SendLog.created_at), col(SendLog.id)
        )
        rows = [(r[-1], *r[:-1]) for r in session.execute(query).all()]
        return ["due", *LISTING_HEADERS], rows
    query = query.order_by(col(SendLog.updated_at).desc(), col(SendLog.id).desc())
    return list(LISTING_HEADERS), [tuple(r[:-1]) for r in session.execute(query).all()]


def delivered(session: Session, row_ids: Sequence[int]) -> list[tuple[object, ...]]:
    """(id, customer, to, campaign, subject) of these rows, in id order."""
    query = (
        select(col(SendLog.id), col(Customer.external_id), col(SendLog.to_address), col(SendLog.campaign),
               col(SendLog.subject))
        .join(Customer, col(Customer.id) == col(SendLog.customer_id))
        .where(col(SendLog.id).in_(row_ids))
        .order_by(col(SendLog.id))
    )
    return [tuple(r) for r in session.execute(query).all()]
