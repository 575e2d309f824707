"""The returned-mail samples in tests/support/data/inbox/, filled in for one recipient and one sent message."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path

from sqlalchemy import Engine, select
from sqlmodel import Session, col

from mailer.store.tables import SendLog

SAMPLES = Path(__file__).parent / "data" / "inbox"


def sample_bytes(
    name: str, recipient: str, message_id: str = "<occasion-ref@northwind.example>", envelope: str = ""
) -> bytes:
    """The sample ``name``.eml with its ``{{RECIPIENT}}``, ``{{MESSAGE_ID}}`` and ``{{ENVELOPE}}`` filled in.

    ``envelope`` is the address a report came back to (the VERP sample has nothing else to match).
    """
    text = (SAMPLES / f"{name}.eml").read_text(encoding="utf-8")
    filled = text.replace("{{RECIPIENT}}", recipient).replace("{{MESSAGE_ID}}", message_id)
    return filled.replace("{{ENVELOPE}}", envelope).encode()


def sample(name: str, recipient: str, message_id: str = "<occasion-ref@northwind.example>") -> Message:
    return message_from_bytes(sample_bytes(name, recipient, message_id), policy=policy.compat32)


#: Who sends each sample back, and the address the anniversary went to (tests/contacts/test_inbox.py
#: and tests/service/test_inbox_imap.py read the same mail from a Maildir and over IMAP).
PEOPLE = {
    "postfix-bounce": "bea@example.com",
    "exim-bounce": "eli@example.org",
    "gmail-bounce": "gus@example.net",
    "postfix-delayed": "dan@example.info",
    "yahoo-complaint": "yan@yahoo.example",
    "outlook-complaint": "ola@outlook.example",
    "mailto-unsubscribe": "ann@example.com",
    "out-of-office": "hugo@example.com",
    "human-reply": "ida@example.org",
}


def sent_ids(engine: Engine) -> dict[str, str]:
    """The Message-ID of each address's sent message."""
    with Session(engine) as session:
        rows = session.execute(
            select(col(SendLog.to_address), col(SendLog.message_id)).where(col(SendLog.status) == "sent")
        ).all()
    return {address: message_id or "" for address, message_id in rows}


def anniversary_rows(engine: Engine) -> dict[str, tuple[str, str]]:
    """Each address's anniversary row: (status, reason)."""
    with Session(engine) as session:
        found = session.execute(
            select(col(SendLog.to_address), col(SendLog.status), col(SendLog.reason)).where(
                col(SendLog.campaign) == "customer-anniversary"
            )
        ).all()
    return {address: (status, reason) for address, status, reason in found}
