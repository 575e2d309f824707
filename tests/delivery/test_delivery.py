"""Delivery against a real SMTP server: every SMTP outcome, retries, TLS and AUTH, rate, cap, connections."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from sqlmodel import Session, col

from mailer.config import ConfigError, Secret, Settings, parse_settings
from mailer.delivery import drain as delivery
from mailer.delivery.report import PassReport
from mailer.delivery.throttle import TokenBucket
from mailer.delivery.transport import Outcome, SmtpTransport
from mailer.outbox import claims
from mailer.outbox.retry import retry_at
from mailer.store.tables import Customer, SendLog, SendStatus
from tests.support.factories import deliver_to, queue_anniversaries
from tests.support.smtpserver import SmtpServer

DAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
HALF_HOUR = timedelta(minutes=30)
# Each relay's answers, to a client that pipelines MAIL, RCPT and DATA (RFC 2920) and to one that waits for each.
BOTH_WAYS = pytest.mark.parametrize("smtp_server", [True, False], ids=["pipelining", "one-by-one"], indirect=True)
PIPELINING_OR_NOT = pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-by-one"])


def queue(engine: Engine, settings: Settings, *addresses: str) -> None:
    """One anniversary due on DAY per address, queued in the send log in this order."""
    queue_anniversaries(engine, settings, addresses, day=DAY, now=NOW)


def drain(engine: Engine, settings: Settings, at: datetime = NOW) -> PassReport:
    return delivery.drain(engine, settings, lambda: SmtpTransport(settings.transport), now=lambda: at)


def log(engine: Engine) -> dict[str, SendLog]:
    with Session(engine) as session:
        return {row.to_address: row for row in session.execute(select(SendLog)).scalars()}


def delivered(server: SmtpServer) -> dict[str, int]:
    return {rcpt: len(messages) for rcpt, messages in server.by_recipient().items()}


def suppressed(engine: Engine) -> dict[str, str | None]:
    with Session(engine) as session:
        return {c.email: c.suppressed_reason for c in session.execute(select(Customer)).scalars()}


FAULTS = {
    "r421@example.com": "rcpt:421 4.3.2 shutting down",
    "d451@example.com": "451 4.3.0 try again later",
    "r452@example.com": "rcpt:452 4.2.2 mailbox full",
    "u550@example.com": "rcpt:550 5.1.1 no such user here",
    "d554@example.com": "554 5.7.1 message refused as spam",
    "hangup@example.com": "hangup",  # the line dropped at DATA, before the message was sent
    "drop@example.com": "drop",  # after the whole message, before the reply: the relay may have it
    "stall@example.com": "stall:60",  # the reply far past the client's timeout: the relay may have it
}
RETRIED = {"r421@example.com", "d451@example.com", "r452@example.com", "hangup@example.com"}
BOUNCED = {"u550@example.com", "d554@example.com"}
UNKNOWN = {"drop@example.com", "stall@example.com"}


@BOTH_WAYS
def test_each_smtp_fault_ends_in_its_status_the_batch_goes_on_and_retries_deliver_exactly_once(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    settings = replace(smtp_settings, transport=replace(smtp_settings.transport, timeout=2.0, final_reply_timeout=2.0))
    addresses = []
    for n, (address, action) in enumerate(FAULTS.items()):
        smtp_server.enqueue(address, action)
        addresses += [f"ok{n}@example.com", address]  # a healthy neighbour after every fault
    addresses.append("last@example.com")
    queue(engine, settings, *addresses)

    first = drain(engine, settings)

    rows = log(engine)
    healthy = {a for a in addresses if a not in FAULTS}
    assert {a: rows[a].status for a in healthy} == dict.fromkeys(healthy, "sent")
    assert delivered(smtp_server) == dict.fromkeys(healthy, 1)
    assert {a: rows[a].status for a in RETRIED} == dict.fromkeys(RETRIED, "queued")
    assert {a: rows[a].next_attempt_at for a in RETRIED} == dict.fromkeys(RETRIED, NOW + HALF_HOUR)
    reasons = {a: rows[a].reason for a in FAULTS}
    assert reasons["r421@example.com"] == "retrying: 421 4.3.2 shutting down"
    assert reasons["d451@example.com"] == "retrying: 451 4.3.0 try again later"
    assert reasons["r452@example.com"] == "retrying: 452 4.2.2 mailbox full"
    assert reasons["hangup@example.com"].startswith("retrying: connection lost")
    assert reasons["drop@example.com"].startswith("unknown: connection lost")
    assert reasons["stall@example.com"].startswith("unknown: timed out after 2s after the whole message was sent")
    assert {a: rows[a].status for a in UNKNOWN} == dict.fromkeys(UNKNOWN, "unknown")
    assert reasons["u550@example.com"] == "bounced: 550 5.1.1 no such user here"
    assert reasons["d554@example.com"] == "bounced: 554 5.7.1 message refused as spam"
    assert {a: rows[a].status for a in BOUNCED} == dict.fromkeys(BOUNCED, "bounced")
    assert first.counts == {
        "sent": len(healthy), "retrying": len(RETRIED), "bounced": len(BOUNCED), "unknown": len(UNKNOWN)
    }
    who = suppressed(engine)
    assert who["u550@example.com"] == "hard bounce: 550 5.1.1 no such user here"
    assert who["d554@example.com"] is None  # refused content is not a missing mailbox

    too_early = drain(engine, settings, NOW + HALF_HOUR - timedelta(seconds=1))
    assert sum(too_early.counts.values()) == 0

    second = drain(engine, settings, NOW + HALF_HOUR)

    assert second.counts == {"sent": len(RETRIED)}
    assert delivered(smtp_server) == dict.fromkeys(healthy | RETRIED, 1)
    rows = log(engine)
    assert {a: (rows[a].status, rows[a].attempts) for a in RETRIED} == dict.fromkeys(RETRIED, ("sent", 2))
    assert sum(drain(engine, settings, NOW + timedelta(days=4)).counts.values()) == 0
    assert delivered(smtp_server) == dict.fromkeys(healthy | RETRIED, 1)


def test_a_sent_row_keeps_the_servers_reply_and_the_message_id_it_went_out_with(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    smtp_server.enqueue("ada@example.com", "250 2.0.0 Ok: queued as 4ABC123")
    queue(engine, smtp_settings, "ada@example.com")

    drain(engine, smtp_settings)

    row = log(engine)["ada@example.com"]
    [message] = smtp_server.messages
    assert (row.status, row.last_reply) == ("sent", "250 2.0.0 Ok: queued as 4ABC123")
    assert row.message_id == message.parsed()["Message-ID"]
    assert row.message_id == f"<{message.parsed()['X-Mailer-Occasion']}@northwind.example>"
    assert (row.sent_at, row.first_attempt_at, row.attempts) == (NOW, NOW, 1)


@BOTH_WAYS
@pytest.mark.parametrize(
    ("reply", "suppresses"),
    [
        ("rcpt:550 5.1.1 user unknown", True),
        ("550 5.1.1 user unknown", True),  # refused at DATA: still that one recipient
        ("rcpt:550 5.1.2 no such domain", True),
        ("rcpt:553 5.1.3 bad address syntax", True),
        ("rcpt:550 5.1.8 sender domain does not exist", False),  # about our sender, not them
        ("rcpt:550 5.7.1 relaying denied", False),
        ("rcpt:550 mailbox unavailable", False),  # no enhanced code: bounce, but do not guess
    ],
)
def test_only_a_no_such_recipient_bounce_suppresses_the_address(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServer, reply: str, suppresses: bool
) -> None:
    smtp_server.enqueue("x@example.com", reply)
    queue(engine, smtp_settings, "x@example.com")

    drain(engine, smtp_settings)

    assert log(engine)["x@example.com"].status == "bounced"
    assert (suppressed(engine)["x@example.com"] is not None) is suppresses


def test_retries_back_off_by_doubling_and_give_up_three_days_after_the_first_attempt(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    smtp_server.enqueue("busy@example.com", *["451 4.7.1 greylisted"] * 20)
    queue(engine, smtp_settings, "busy@example.com")

    attempts_at = []
    moment = NOW
    while log(engine)["busy@example.com"].status == "queued":
        attempts_at.append(moment - NOW)
        drain(engine, smtp_settings, moment)
        moment = log(engine)["busy@example.com"].next_attempt_at or moment

    hours = [a / timedelta(hours=1) for a in attempts_at]
    assert hours == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 63.5, 72]
    row = log(engine)["busy@example.com"]
    assert row.status == "failed"
    assert row.reason == "gave up after 9 attempts in 3.0 days: 451 4.7.1 greylisted"
    assert smtp_server.attempts("busy@example.com") == 9
    assert delivered(smtp_server) == {}


def test_the_retry_deadline_counts_from_the_first_attempt_not_from_planning(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    smtp_server.enqueue("late@example.com", "451 4.3.0 later")
    queue(engine, smtp_settings, "late@example.com")  # planned at NOW ...
    four_days_on = NOW + timedelta(days=4)  # ... first tried four days later (a long deferral, an outage)

    drain(engine, smtp_settings, four_days_on)

    row = log(engine)["late@example.com"]
    assert (row.status, row.next_attempt_at) == ("queued", four_days_on + HALF_HOUR)
    drain(engine, smtp_settings, four_days_on + HALF_HOUR)
    assert log(engine)["late@example.com"].status == "sent"


@pytest.mark.parametrize(
    ("attempts", "elapsed", "expected"),
    [
        (1, timedelta(0), timedelta(minutes=30)),
        (2, timedelta(minutes=30), timedelta(hours=1)),
        (5, timedelta(hours=7.5), timedelta(hours=8)),
        (8, timedelta(hours=63.5), timedelta(hours=8.5)),  # the deadline comes first
        (9, timedelta(hours=72), None),
        (3, timedelta(days=5), None),  # a sweep that comes late still gives up
    ],
)
def test_retry_at_doubles_from_the_initial_delay_and_stops_at_the_deadline(
    attempts: int, elapsed: timedelta, expected: timedelta | None
) -> None:
    again = retry_at(NOW, attempts, NOW + elapsed, timedelta(minutes=30), timedelta(days=3))
    assert (again - (NOW + elapsed) if again else None) == expected


def test_a_refused_connection_retries_the_row_it_tried_and_leaves_the_rest_queued_untouched(
    engine: Engine, settings: Settings
) -> None:
    with SmtpServer() as gone:
        down = deliver_to(settings, gone)
    queue(engine, down, "a@example.com", "b@example.com", "c@example.com")
    untouched = {
        a: (r.status, r.reason, r.attempts, r.updated_at) for a, r in log(engine).items() if a != "a@example.com"
    }

    report = drain(engine, down)

    rows = log(engine)
    assert rows["a@example.com"].status == "queued"
    assert rows["a@example.com"].reason.startswith("retrying: ConnectionRefusedError")
    assert rows["a@example.com"].next_attempt_at == NOW + HALF_HOUR
    assert {a: (r.status, r.reason, r.attempts, r.updated_at) for a, r in rows.items() if a in untouched} == untouched
    assert report.stopped.startswith("relay unusable: ConnectionRefusedError")
    assert report.counts == {"retrying": 1}


def test_starttls_with_a_private_ca_and_auth_delivers_and_keeps_the_password_out_of_the_log(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret-horse")
    with SmtpServer(tls="starttls", auth=("mailer", "s3cret-horse")) as server:
        good = deliver_to(settings, server, username="mailer", password=Secret(env="TEST_SMTP_PASSWORD"))
        queue(engine, good, "a@example.com", "b@example.com")
        report = drain(engine, good)
        received = server.messages
    assert report.counts == {"sent": 2}
    assert [(m.tls, m.login) for m in received] == [(True, "mailer"), (True, "mailer")]


def test_a_wrong_password_is_a_retry_with_the_servers_reason_and_never_the_password(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong-horse")
    with SmtpServer(tls="implicit", auth=("mailer", "s3cret-horse")) as server:
        bad = deliver_to(settings, server, username="mailer", password=Secret(env="TEST_SMTP_PASSWORD"))
        queue(engine, bad, "a@example.com", "b@example.com")
        report = drain(engine, bad)
        assert server.count == 0
    rows = log(engine)
    assert rows["a@example.com"].status == "queued"
    assert rows["a@example.com"].reason.startswith("retrying: 535")
    assert "wrong-horse" not in rows["a@example.com"].reason + rows["a@example.com"].last_reply
    assert rows["b@example.com"].attempts == 0
    assert report.stopped.startswith("relay unusable: 535")


def test_an_untrusted_certificate_is_a_retry_with_a_tls_reason_and_nothing_goes_out_in_clear(
    engine: Engine, settings: Settings
) -> None:
    with SmtpServer(tls="starttls", untrusted=True) as server:
        strict = deliver_to(settings, server)
        queue(engine, strict, "a@example.com")
        drain(engine, strict)
        assert server.count == 0
    row = log(engine)["a@example.com"]
    assert row.status == "queued"
    assert row.reason == "retrying: TLS certificate refused: unable to get local issuer certificate"


def test_a_password_is_never_sent_without_tls() -> None:
    raw = {
        "sender": {
            "company": "C",
            "from_address": "a@example.com",
            "postal_address": "1 Street",
            "unsubscribe_url": "https://example.com",
            "secret_env": "X",
        },
        "transport": {"kind": "smtp", "security": "none", "username": "u", "password_env": "P"},
    }
    with pytest.raises(ConfigError, match=r"\[transport\] username: AUTH without TLS would send the password"):
        parse_settings(raw, Path("mailer.toml"))


@PIPELINING_OR_NOT
def test_a_connection_the_server_closed_while_idle_is_reopened_without_failing_the_next_message(
    settings: Settings, pipelining: bool
) -> None:
    with SmtpServer(pipelining=pipelining) as first:
        smtp = deliver_to(settings, first)
        transport = SmtpTransport(smtp.transport)
        assert transport.send("s@example.com", "a@example.com", _message()).outcome is Outcome.DELIVERED
        port = first.port
    # Same address: the old connection is dead, and the client finds out only once it has written MAIL FROM.
    with SmtpServer(port=port, pipelining=pipelining) as restarted, transport:
        result = transport.send("s@example.com", "b@example.com", _message())
        assert (result.outcome, result.reply) == (Outcome.DELIVERED, "250 OK")
        assert restarted.count == 1


def _message() -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = "hello"
    msg.set_content("hello\n")
    return msg


def test_the_daily_cap_counts_the_last_24_hours_and_leaves_the_rest_queued_with_a_reason(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    capped = replace(smtp_settings, transport=replace(smtp_settings.transport, daily_cap=3))
    addresses = [f"c{n}@example.com" for n in range(6)]
    queue(engine, capped, *addresses)
    with Session(engine) as session:  # one message went out 23 hours ago, through this same log
        session.execute(
            update(SendLog)
            .where(col(SendLog.to_address) == "c0@example.com")
            .values(status=SendStatus.SENT, sent_at=NOW - timedelta(hours=23))
        )
        session.commit()

    today = drain(engine, capped)

    assert today.counts == {"sent": 2, "held": 3}
    assert today.stopped == "daily cap reached"
    rows = log(engine)
    waiting = [a for a in addresses if rows[a].status == "queued"]
    assert len(waiting) == 3
    assert {rows[a].reason for a in waiting} == {"waiting: daily cap of 3 messages in 24 hours reached"}
    assert {rows[a].attempts for a in waiting} == {0}

    tomorrow = drain(engine, capped, NOW + timedelta(hours=24, seconds=1))

    assert tomorrow.counts["sent"] == 3
    assert smtp_server.count == 5


def test_several_connections_send_in_parallel_and_each_row_exactly_once(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    parallel = replace(smtp_settings, transport=replace(smtp_settings.transport, connections=3, timeout=30.0))
    addresses = [f"p{n:02d}@example.com" for n in range(30)]
    for address in addresses[:3]:  # the first three hold their connections until all three are held
        smtp_server.enqueue(address, "stall:5")
    queue(engine, parallel, *addresses)
    reports: list[PassReport] = []
    worker = threading.Thread(target=lambda: reports.append(drain(engine, parallel)))

    worker.start()
    smtp_server.wait_until(lambda: smtp_server.stalling == 3, timeout=30)
    worker.join(timeout=120)

    assert reports[0].counts == {"sent": 30}
    assert delivered(smtp_server) == dict.fromkeys(addresses, 1)


def test_the_configured_rate_spaces_the_messages_out(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    paced = replace(smtp_settings, transport=replace(smtp_settings.transport, rate_per_second=20.0))
    queue(engine, paced, *[f"r{n}@example.com" for n in range(6)])

    started = time.monotonic()
    report = drain(engine, paced)
    elapsed = time.monotonic() - started

    assert report.counts == {"sent": 6}
    assert elapsed >= 5 / 20  # a lower bound: a slow machine can only make it longer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(("rate", "burst", "grants", "expected"), [(5, 1, 11, 2.0), (5, 5, 15, 2.0), (0.5, 1, 3, 4.0)])
def test_the_token_bucket_grants_at_most_rate_per_second_after_its_burst(
    rate: float, burst: float, grants: int, expected: float
) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate, burst=burst, clock=clock, sleep=clock.sleep)

    times = []
    for _ in range(grants):
        assert bucket.acquire()
        times.append(clock.now - 100.0)

    assert times[-1] == pytest.approx(expected)
    assert times[: int(burst)] == [0.0] * int(burst)


def test_a_token_bucket_stops_waiting_when_asked() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1, clock=clock, sleep=clock.sleep)
    assert bucket.acquire()
    assert not bucket.acquire(should_stop=lambda: clock.now > 100.3)
    assert clock.now < 101


def test_claiming_moves_one_due_row_at_a_time_and_records_who_claimed_it(engine: Engine, settings: Settings) -> None:
    queue(engine, settings, "a@example.com", "b@example.com")
    with Session(engine) as session:
        first = claims.claim_next(session, NOW, claimer=7)
        second = claims.claim_next(session, NOW, claimer=8)
        none_left = claims.claim_next(session, NOW, claimer=7)
        session.commit()
    rows = log(engine)
    assert none_left is None
    assert [(r.id, r.status, r.claimed_by, r.attempts) for r in rows.values()] == [
        (first, "sending", 7, 1),
        (second, "sending", 8, 1),
    ]


@PIPELINING_OR_NOT
@pytest.mark.parametrize(
    "data",
    [
        b".starts with a dot\r\nmiddle\r\n.\r\n..two\r\nends without a line break",
        b"Subject: x\r\n\r\n.\r\n",
        b"no dots at all\r\n",
    ],
)
def test_what_the_server_receives_is_exactly_the_bytes_sent_dot_stuffing_included(
    settings: Settings, data: bytes, pipelining: bool
) -> None:
    senders = ["s@example.com", "o'neil+tag@example.com", "Zoë@example.com"]  # the last needs SMTPUTF8
    server = SmtpServer(pipelining=pipelining)
    with server, SmtpTransport(deliver_to(settings, server).transport) as transport:
        for sender in senders:
            result = transport.send_wire(sender, "first.last@example.com", data)
            assert result.outcome is Outcome.DELIVERED, result.reply
        received = server.messages
    expected = data if data.endswith(b"\r\n") else data + b"\r\n"
    assert [m.data for m in received] == [expected] * len(senders)
    assert [(m.mail_from, m.rcpt_tos) for m in received] == [(s, ("first.last@example.com",)) for s in senders]
    assert [m.mail_options for m in received] == [(), (), ("SMTPUTF8", "BODY=8BITMIME")]
