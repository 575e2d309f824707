"""The envelope sender a real SMTP server sees: [sender] bounce_address, tagged per message with verp = true;
and a recipient refused with 4xx at RCPT until the retries ran out counts towards a soft-bounce suppression."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select
from sqlmodel import Session, col

from mailer.config import InboxSettings, Settings, SoftBounces
from mailer.delivery import drain as delivery
from mailer.delivery.transport import SmtpTransport
from mailer.store.tables import Customer, SendLog
from tests.support.factories import queue_anniversaries
from tests.support.smtpserver import SmtpServer

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
BOUNCES = "bounces@northwind.example"


def send(engine: Engine, settings: Settings, *addresses: str) -> None:
    queue_anniversaries(engine, settings, addresses, now=NOW)
    delivery.drain(engine, settings, lambda: SmtpTransport(settings.transport), now=lambda: NOW)


def message_ids(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        rows = session.execute(select(col(SendLog.to_address), col(SendLog.message_id))).all()
    return {address: message_id or "" for address, message_id in rows}


def test_without_a_bounce_address_the_envelope_sender_is_the_from_address(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    send(engine, smtp_settings, "ann@example.com")
    assert [m.mail_from for m in smtp_server.messages] == ["hello@northwind.example"]


def test_the_bounce_address_is_the_envelope_sender_and_the_from_header_stays(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    settings = replace(smtp_settings, sender=replace(smtp_settings.sender, bounce_address=BOUNCES))
    send(engine, settings, "ann@example.com", "bob@example.com")
    assert [m.mail_from for m in smtp_server.messages] == [BOUNCES, BOUNCES]
    assert {str(m.parsed()["From"]) for m in smtp_server.messages} == {
        "Northwind Coffee Roasters <hello@northwind.example>"
    }


def test_with_verp_each_envelope_sender_names_its_message(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    settings = replace(smtp_settings, sender=replace(smtp_settings.sender, bounce_address=BOUNCES, verp=True))
    send(engine, settings, "ann@example.com", "bob@example.com")
    ids = message_ids(engine)
    seen = {m.rcpt_tos[0]: m.mail_from for m in smtp_server.messages}
    for address in ("ann@example.com", "bob@example.com"):
        ref = ids[address].strip("<>").partition("@")[0]
        assert len(ref) == 32 and ref.isalnum() and ref.islower()  # the occasion's ref: case-proof, opaque
        assert seen[address] == f"bounces+{ref}@northwind.example"
    assert seen["ann@example.com"] != seen["bob@example.com"]


def with_soft_bounces(settings: Settings, limit: int) -> Settings:
    inbox = InboxSettings(kind="maildir", path=settings.base_dir / "inbox", processed=settings.base_dir / "done",
                          soft_bounces=SoftBounces(limit=limit, days=14))
    # No retries: the first 4xx is the last.
    return replace(settings, inbox=inbox, transport=replace(settings.transport, retry_max_age=timedelta(0)))


def suppressed(engine: Engine) -> dict[str, str | None]:
    with Session(engine) as session:
        return {c.external_id: c.suppressed_reason for c in session.execute(select(Customer)).scalars()}


def test_a_4xx_at_rcpt_after_every_retry_counts_and_the_limit_suppresses_the_address(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    settings = with_soft_bounces(smtp_settings, limit=2)
    smtp_server.enqueue("full@example.com", "rcpt:452 4.2.2 mailbox full", "rcpt:452 4.2.2 mailbox full")
    smtp_server.enqueue("busy@example.com", "451 4.3.0 try again later")  # at DATA: not about the mailbox

    # Two customers share the address: two messages, each refused until it gave up.
    send(engine, settings, "full@example.com", "full@example.com", "busy@example.com")

    reason = "bounce: 2 transient failures in 14 days (last: 452 4.2.2 mailbox full)"
    assert suppressed(engine) == {"C0000": reason, "C0001": reason, "C0002": None}
    with Session(engine) as session:
        statuses = {row.status for row in session.execute(select(SendLog)).scalars()}
    assert statuses == {"failed"}


def test_one_4xx_at_rcpt_below_the_limit_suppresses_nobody(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    settings = with_soft_bounces(smtp_settings, limit=2)
    smtp_server.enqueue("full@example.com", "rcpt:452 4.2.2 mailbox full")
    send(engine, settings, "full@example.com")
    assert suppressed(engine) == {"C0000": None}
