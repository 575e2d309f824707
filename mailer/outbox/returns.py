"""What comes back after delivery: a bounce reported later marks its row, found by the row's Message-ID."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, select, update
from sqlmodel import Session, col

from mailer.outbox import gifts
from mailer.store import events
from mailer.store.tables import SendLog, SendStatus


def _ids(message_id: str) -> list[str]:
    # Reports quote the Message-ID with or without its angle brackets.
    bare = message_id.strip().strip("<>")
    return [bare, f"<{bare}>"]


def bounce_later(engine: Engine, message_id: str, what: str, now: datetime) -> bool:
    """Mark the row that went out with ``message_id`` ``bounced``; whether a row changed.

    A delivery status notification arrives after the relay accepted the message, so only a
    ``sent`` row (or an ``unknown`` one, which may have gone out) can bounce; anything else is left.
    """
    with Session(engine) as session:
        bounced = session.execute(
            update(SendLog)
            .where(col(SendLog.message_id).in_(_ids(message_id)),
                   col(SendLog.status).in_([SendStatus.SENT, SendStatus.UNKNOWN]))
            .values(status=SendStatus.BOUNCED, reason=f"bounced: {what}", last_reply=what, updated_at=now)
            .returning(col(SendLog.id))
        ).scalars().all()
        for row_id in bounced:  # its gift never reached the customer: the code goes back; [[webhook]]s hear of it
            gifts.release(session, row_id, f"bounced: {what}", now)
            events.record(session, "bounced", send_log_id=row_id, data={"reason": f"bounced: {what}"[:1000]}, now=now)
        session.commit()
    return bool(bounced)


def address_of(engine: Engine, message_id: str) -> str:
    """The address the message with ``message_id`` went to, or "" (a complaint may hide its recipient)."""
    with Session(engine) as session:
        found = session.execute(
            select(col(SendLog.to_address)).where(col(SendLog.message_id).in_(_ids(message_id)))
        ).first()
    return found[0] if found else ""


def message_id_by_tag(engine: Engine, tag: str) -> str:
    """The Message-ID whose left part is ``tag`` (a VERP bounce address's +tag), or "" when none is.

    The tag is compared as sent: the refs in mailer's Message-IDs are lower-case, as servers may fold the tag.
    """
    with Session(engine) as session:
        found = session.execute(
            select(col(SendLog.message_id))
            .where(col(SendLog.message_id).startswith(f"<{tag.strip()}@", autoescape=True))
            .limit(1)
        ).first()
    return found[0] if found and found[0] else ""
