"""A German customer's message through the whole path: planned, rendered from the German files, sent over SMTP."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime

from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer.config import Settings
from mailer.delivery import drain as delivery
from mailer.delivery.transport import SmtpTransport
from mailer.store.tables import Customer, SendLog
from tests.support.factories import queue_anniversaries
from tests.support.smtpserver import SmtpServer

DAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_a_german_subject_with_umlauts_is_rfc_2047_encoded_and_the_body_is_utf_8(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    queue_anniversaries(
        engine, smtp_settings, ["juergen@example.com", "amelia@example.com"], day=DAY, now=NOW, first_name="Jürgen"
    )
    with Session(engine) as session:  # the second customer has no locale: the [sender] default (English)
        first = session.execute(select(Customer).where(Customer.email == "juergen@example.com")).scalar_one()
        first.locale = "de-AT"
        session.add(first)
        session.commit()

    delivery.drain(engine, smtp_settings, lambda: SmtpTransport(smtp_settings.transport), now=lambda: NOW)

    by_rcpt = {m.rcpt_tos[0]: m for m in smtp_server.messages}
    german = by_rcpt["juergen@example.com"]
    raw_subject = re.search(rb"^Subject: (.*(?:\r\n[ \t].*)*)", german.data, re.M)
    assert raw_subject is not None
    assert raw_subject.group(1).isascii() and b"=?utf-8?" in raw_subject.group(1).lower()  # RFC 2047
    parsed = german.parsed()
    assert parsed["Subject"] == "6 Jahre gemeinsam, Jürgen: danke"
    text = parsed.get_body(("plain",))
    assert text is not None and text.get_content_charset() == "utf-8"
    assert "Am 23. November 2020 sind Sie Kunde" in text.get_content()
    assert "Mit einem Klick abbestellen" in text.get_content()
    # The Date header stays RFC 5322, in English, whatever language the message is in.
    date_line = re.search(rb"^Date: (.*)$", german.data, re.M)
    assert date_line is not None
    assert re.fullmatch(
        rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r?", date_line.group(1)
    )
    assert parsedate_to_datetime(str(parsed["Date"])) is not None
    english = by_rcpt["amelia@example.com"].parsed()
    assert english["Subject"].startswith("6 years together")
    with Session(engine) as session:
        locales = {row.to_address: row.locale for row in session.execute(select(SendLog)).scalars()}
    assert locales == {"juergen@example.com": "de", "amelia@example.com": "en"}
