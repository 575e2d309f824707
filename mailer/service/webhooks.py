"""What a relay's webhook reported, written to the store: suppressions, unsubscribes, bounced rows.

Every change is conditional (mailer/contacts/optout.py, mailer/outbox/returns.py), so the same
report twice changes nothing. Receipts remember the calls already acted on (Mailgun's token,
SNS's MessageId) for as long as a call that old is accepted, so a replay is recognised too.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from mailer.contacts import optout
from mailer.contacts.feedback import Feedback, Kind
from mailer.outbox import returns
from mailer.store.tables import WebhookReceipt

log = logging.getLogger(__name__)

UNSUBSCRIBE_SOURCES = {"ses": optout.Source.WEBHOOK_SES, "mailgun": optout.Source.WEBHOOK_MAILGUN}


def first_receipt(engine: Engine, provider: str, key: str, now: datetime, keep: timedelta) -> bool:
    """Record that ``provider``'s call ``key`` arrived; False when it had been recorded before.

    The UNIQUE (provider, key) constraint decides, so two copies racing record one receipt.
    Receipts older than ``keep`` go: a call that old is refused before it gets here.
    """
    with Session(engine) as session:
        session.execute(
            delete(WebhookReceipt).where(
                col(WebhookReceipt.provider) == provider, col(WebhookReceipt.received_at) < now - keep
            )
        )
        session.commit()
        try:
            session.execute(insert(WebhookReceipt).values(provider=provider, key=key[:200], received_at=now))
            session.commit()
        except IntegrityError:
            session.rollback()
            return False
    return True


def forget_receipt(engine: Engine, provider: str, key: str) -> None:
    """Drop a receipt whose call could not be acted on, so the provider's retry is not taken for a replay."""
    with Session(engine) as session:
        session.execute(
            delete(WebhookReceipt).where(col(WebhookReceipt.provider) == provider, col(WebhookReceipt.key) == key[:200])
        )
        session.commit()


def apply(engine: Engine, provider: str, feedback: Feedback, now: datetime) -> str:
    """Act on one report; returns what happened, in a few words for the log and the response."""
    via = f"webhook:{provider}"
    if feedback.kind is Kind.BOUNCE:
        reason = f"bounce via {via}: {feedback.detail}".rstrip(": ")
        done = _suppress(engine, feedback.address, reason, now)
        if feedback.message_id and returns.bounce_later(engine, feedback.message_id, f"{feedback.detail} ({via})", now):
            done += f"; send-log row of <{feedback.message_id}> bounced"
        return done
    if feedback.kind is Kind.COMPLAINT:
        return _suppress(engine, feedback.address, f"complaint via {via}: {feedback.detail}".rstrip(": "), now)
    if feedback.kind is Kind.UNSUBSCRIBE:
        try:
            counts = optout.unsubscribe_address(engine, feedback.address, UNSUBSCRIBE_SOURCES[provider])
        except optout.UnknownAddress:
            return f"unsubscribe for {feedback.address}, whom no customer has"
        return f"{feedback.address}: unsubscribed {counts[optout.Change.CHANGED]}"
    if feedback.kind is Kind.DELAY:
        return f"transient failure for {feedback.address} logged: {feedback.detail}"
    return f"{feedback.detail or 'event'} ignored"


def _suppress(engine: Engine, address: str, reason: str, now: datetime) -> str:
    try:
        counts = optout.suppress_address(engine, address, reason, now)
    except optout.UnknownAddress:
        return f"{reason} for {address}, whom no customer has"
    return f"{address}: suppressed {counts[optout.Change.CHANGED]} ({reason})"
