"""The owner's notice about an unhappy answer travels the normal delivery path: retried after a 4xx, sent once,
to the owner, even when the customer has opted out since, and it never counts as emailing the customer."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, update
from sqlmodel import Session

from mailer.config import Settings
from mailer.outbox import feedback
from mailer.service import runs
from mailer.store.tables import Customer, SendLog
from tests.support.factories import add_customer, add_sent_question
from tests.support.smtpserver import SmtpServer


def unhappy_notice(settings: Settings, engine: Engine) -> tuple[int, int]:
    """Customer N1 answers 1 of 5; returns (customer id, the notice's send-log row id)."""
    customer = add_customer(engine, "N1", since=date(2020, 1, 1), email="nina@example.com",
                            owner_name="Hannah Lee", owner_email="hannah@northwind.example")
    row = add_sent_question(engine, customer)
    question = feedback.asked(engine, row)
    assert question is not None
    done = feedback.record_answer(engine, question, settings.campaign("how-did-we-do"), 1, "Never again",
                                  feedback.Source.PAGE, datetime.now(UTC), settings.feedback, settings.sender)
    assert done.notice_row_id is not None
    return customer, done.notice_row_id


def test_a_refused_notice_is_retried_and_then_sent_once_to_the_owner(
    smtp_settings: Settings, engine: Engine, smtp_server: SmtpServer
) -> None:
    _customer, notice = unhappy_notice(smtp_settings, engine)
    smtp_server.enqueue("hannah@northwind.example", "451 4.3.0 try later")
    first = runs.retry_sweep(engine, smtp_settings)
    assert first is not None
    with Session(engine) as session:
        row = session.get(SendLog, notice)
        assert row is not None and row.status == "queued" and row.reason.startswith("retrying: 451")
        # The retry falls due (as if its 30 minutes had passed).
        session.execute(update(SendLog).where(SendLog.id == notice).values(  # type: ignore[arg-type]
            next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))
        session.commit()
    runs.retry_sweep(engine, smtp_settings)
    assert runs.retry_sweep(engine, smtp_settings) is None  # nothing left to send
    [message] = smtp_server.messages
    assert message.parsed()["To"].addresses[0].addr_spec == "hannah@northwind.example"  # type: ignore[union-attr]
    with Session(engine) as session:
        row = session.get(SendLog, notice)
        assert row is not None and (row.status, row.attempts) == ("sent", 2)


def test_a_customer_who_opted_out_since_still_has_their_answer_reach_the_owner(
    smtp_settings: Settings, engine: Engine, smtp_server: SmtpServer
) -> None:
    customer, notice = unhappy_notice(smtp_settings, engine)
    with Session(engine) as session:
        session.execute(update(Customer).where(Customer.id == customer).values(  # type: ignore[arg-type]
            unsubscribed_at=datetime.now(UTC), suppressed_at=datetime.now(UTC), suppressed_reason="complaint"))
        session.commit()
    runs.retry_sweep(engine, smtp_settings)
    assert [m.parsed()["To"].addresses[0].addr_spec for m in smtp_server.messages] == [  # type: ignore[union-attr]
        "hannah@northwind.example"
    ]
    with Session(engine) as session:
        row = session.get(SendLog, notice)
        person = session.get(Customer, customer)
        assert row is not None and row.status == "sent"
        assert person is not None and person.last_emailed_at is None  # the frequency cap never counts staff mail
