"""Headless Chromium uses the preference page from the link in a real message, and the next pass obeys.

Two customers get their birthday email through the test SMTP server. From the link in hers, Ann
pauses her emails for three months; from his, Bob leaves the anniversary emails. The next day
both have an anniversary: the send log says ``deferred: paused until …`` for Ann and
``skipped: opted out of campaign`` for Bob, and nothing more is sent.
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
from mailer.contacts import importer, preferences
from mailer.service.project import init_project
from mailer.store.tables import Customer, SendLog
from tests.support.served import Served
from tests.support.smtpserver import SmtpServer
from tests.web.test_browser import Browser, browser, point_config_at  # noqa: F401 (browser: the fixture)

pytestmark = pytest.mark.slow

DAY = date(2026, 11, 23)
CSV = """\
external_id,email,first_name,last_name,customer_since,birthday,timezone,tags,owner_name,owner_email
ANN,ann@example.com,Ann,Lee,2019-11-24,--11-23,Europe/London,,,
BOB,bob@example.com,Bob,Ray,2018-11-24,--11-23,Europe/London,,,
"""


def mailer(config: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(config), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_chromium_pauses_one_customer_and_takes_another_off_one_campaign_and_the_next_pass_obeys(
    tmp_path: Path, browser: Browser  # noqa: F811 (the fixture imported above)
) -> None:
    config = init_project(tmp_path / "proj", DAY, customers=3)
    engine = store.make_engine(load_settings(config).store.url)
    store.create_schema(engine)
    people = tmp_path / "people.csv"
    people.write_text(CSV, encoding="utf-8")
    importer.import_customers(engine, people)

    served = Served(config)
    try:
        with SmtpServer() as smtp:
            point_config_at(config, served.base, smtp)
            mailer(config, "run", "--date", DAY.isoformat())
            smtp.wait_for(2)
            links = {}
            for message in smtp.messages:
                text = message.parsed().get_body(("plain",)).get_content()  # type: ignore[union-attr]
                [link] = re.findall(rf"{re.escape(served.base)}/u/\S+", text)
                links[str(message.parsed()["To"].addresses[0].addr_spec)] = link

            # Ann: three months' rest. Opening the page changes nothing; the button does.
            browser.open(links["ann@example.com"])
            assert browser.text("#heading") == "Your emails from Northwind Coffee Roasters"
            assert "Birthday wishes" in browser.text("#campaigns")
            ann = customer_id(engine, "ANN")
            assert preferences.preferences_of(engine, ann) == preferences.Preferences()
            browser.call("Runtime.evaluate", expression="document.querySelector('#pause-3').checked = true")
            browser.click("#pause")
            until = preferences.preferences_of(engine, ann).paused_until
            assert until is not None
            assert browser.text("#heading") == f"Your emails are paused until {until:%-d %B %Y}"

            # Bob: no more anniversary emails, birthdays still welcome.
            browser.open(links["bob@example.com"])
            browser.click("#leave-customer-anniversary")
            assert browser.text("#heading") == "You will get no more “Anniversary thank-yous” emails"
            bob = customer_id(engine, "BOB")
            assert preferences.preferences_of(engine, bob).opted_out == {"customer-anniversary": "page"}

            forecast = json.loads(mailer(config, "plan", "--from", "2026-11-24", "--days", "1", "--format", "json"))
            [anniversaries] = [r for r in forecast if r["campaign"] == "customer-anniversary"]
            assert (anniversaries["defer"], anniversaries["skip"]) == (1, 1)
            assert (anniversaries["paused"], anniversaries["opted out"]) == (1, 1)

            mailer(config, "run", "--date", "2026-11-24")
            with Session(engine) as session:
                rows = session.execute(
                    select(Customer.external_id, SendLog.occasion_key, SendLog.status, SendLog.reason)
                    .join(Customer, Customer.id == SendLog.customer_id)  # type: ignore[arg-type]
                    .where(SendLog.campaign == "customer-anniversary")  # type: ignore[arg-type]
                ).all()
            assert sorted(tuple(r) for r in rows) == [
                ("ANN", "anniversary:2026", "deferred", f"paused until {until:%Y-%m-%d}"),
                ("BOB", "anniversary:2026", "skipped", "opted out of campaign"),
            ]
            assert smtp.count == 2, "nothing more was sent"

            log = json.loads(mailer(config, "log", "--campaign", "customer-anniversary", "--format", "json"))
            assert sorted(r["reason"] for r in log) == ["opted out of campaign", f"paused until {until:%Y-%m-%d}"]
            listed = json.loads(mailer(config, "suppressions", "--format", "json"))
            assert sorted((r["customer"], r["state"], r["source"]) for r in listed) == [
                ("ANN", f"paused until {until:%Y-%m-%d}", "page"),
                ("BOB", "opted out of customer-anniversary", "page"),
            ]
            counted = json.loads(mailer(config, "stats", "--opt-outs", "--format", "json"))
            assert [(r["campaign"], r["kind"], r["count"]) for r in counted] == [
                ("birthday", "paused", 1),  # paused from the link in a birthday email
                ("customer-anniversary", "opted out", 1),
            ]
    finally:
        served.stop()
        engine.dispose()


def customer_id(engine: object, external_id: str) -> int:
    with Session(engine) as session:  # type: ignore[call-overload]
        found = session.execute(select(Customer.id).where(Customer.external_id == external_id)).scalar_one()
    return int(found)
