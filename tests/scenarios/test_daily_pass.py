"""The daily pass end to end: plan → send log → render → send → record, on real stores and real servers."""

from __future__ import annotations

import email.policy
import re
from dataclasses import replace
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer.compose.tokens import Link, read_link, read_mailto_token
from mailer.config import Secret, Settings
from mailer.delivery.transport import MaildirTransport, SmtpTransport
from mailer.planning.clock import PassClock
from mailer.service.passes import run_pass
from mailer.store.tables import SendLog
from tests.support.factories import add_customer, deliver_to
from tests.support.smtpserver import SmtpServer

DATED = ["customer-anniversary", "birthday"]


def run_on(engine: Engine, settings: Settings, day: date, transport: MaildirTransport | SmtpTransport | None = None):  # type: ignore[no-untyped-def]
    transport = transport or MaildirTransport(settings.transport.path)
    return run_pass(engine, settings, PassClock.on(day), transport, campaign_names=DATED)


def rows(engine: Engine) -> list[SendLog]:
    with Session(engine) as session:
        return list(session.execute(select(SendLog).order_by(SendLog.id)).scalars())


def eml_files(settings: Settings) -> list[Path]:
    return sorted((settings.transport.path / "new").glob("*.eml"))


def parse(path_or_bytes: Path | bytes) -> EmailMessage:
    data = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    message = BytesParser(policy=email.policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def test_two_runs_on_one_date_send_once_and_the_next_day_sends_only_its_own(engine: Engine, settings: Settings) -> None:
    add_customer(engine, "ANN", since=date(2020, 11, 23), first_name="Ada")
    add_customer(engine, "BDAY", since=date(2023, 1, 5), birthday=date(1990, 11, 24), first_name="Ben")

    first = run_on(engine, settings, date(2026, 11, 23))
    second = run_on(engine, settings, date(2026, 11, 23))
    assert (first.counts["sent"], second.counts["sent"]) == (1, 0)
    assert len(eml_files(settings)) == 1

    third = run_on(engine, settings, date(2026, 11, 24))
    assert third.counts["sent"] == 1
    assert [(r.campaign, r.occasion_key, r.status) for r in rows(engine)] == [
        ("customer-anniversary", "anniversary:2026", "sent"),
        ("birthday", "birthday:2026", "sent"),
    ]
    assert len(eml_files(settings)) == 2


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2025, 2, 28), [("anniversary:2025", 9)]),  # a common year: Feb 29 is marked on Feb 28
        (date(2024, 2, 28), []),  # a leap year: wait for the 29th
        (date(2024, 2, 29), [("anniversary:2024", 8)]),
        (date(2025, 3, 1), []),  # a day late with no catch-up: never sent
    ],
)
def test_feb_29_anniversary_is_marked_on_feb_28_in_common_years(
    engine: Engine, settings: Settings, day: date, expected: list[tuple[str, int]]
) -> None:
    add_customer(engine, "LEAP", since=date(2016, 2, 29))
    settings = replace(settings, policy=replace(settings.policy, catch_up_days=0))
    run_on(engine, settings, day)
    sent = [(r.occasion_key, r.occasion["years"]) for r in rows(engine) if r.status == "sent"]
    assert sent == expected


def test_customers_either_side_of_the_date_line_are_reached_on_their_own_day(
    engine: Engine, settings: Settings
) -> None:
    # 22:00 UTC on Monday 23 Nov is 12:00 on Tuesday 24 Nov in Kiritimati (UTC+14)
    # and 11:00 on Monday 23 Nov in Pago Pago (UTC-11): both inside the 09:00-17:00 window.
    add_customer(engine, "KIRI", since=date(2020, 1, 1), birthday=date(1980, 11, 24), timezone="Pacific/Kiritimati")
    add_customer(engine, "PAGO", since=date(2020, 1, 1), birthday=date(1980, 11, 24), timezone="Pacific/Pago_Pago")
    transport = MaildirTransport(settings.transport.path)

    monday_evening = datetime(2026, 11, 23, 22, 0, tzinfo=UTC)
    report = run_pass(engine, settings, PassClock.at(monday_evening), transport, campaign_names=DATED)
    assert report.counts["sent"] == 1
    assert [r.to_address for r in rows(engine)] == ["kiri@example.com"]

    tuesday_evening = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)
    report = run_pass(engine, settings, PassClock.at(tuesday_evening), transport, campaign_names=DATED)
    assert report.counts["sent"] == 1
    assert sorted(r.to_address for r in rows(engine) if r.status == "sent") == ["kiri@example.com", "pago@example.com"]


def test_outside_the_local_send_window_an_occasion_is_deferred_then_sent_when_the_window_opens(
    engine: Engine, settings: Settings
) -> None:
    add_customer(engine, "TOKYO", since=date(2019, 11, 24), timezone="Asia/Tokyo")
    transport = MaildirTransport(settings.transport.path)
    # 16:00 UTC is 01:00 on Tuesday 24 Nov in Tokyo: the day has come, the window has not.
    night = run_pass(
        engine, settings, PassClock.at(datetime(2026, 11, 23, 16, 0, tzinfo=UTC)), transport, campaign_names=DATED
    )
    assert night.counts["deferred"] == 1
    [row] = rows(engine)
    assert (row.status, row.reason) == ("deferred", "outside send window at Tue 01:00 local")
    # 01:00 UTC on Tuesday is 10:00 in Tokyo.
    morning = run_pass(
        engine, settings, PassClock.at(datetime(2026, 11, 24, 1, 0, tzinfo=UTC)), transport, campaign_names=DATED
    )
    assert morning.counts["sent"] == 1
    assert [r.status for r in rows(engine)] == ["sent"]


def test_a_render_error_fails_that_row_with_its_reason_and_the_pass_goes_on(engine: Engine, settings: Settings) -> None:
    broken = settings.render.templates / "birthday" / "body.txt"
    broken.write_text(
        "Happy birthday! Your plan: {{ customer.attributes.plan }}\n{{ unsubscribe_url }}\n", encoding="utf-8"
    )
    add_customer(engine, "HASPLAN", since=date(2020, 1, 1), birthday=date(1990, 11, 23), attributes={"plan": "gold"})
    add_customer(engine, "NOPLAN", since=date(2020, 1, 1), birthday=date(1991, 11, 23))

    report = run_on(engine, settings, date(2026, 11, 23))

    assert (report.counts["sent"], report.counts["failed"]) == (1, 1)
    failed = next(r for r in rows(engine) if r.status == "failed")
    assert failed.to_address == "noplan@example.com"
    assert failed.reason.startswith(f"render error: {broken}:1: ")
    assert "'dict object' has no attribute 'plan'" in failed.reason


def test_dry_run_plans_without_writing_or_sending(engine: Engine, settings: Settings) -> None:
    add_customer(engine, "ANN", since=date(2020, 11, 23))
    report = run_pass(
        engine, settings, PassClock.on(date(2026, 11, 23)), MaildirTransport(settings.transport.path), dry_run=True
    )
    assert [(p.customer.external_id, p.decision.verdict) for p in report.planned] == [("ANN", "send")]
    assert rows(engine) == [] and eml_files(settings) == []


def test_maildir_messages_are_complete_multipart_emails(engine: Engine, settings: Settings) -> None:
    add_customer(
        engine,
        "ANN",
        since=date(2020, 11, 23),
        first_name="Zoë",
        last_name="Ólafsdóttir",
        owner_name="Hannah Lee",
        owner_email="hannah@northwind.example",
    )
    run_on(engine, settings, date(2026, 11, 23))
    [path] = eml_files(settings)
    message = parse(path)
    assert message["From"] == "Northwind Coffee Roasters <hello@northwind.example>"
    assert message["To"] == "Zoë Ólafsdóttir <ann@example.com>"
    assert message["Reply-To"] == "Hannah Lee <hannah@northwind.example>"
    assert message["Subject"] == "6 years together, Zoë: thank you"
    assert message["Message-ID"].endswith("@northwind.example>")
    assert message["Date"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = (part.strip().strip("<>") for part in message["List-Unsubscribe"].split(","))
    token = https.rsplit("/u/", 1)[1]
    [row] = rows(engine)  # the link names the customer and this message's send-log row
    assert read_link(settings.sender.secret.reveal(), token) == Link(row.customer_id, row.id)
    # The mailto: address carries the customer's signed token, so mail to it is matched even from another address.
    tagged = re.fullmatch(r"mailto:unsubscribe\+([0-9a-z-]+)@northwind\.example\?subject=unsubscribe", mailto)
    assert tagged is not None, mailto
    assert read_mailto_token(settings.sender.secret.reveal(), tagged.group(1)) == row.customer_id
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    for body in (text.get_content(), html.get_content()):
        assert https in body
        assert "12 Harbour Street, Portsmouth PO1 2AB" in body
        assert "Hannah Lee" in body
    assert 'style="' in html.get_content()  # the stylesheet was inlined
    assert rows(engine)[0].message_id == message["Message-ID"]


def test_smtp_with_starttls_and_auth_delivers_over_one_reused_connection(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "correct horse")
    for n in range(3):
        add_customer(engine, f"C{n}", since=date(2020 - n, 11, 23), first_name=f"Name{n}")
    with SmtpServer(tls="starttls", auth=("mailer", "correct horse")) as server:
        smtp = deliver_to(settings, server, username="mailer", password=Secret(env="TEST_SMTP_PASSWORD"))
        report = run_on(engine, smtp, date(2026, 11, 23), SmtpTransport(smtp.transport))
        server.wait_for(3)
        received = server.messages
    assert report.counts["sent"] == 3
    assert all(m.tls and m.login == "mailer" for m in received)
    message = received[0].parsed()
    assert message.get_content_type() == "multipart/alternative"
    assert {p.get_content_type() for p in message.iter_parts()} == {"text/plain", "text/html"}
    assert 'style="' in (message.get_body(("html",)) or message).get_content()
    assert b"\r\n" in received[0].data
    log_rows = rows(engine)
    assert {r.status for r in log_rows} == {"sent"}
    assert all(r.last_reply.startswith("250") for r in log_rows)
    assert {r.message_id for r in log_rows} == {m.parsed()["Message-ID"] for m in received}


def test_an_untrusted_certificate_is_refused_by_default_and_nothing_goes_out_in_clear(
    engine: Engine, settings: Settings
) -> None:
    add_customer(engine, "ANN", since=date(2020, 11, 23))
    with SmtpServer(tls="starttls", untrusted=True) as server:
        smtp = deliver_to(settings, server)
        report = run_on(engine, smtp, date(2026, 11, 23), SmtpTransport(smtp.transport))
        assert server.count == 0
    assert report.counts["retrying"] == 1
    [row] = rows(engine)
    assert row.status == "queued"
    assert row.reason.startswith("retrying: TLS certificate refused: ")


@pytest.mark.postgres
def test_the_same_pass_runs_on_postgresql_and_sends_once(settings: Settings, pg_url: str) -> None:
    from mailer import store

    pg_settings = replace(settings, store=replace(settings.store, url=pg_url))
    engine = store.make_engine(pg_url)
    store.create_schema(engine)
    try:
        add_customer(engine, "ANN", since=date(2020, 11, 23), tags=["vip"], attributes={"plan": "gold"})
        add_customer(engine, "BDAY", since=date(2021, 5, 1), birthday=date(2000, 2, 29))
        first = run_on(engine, pg_settings, date(2026, 11, 23))
        second = run_on(engine, pg_settings, date(2026, 11, 23))
        # Feb 28, 2027 is a Sunday, not a sending day in this project: the birthday goes on Monday.
        sunday = run_on(engine, pg_settings, date(2027, 2, 28))
        monday = run_on(engine, pg_settings, date(2027, 3, 1))
        counts = [report.counts["sent"] for report in (first, second, sunday, monday)]
        assert (counts, sunday.counts["deferred"]) == ([1, 0, 0, 1], 1)
        assert [(r.occasion_key, r.status) for r in rows(engine)] == [
            ("anniversary:2026", "sent"),
            ("birthday:2027", "sent"),
        ]
    finally:
        engine.dispose()


def test_a_template_syntax_error_fails_the_rows_with_file_and_line_and_sends_nothing_broken(
    engine: Engine, settings: Settings
) -> None:
    subject = settings.render.templates / "birthday" / "subject.txt"
    subject.write_text("Happy birthday {{ customer.first_name | default('friend') }\n", encoding="utf-8")
    add_customer(engine, "BDAY", since=date(2020, 1, 1), birthday=date(1990, 11, 23))
    add_customer(engine, "ANN", since=date(2020, 11, 23))

    report = run_on(engine, settings, date(2026, 11, 23))

    assert (report.counts["sent"], report.counts["failed"]) == (1, 1)
    failed = next(r for r in rows(engine) if r.status == "failed")
    assert failed.reason.startswith(f"render error: {subject}:1: unexpected '}}'")
    assert [parse(p)["Subject"] for p in eml_files(settings)] == ["6 years together: thank you"]
