"""Provider webhooks on a real `mailer serve` process: SES through SNS, and Mailgun.

SNS messages are signed with a test RSA key whose certificate a loopback https server (trustme CA)
serves; Mailgun calls are signed with a test signing key. The messages they report on went out
in a real pass (maildir transport), so the Message-IDs are the ones mailer wrote.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from mailer.cli import cli
from mailer.store.tables import Customer, SendLog, WebhookReceipt
from tests.support.factories import add_customer
from tests.support.served import Reply, Served
from tests.support.webhooks import (
    CERT_PATH,
    CertServer,
    cert_server,
    mailgun_call,
    mailgun_event,
    ses_bounce,
    ses_complaint,
    sign_sns,
    signing_identity,
    sns_notification,
    sns_subscription,
)

pytestmark = pytest.mark.slow

DAY = date(2026, 11, 23)  # everyone's anniversary goes out
LATER = date(2026, 12, 1)  # everyone's birthday, past the frequency cap
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
SES_PATH = "/mailer/hooks/ses"
MAILGUN_PATH = "/mailer/hooks/mailgun"
PEOPLE = ("bea@example.com", "cal@example.org", "dan@example.net", "eve@example.com", "fay@example.org",
          "gil@example.net", "hal@example.com")


def mailer(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


@dataclass
class Hooked:
    config: Path
    engine: Engine
    served: Served
    certs: CertServer
    key: rsa.RSAPrivateKey
    ids: dict[str, str]  # address -> Message-ID of the anniversary message

    def sns(self, fields: dict[str, str], version: str = "2") -> Reply:
        return self.post(SES_PATH, json.dumps(sign_sns(fields, self.key, version)).encode())

    def post(self, path: str, body: bytes, content_type: str = "text/plain; charset=UTF-8") -> Reply:
        return self.served.request("POST", path, body, content_type)


@pytest.fixture
def hooked(project: Path, engine: Engine) -> Iterator[Hooked]:
    for n, address in enumerate(PEOPLE):
        add_customer(engine, f"W{n}", since=date(2020, 11, 23), email=address, birthday=date(1990, 12, 1))
    result = mailer(project, "run", "--date", DAY.isoformat())
    assert result.exit_code == 0, result.output
    with Session(engine) as session:
        ids = dict(session.execute(select(SendLog.to_address, SendLog.message_id)).all())  # type: ignore[arg-type]
    (project.parent / "mailgun.key").write_text(MAILGUN_KEY + "\n", encoding="utf-8")
    with project.open("a", encoding="utf-8") as config:
        config.write(
            '\n[webhooks.ses]\ntopics = ["arn:aws:sns:eu-west-1:123456789012:mailer-feedback"]\n'
            'cert_hosts = ["127.0.0.1:*"]\nca_file = "test-ca.pem"\n'
            '\n[webhooks.mailgun]\nsigning_key_file = "mailgun.key"\n'
        )
    key, cert_pem = signing_identity()
    with cert_server(project.parent, cert_pem) as certs:
        served = Served(project)
        try:
            yield Hooked(project, engine, served, certs, key, ids)
        finally:
            served.stop()


def state(engine: Engine) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
    """Everything a webhook may change: opt-out columns, send-log statuses, receipts."""
    with Session(engine) as session:
        customers = [
            tuple(r)
            for r in session.execute(
                select(Customer.email, Customer.unsubscribed_at, Customer.unsubscribe_source,
                       Customer.suppressed_at, Customer.suppressed_reason).order_by(Customer.id)  # type: ignore[arg-type]
            )
        ]
        rows = [tuple(r) for r in session.execute(
            select(SendLog.id, SendLog.status, SendLog.reason).order_by(SendLog.id)  # type: ignore[arg-type]
        )]
        receipts = session.execute(select(func.count()).select_from(WebhookReceipt)).scalar_one()
    return customers, rows, receipts


def statuses(engine: Engine) -> dict[str, tuple[str, str]]:
    with Session(engine) as session:
        found = session.execute(select(SendLog.to_address, SendLog.status, SendLog.reason)).all()
    return {address: (status, reason) for address, status, reason in found}


def test_bounces_complaints_and_unsubscribes_from_both_providers_end_in_suppressions_once_and_the_next_pass_skips_them(
    hooked: Hooked,
) -> None:
    bea, cal, dan, eve, fay, gil, hal = PEOPLE
    ids = hooked.ids
    certs = hooked.certs.cert_url

    bounce = sns_notification(ses_bounce(bea, ids[bea]), certs)
    first = hooked.sns(bounce, version="1")
    assert (first.status, first.body) == (200, f"{bea}: suppressed 1 (bounce via webhook:ses: 5.1.1 smtp; 550 5.1.1 "
                                                f"<{bea}>... User unknown); send-log row of <{ids[bea].strip('<>')}> "
                                                "bounced\n")
    assert hooked.sns(sns_notification(ses_complaint(cal, ids[cal]), certs, subject=None)).status == 200
    # With the original headers included, an SES message can be far larger than a one-click POST.
    delayed = ses_bounce(dan, ids[dan], "Transient")
    delayed["mail"]["headers"][:0] = [{"name": "Received", "value": "from relay.example " * 40}] * 60
    transient = hooked.sns(sns_notification(delayed, certs))
    assert (transient.status, transient.body.split(":")[0]) == (200, f"transient failure for {dan} logged")

    def mailgun(event: dict[str, Any]) -> Reply:
        return hooked.post(MAILGUN_PATH, mailgun_call(MAILGUN_KEY, event), "application/json")

    failed = mailgun_event("failed", eve, ids[eve], severity="permanent", reason="bounce",
                           **{"delivery-status": {"code": 550, "message": "5.1.1 mailbox does not exist"}})
    assert mailgun(failed).status == 200
    assert mailgun(mailgun_event("complained", fay, ids[fay])).status == 200
    assert mailgun(mailgun_event("unsubscribed", gil, ids[gil])).status == 200
    temporary = mailgun_event("failed", hal, ids[hal], severity="temporary", reason="generic",
                              **{"delivery-status": {"code": 452, "message": "mailbox full"}})
    assert mailgun(temporary).status == 200
    assert mailgun(mailgun_event("delivered", hal, ids[hal])).body == "delivered ignored\n"

    listing = json.loads(mailer(hooked.config, "suppressions", "--format", "json").output)
    assert {(row["email"], row["state"]): row["source/reason"] for row in listing} == {
        (bea, "suppressed"): f"bounce via webhook:ses: 5.1.1 smtp; 550 5.1.1 <{bea}>... User unknown",
        (cal, "suppressed"): "complaint via webhook:ses: abuse",
        (eve, "suppressed"): "bounce via webhook:mailgun: 550 5.1.1 mailbox does not exist",
        (fay, "suppressed"): "complaint via webhook:mailgun: abuse",
        (gil, "unsubscribed"): "webhook:mailgun",
    }
    rows = statuses(hooked.engine)
    assert rows[bea] == ("bounced", f"bounced: 5.1.1 smtp; 550 5.1.1 <{bea}>... User unknown (webhook:ses)")
    assert rows[eve] == ("bounced", "bounced: 550 5.1.1 mailbox does not exist (webhook:mailgun)")
    assert {a: s for a, (s, _) in rows.items() if a not in (bea, eve)} == dict.fromkeys((cal, dan, fay, gil, hal),
                                                                                         "sent")

    # SNS delivers a message again when it missed our answer: the repeat changes nothing.
    before = state(hooked.engine)
    again = hooked.post(SES_PATH, json.dumps(sign_sns(bounce, hooked.key, "1")).encode())
    assert (again.status, again.body) == (200, "already handled\n")
    # A new message with the same report (SES reporting twice) is acted on, and changes nothing either.
    assert hooked.sns(sns_notification(ses_bounce(bea, ids[bea]), certs)).status == 200
    assert state(hooked.engine)[:2] == before[:2]
    assert hooked.certs.fetched.count(CERT_PATH) == 1  # the certificate is fetched once and kept

    later = mailer(hooked.config, "run", "--date", LATER.isoformat())
    assert later.exit_code == 0, later.output
    with Session(hooked.engine) as session:
        birthdays = dict(
            session.execute(
                select(Customer.email, SendLog.status)
                .join(Customer, Customer.id == SendLog.customer_id)  # type: ignore[arg-type]
                .where(SendLog.campaign == "birthday")  # type: ignore[arg-type]
            ).all()
        )
    assert birthdays == {bea: "skipped", cal: "skipped", eve: "skipped", fay: "skipped", gil: "skipped",
                         dan: "sent", hal: "sent"}


def test_a_subscription_is_confirmed_only_when_signed_and_for_an_allowed_topic(hooked: Hooked) -> None:
    base, certs = hooked.certs.base, hooked.certs.cert_url
    other = sns_subscription(base, certs, topic="arn:aws:sns:eu-west-1:123456789012:someone-else")
    assert hooked.sns(other).status == 403
    forged = sign_sns(sns_subscription(base, certs), signing_identity()[0])
    assert hooked.post(SES_PATH, json.dumps(forged).encode()).status == 403
    assert not any(path.startswith("/?Action=ConfirmSubscription") for path in hooked.certs.fetched)

    request = sns_subscription(base, certs)
    reply = hooked.sns(request, version="1")
    assert (reply.status, reply.body) == (200, f"subscription to {request['TopicArn']} confirmed\n")
    assert hooked.certs.fetched[-1] == request["SubscribeURL"].removeprefix(base)

    # When someone unsubscribes this endpoint, SNS says so; it is noted and nothing is fetched.
    fetched = len(hooked.certs.fetched)
    goodbye = {**sns_subscription(base, certs), "Type": "UnsubscribeConfirmation"}
    assert (hooked.sns(goodbye).status, len(hooked.certs.fetched)) == (200, fetched)


def test_forged_tampered_unsigned_stale_or_foreign_sns_messages_are_refused_and_change_nothing(
    hooked: Hooked,
) -> None:
    bea = PEOPLE[0]
    certs = hooked.certs.cert_url
    before = state(hooked.engine)

    def bounce(**kwargs: Any) -> dict[str, str]:
        return sns_notification(ses_bounce(bea, hooked.ids[bea]), kwargs.pop("cert_url", certs), **kwargs)

    unsigned = bounce()
    assert hooked.post(SES_PATH, json.dumps(unsigned).encode()).status == 401
    forged = sign_sns(bounce(), signing_identity()[0])
    assert hooked.post(SES_PATH, json.dumps(forged).encode()).status == 403
    tampered = sign_sns(bounce(), hooked.key)
    tampered["Message"] = tampered["Message"].replace(bea, PEOPLE[1])
    assert hooked.post(SES_PATH, json.dumps(tampered).encode()).status == 403
    wrong_version = {**sign_sns(bounce(), hooked.key), "SignatureVersion": "3"}
    assert hooked.post(SES_PATH, json.dumps(wrong_version).encode()).status == 403
    for foreign in ("https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem",
                    certs.replace("https://", "http://"), f"{hooked.certs.base}/other.txt"):
        assert hooked.sns(bounce(cert_url=foreign)).status == 403, foreign
    stale = bounce(at=datetime.now(UTC) - timedelta(days=2))
    assert hooked.sns(stale).status == 403
    other_topic = bounce(topic="arn:aws:sns:eu-west-1:123456789012:someone-else")
    assert hooked.sns(other_topic).status == 403
    assert hooked.post(SES_PATH, b"{not json").status == 400
    assert hooked.post(SES_PATH, json.dumps({"Type": "Notification"}).encode()).status == 400
    broken = sns_notification({"mail": {}}, certs)
    assert hooked.sns(broken).status == 400

    assert state(hooked.engine) == before


def test_forged_stale_replayed_or_unsigned_mailgun_calls_are_refused_and_change_nothing(hooked: Hooked) -> None:
    eve = PEOPLE[3]
    event = mailgun_event("failed", eve, hooked.ids[eve], severity="permanent", reason="bounce")
    before = state(hooked.engine)

    def post(body: bytes) -> int:
        return hooked.post(MAILGUN_PATH, body, "application/json").status

    assert post(json.dumps({"event-data": event}).encode()) == 401
    assert post(mailgun_call("key-not-the-right-one", event)) == 403
    signed = json.loads(mailgun_call(MAILGUN_KEY, event))
    signed["event-data"]["recipient"] = PEOPLE[4]  # the token and timestamp are signed, not the event
    signed["signature"]["token"] += "x"
    assert post(json.dumps(signed).encode()) == 403
    assert post(mailgun_call(MAILGUN_KEY, event, timestamp=int(time.time()) - 600)) == 403
    assert post(mailgun_call(MAILGUN_KEY, event, timestamp=int(time.time()) + 3600)) == 403
    assert post(b"recipient=eve%40example.com") == 400
    assert post(mailgun_call(MAILGUN_KEY, {"recipient": eve})) == 400
    assert state(hooked.engine) == before

    once = mailgun_call(MAILGUN_KEY, event)
    assert post(once) == 200
    after = state(hooked.engine)
    assert after != before
    assert post(once) == 403  # the same token again: a replay
    assert state(hooked.engine) == after
