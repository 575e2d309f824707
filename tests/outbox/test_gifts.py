"""Gift codes bound to send-log rows: one per email, the same on every attempt, back to the pool when unseen."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, select
from sqlmodel import Session

from mailer.config import Gift, Settings
from mailer.contacts.giftpool import import_codes
from mailer.delivery import drain
from mailer.delivery.report import PassReport
from mailer.delivery.transport import SmtpTransport
from mailer.outbox import gifts, recovery, returns
from mailer.outbox.giftcodes import CodeMaker
from mailer.planning.clock import PassClock
from mailer.service.passes import run_pass
from mailer.store.tables import GiftCode, SendLog, SendStatus
from tests.support.factories import add_customer
from tests.support.smtpserver import SmtpServer

DAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
GIFT = "anniversary-5"
CAMPAIGN = "fifth-anniversary"
POOL_CODE = re.compile(r"NW-[A-Z0-9]+")


@pytest.fixture(autouse=True)
def empty_pool(engine: Engine) -> None:
    """The project comes with the sample codes (as `mailer init` makes it); these tests count their own."""
    with Session(engine) as session:
        session.execute(delete(GiftCode))
        session.commit()


def fifth_anniversaries(engine: Engine, *addresses: str) -> None:
    for n, address in enumerate(addresses):
        add_customer(engine, f"F{n:04d}", since=date(2021, 11, 23), email=address)


def fill_pool(engine: Engine, tmp_path: Path, *codes: str, name: str = "codes.csv") -> None:
    path = tmp_path / name
    path.write_text("code,expires\n" + "".join(f"{c},2027-06-30\n" for c in codes), encoding="utf-8")
    import_codes(engine, GIFT, path, DAY, NOW)


def run_day(engine: Engine, settings: Settings, at: datetime = NOW) -> PassReport:
    return run_pass(
        engine, settings, PassClock.on(DAY, at), lambda: SmtpTransport(settings.transport), campaign_names=[CAMPAIGN]
    )


def rows(engine: Engine) -> dict[str, SendLog]:
    with Session(engine) as session:
        return {r.to_address: r for r in session.execute(select(SendLog)).scalars()}


def codes(engine: Engine) -> dict[str, GiftCode]:
    with Session(engine) as session:
        return {c.code: c for c in session.execute(select(GiftCode)).scalars()}


def codes_in(server: SmtpServer, address: str) -> list[str]:
    """The gift code printed in each message delivered to ``address`` (text and HTML parts agree)."""
    found = []
    for message in server.by_recipient().get(address, []):
        parsed = message.parsed()
        text = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
        in_text, in_html = POOL_CODE.findall(text), POOL_CODE.findall(html)
        assert in_text == in_html and len(in_text) == 1, (in_text, in_html)
        found.append(in_text[0])
    return found


def test_a_pass_gives_each_email_its_own_code_from_the_pool_and_the_message_shows_it(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    fifth_anniversaries(engine, "a@example.com", "b@example.com", "c@example.com")
    fill_pool(engine, tmp_path, "NW-1", "NW-2", "NW-3", "NW-4", "NW-5")
    report = run_day(engine, smtp_settings)
    assert report.counts["sent"] == 3
    logged = rows(engine)
    given = {address: row.gift["code"] for address, row in logged.items() if row.gift}
    assert len(set(given.values())) == 3
    for address, code in given.items():
        assert codes_in(smtp_server, address) == [code]
        assert logged[address].gift == {
            "name": GIFT, "label": "a free bag of coffee with your next order", "code": code,
            "expires": (DAY + timedelta(days=60)).isoformat(),  # valid_days = 60, before the code's own expiry
        }
    stored = codes(engine)
    assert {c.send_log_id for c in stored.values() if c.state == "given"} == {r.id for r in logged.values()}
    with Session(engine) as session:
        (counted,) = gifts.counts(session, smtp_settings.gifts, DAY)
    assert (counted.left, counted.given, counted.returned, counted.expired) == (2, 3, 0, 0)


def test_an_empty_pool_defers_the_occasion_and_once_refilled_the_next_pass_sends_it_with_a_code(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    fifth_anniversaries(engine, "a@example.com", "b@example.com")
    fill_pool(engine, tmp_path, "NW-1")
    report = run_day(engine, smtp_settings)
    assert (report.counts["sent"], report.counts["deferred"]) == (1, 1)
    waiting = [r for r in rows(engine).values() if r.status == SendStatus.DEFERRED]
    assert [(r.reason, r.gift) for r in waiting] == [("gift pool 'anniversary-5' is empty", None)]
    assert len(smtp_server.messages) == 1  # never sent without the promised gift

    fill_pool(engine, tmp_path, "NW-2", name="more.csv")
    assert run_day(engine, smtp_settings, NOW + timedelta(hours=1)).counts["sent"] == 1
    logged = rows(engine)
    assert {r.status for r in logged.values()} == {"sent"}
    assert sorted(codes_in(smtp_server, "a@example.com") + codes_in(smtp_server, "b@example.com")) == ["NW-1", "NW-2"]


def test_a_retry_and_a_requeue_send_the_same_code_and_take_no_second_one(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    settings = replace(smtp_settings, transport=replace(smtp_settings.transport, retry_initial=timedelta(minutes=30)))
    fifth_anniversaries(engine, "retry@example.com", "lost@example.com")
    smtp_server.enqueue("retry@example.com", "451 4.3.0 try again later")
    smtp_server.enqueue("lost@example.com", "lost-reply")  # delivered, but the 250 never arrives: `unknown`
    fill_pool(engine, tmp_path, "NW-1", "NW-2", "NW-3")
    run_day(engine, settings)
    first = {address: row.gift["code"] for address, row in rows(engine).items() if row.gift}
    assert {r.status for r in rows(engine).values()} == {"queued", "unknown"}

    with Session(engine) as session:
        recovery.requeue(session, [rows(engine)["lost@example.com"].id or 0], NOW, settings.campaigns)
    run_day(engine, settings, NOW + timedelta(hours=1))  # the retry is due and the requeued row goes again

    assert {r.status for r in rows(engine).values()} == {"sent"}
    assert codes_in(smtp_server, "retry@example.com") == [first["retry@example.com"]]
    assert codes_in(smtp_server, "lost@example.com") == [first["lost@example.com"]] * 2
    assert sorted(c.code for c in codes(engine).values() if c.state == "given") == sorted(first.values())
    assert [c.code for c in codes(engine).values() if c.state == "available"] == [
        code for code in ("NW-1", "NW-2", "NW-3") if code not in first.values()
    ]


def test_a_bounced_row_gives_its_code_back_to_the_pool_with_the_reason(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    fifth_anniversaries(engine, "gone@example.com", "later@example.com")
    smtp_server.enqueue("gone@example.com", "rcpt:550 5.1.1 no such user here")
    fill_pool(engine, tmp_path, "NW-1", "NW-2")
    run_day(engine, smtp_settings)
    logged = rows(engine)
    assert logged["gone@example.com"].status == "bounced" and logged["gone@example.com"].gift is None
    code = next(c for c in codes(engine).values() if c.state == "available")
    assert code.send_log_id is None and code.returns == 1
    assert code.note == f"send-log row {logged['gone@example.com'].id} bounced: bounced: 550 5.1.1 no such user here"

    # A bounce reported by mail after the relay took the message gives the code back too.
    sent = logged["later@example.com"]
    assert returns.bounce_later(engine, sent.message_id, "5.1.1 mailbox unknown", NOW + timedelta(hours=2))
    assert {c.state for c in codes(engine).values()} == {"available"}
    with Session(engine) as session:
        (counted,) = gifts.counts(session, smtp_settings.gifts, DAY)
    assert (counted.left, counted.given, counted.returned) == (2, 0, 2)


def test_a_generated_gift_gives_each_row_a_code_that_verifies_back_to_it(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    gift = Gift(name="thanks", label="a coffee on us", kind="generated", secret=smtp_settings.sender.secret,
                prefix="THANKS", valid_days=30)
    campaigns = tuple(replace(c, gift=gift) if c.name == CAMPAIGN else c for c in smtp_settings.campaigns)
    settings = replace(smtp_settings, campaigns=campaigns, gifts=(gift,))
    fifth_anniversaries(engine, "a@example.com", "b@example.com")
    assert run_day(engine, settings).counts["sent"] == 2
    maker = CodeMaker(settings.sender.secret.reveal(), "THANKS")
    for address, row in rows(engine).items():
        assert row.gift is not None and maker.verify(row.gift["code"]).serial == row.id
        assert row.gift["expires"] == (DAY + timedelta(days=30)).isoformat()
        text = smtp_server.by_recipient()[address][0].parsed().get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert row.gift["code"] in text and "a coffee on us" in text
    assert {c.state for c in codes(engine).values()} == {"given"}


def test_a_row_of_a_gift_campaign_without_a_bound_code_is_never_rendered(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    fifth_anniversaries(engine, "a@example.com")
    fill_pool(engine, tmp_path, "NW-1")
    run_day(engine, smtp_settings)
    with Session(engine) as session:  # as if a path that queues rows forgot the gift
        row = session.execute(select(SendLog)).scalar_one()
        row.status, row.gift, row.next_attempt_at = SendStatus.QUEUED, None, NOW
        session.add(row)
        session.commit()
    report = drain.drain(engine, smtp_settings, lambda: SmtpTransport(smtp_settings.transport), now=lambda: NOW)
    assert report.counts["failed"] == 1 and len(smtp_server.messages) == 1
    assert "gives a gift but no code is bound" in rows(engine)["a@example.com"].reason
