"""Headless Chromium answers "how did we do?" from a message the test SMTP server received.

One click on an answer link in the email, a comment, Send: the store holds the answer, and the
account owner's notice is queued and delivered exactly once (Reply-To: the customer).
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlmodel import Session

from mailer import store
from mailer.cli import cli
from mailer.config import load_settings
from mailer.contacts import importer
from mailer.outbox.feedback import NOTICE_CAMPAIGN
from mailer.service.project import init_project
from mailer.store.tables import Feedback, SendLog
from tests.support.served import Served
from tests.support.smtpserver import SmtpServer
from tests.web.test_browser import Browser, browser, point_config_at

__all__ = ["browser"]  # the fixture, shared with the unsubscribe test

pytestmark = pytest.mark.slow

ORDERED = date(2026, 11, 16)
ASKED = date(2026, 11, 23)  # the shipped how-did-we-do asks 7 days after an order
CUSTOMERS = """\
external_id,email,first_name,last_name,customer_since,birthday,timezone,tags,owner_name,owner_email
F1,fay@example.com,Fay,Ng,2024-03-02,,Europe/London,,Hannah Lee,hannah@northwind.example
"""
INTERACTIONS = """\
external_id,kind,occurred_at,amount,reference
F1,order,2026-11-16T10:00:00+00:00,42.50,ORD-7
"""


def test_chromium_answers_from_the_email_and_the_owner_hears_once(tmp_path: Path, browser: Browser) -> None:
    config = init_project(tmp_path / "proj", ASKED, customers=3)
    engine = store.make_engine(load_settings(config).store.url)
    store.create_schema(engine)
    for name, text, load in (("c.csv", CUSTOMERS, importer.import_customers),
                             ("i.csv", INTERACTIONS, importer.import_interactions)):
        (tmp_path / name).write_text(text, encoding="utf-8")
        load(engine, tmp_path / name)

    served = Served(config)
    try:
        with SmtpServer() as smtp:
            point_config_at(config, served.base, smtp)
            result = CliRunner().invoke(cli, ["--config", str(config), "run", "--date", ASKED.isoformat(),
                                              "--campaign", "how-did-we-do"])
            assert result.exit_code == 0, result.output
            smtp.wait_for(1)
            [message] = smtp.by_recipient()["fay@example.com"]
            body = message.parsed()
            text = body.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            html = body.get_body(("html",)).get_content()  # type: ignore[union-attr]
            links = re.findall(rf"{re.escape(served.base)}/a/\S+", text)
            assert len(links) == 5 and all(f'href="{link}"' in html for link in links)

            browser.open(links[1])  # "2": not good
            assert browser.text("#heading") == "How did we do?"
            checked = browser.call("Runtime.evaluate", expression="document.querySelector('input:checked').value")
            assert checked["result"]["value"] == "2"
            with Session(engine) as session:
                assert session.execute(select(Feedback.id)).first() is None  # opening the page records nothing
            comment = "The bag was torn and half the beans were gone."
            browser.call("Runtime.evaluate",
                         expression=f"document.querySelector('#comment').value = {json.dumps(comment)}")
            browser.click("#send")
            assert browser.text("#heading") == "Thank you, Fay!"
            assert "2 out of 5" in browser.text("#recorded")

            with Session(engine) as session:
                answers = session.execute(select(Feedback.answer, Feedback.comment, Feedback.source)).all()
                notices = session.execute(
                    select(SendLog.status, SendLog.to_address).where(SendLog.campaign == NOTICE_CAMPAIGN)  # type: ignore[arg-type]
                ).all()
            assert [tuple(a) for a in answers] == [(2, comment, "page")]
            assert [tuple(n) for n in notices] == [("queued", "hannah@northwind.example")]

            for _ in range(2):  # the retry sweep delivers it; a second sweep finds nothing to send
                swept = CliRunner().invoke(cli, ["--config", str(config), "retry"])
                assert swept.exit_code == 0, swept.output
            smtp.wait_for(2)
            [notice] = smtp.by_recipient()["hannah@northwind.example"]
            assert smtp.count == 2
            parsed = notice.parsed()
            assert parsed["Reply-To"].addresses[0].addr_spec == "fay@example.com"  # type: ignore[union-attr]
            assert "List-Unsubscribe" not in parsed
            notice_text = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            assert comment in notice_text and "ORD-7" in notice_text and "2 out of 5" in notice_text
            with Session(engine) as session:
                assert session.execute(
                    select(SendLog.status).where(SendLog.campaign == NOTICE_CAMPAIGN)  # type: ignore[arg-type]
                ).scalar_one() == "sent"
    finally:
        served.stop()
        engine.dispose()
