"""Fault injection against a real SMTP server: what each misbehaving relay leads to, and never a second copy.

Each case queues one occasion for a recipient the server misbehaves for, next
to a healthy neighbour, and follows it through the first attempt, the retry
half an hour later, and a sweep days later: the send-log status and reason,
whether and when it is tried again, and how many copies the server holds.
Only a human's ``requeue`` may ever put a second copy of an occasion on the
wire, and then with the Message-ID of the first.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer.config import Settings
from mailer.delivery import drain as delivery
from mailer.delivery.report import PassReport
from mailer.delivery.transport import SmtpTransport
from mailer.outbox import recovery
from mailer.store.tables import Customer, SendLog
from tests.support.factories import deliver_to, queue_anniversaries
from tests.support.smtpserver import SmtpServer

DAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
RETRY = NOW + timedelta(minutes=30)
LATER = NOW + timedelta(days=4)
TIMEOUT = 2.0
# Each relay's answers, to a client that pipelines MAIL, RCPT and DATA (RFC 2920) and to one that waits for each.
BOTH_WAYS = pytest.mark.parametrize("smtp_server", [True, False], ids=["pipelining", "one-by-one"], indirect=True)


@dataclass(frozen=True)
class Fault:
    action: str  # the server's script for the recipient (see tests/support/smtpserver.py)
    status: str  # the row after the first attempt
    reason: str  # how its reason starts
    retried: bool  # tried again by the next sweep after the backoff
    copies: int  # how many copies the server holds once the retry and a later sweep have run
    suppressed: bool = False


FAULTS = {
    "451 on RCPT": Fault("rcpt:451 4.3.0 try again later", "queued", "retrying: 451 4.3.0", True, 1),
    "452 on RCPT": Fault("rcpt:452 4.2.2 mailbox full", "queued", "retrying: 452 4.2.2", True, 1),
    "421 on RCPT": Fault("rcpt:421 4.3.2 shutting down", "queued", "retrying: 421 4.3.2", True, 1),
    "550 5.1.1 on RCPT": Fault("rcpt:550 5.1.1 no such user", "bounced", "bounced: 550 5.1.1", False, 0, True),
    "554 on DATA": Fault("554 5.7.1 refused as spam", "bounced", "bounced: 554 5.7.1", False, 0),
    "451 after the final dot": Fault("451 4.3.0 queue full", "queued", "retrying: 451 4.3.0", True, 1),
    "drop before the message was sent": Fault("hangup", "queued", "retrying: connection lost", True, 1),
    "drop after the final dot": Fault("drop", "unknown", "unknown: connection lost", False, 0),
    "delivered, then the line dropped": Fault("lost-reply", "unknown", "unknown: connection lost", False, 1),
    "reply slower than the timeout": Fault("stall:30", "unknown", f"unknown: timed out after {TIMEOUT:g}s", False, 0),
}


def queue(engine: Engine, settings: Settings, *addresses: str) -> None:
    """One anniversary due on DAY per address, queued in this order."""
    queue_anniversaries(engine, settings, addresses, day=DAY, now=NOW)


def drain(engine: Engine, settings: Settings, at: datetime) -> PassReport:
    return delivery.drain(engine, settings, lambda: SmtpTransport(settings.transport), now=lambda: at)


def row_for(engine: Engine, address: str) -> SendLog:
    with Session(engine) as session:
        return session.execute(select(SendLog).where(SendLog.to_address == address)).scalar_one()


def copies(server: SmtpServer, address: str) -> list[str]:
    """The Message-IDs of the copies the server accepted for ``address``."""
    return [str(m.parsed()["Message-ID"]) for m in server.by_recipient().get(address, [])]


@BOTH_WAYS
@pytest.mark.parametrize("name", FAULTS)
def test_each_fault_ends_in_its_status_is_retried_only_when_nothing_was_accepted_and_never_doubles(
    engine: Engine, settings: Settings, smtp_server: SmtpServer, name: str
) -> None:
    fault = FAULTS[name]
    smtp = deliver_to(settings, smtp_server, timeout=TIMEOUT, final_reply_timeout=TIMEOUT)
    smtp_server.enqueue("fault@example.com", fault.action)
    queue(engine, smtp, "fault@example.com", "neighbour@example.com")

    drain(engine, smtp, NOW)

    row = row_for(engine, "fault@example.com")
    assert (row.status, row.reason[: len(fault.reason)]) == (fault.status, fault.reason)
    assert row.next_attempt_at == (RETRY if fault.retried else None)
    assert row_for(engine, "neighbour@example.com").status == "sent"  # one recipient's fault stays its own
    with Session(engine) as session:
        customer = session.execute(select(Customer).where(Customer.email == "fault@example.com")).scalar_one()
    assert (customer.suppressed_at is not None) is fault.suppressed
    first_id = row.message_id

    drain(engine, smtp, RETRY)
    drain(engine, smtp, LATER)

    again = row_for(engine, "fault@example.com")
    assert again.status == ("sent" if fault.retried else fault.status)
    assert again.attempts == (2 if fault.retried else 1)
    assert len(copies(smtp_server, "fault@example.com")) == fault.copies
    assert set(copies(smtp_server, "fault@example.com")) <= {first_id}  # a retry carries the first Message-ID
    assert len(copies(smtp_server, "neighbour@example.com")) == 1


@BOTH_WAYS
@pytest.mark.parametrize("action", ["drop", "lost-reply", "stall:30"])
def test_an_unknown_row_goes_again_only_when_requeued_and_with_the_message_id_of_its_first_attempt(
    engine: Engine, settings: Settings, smtp_server: SmtpServer, action: str
) -> None:
    smtp = deliver_to(settings, smtp_server, timeout=TIMEOUT, final_reply_timeout=TIMEOUT)
    smtp_server.enqueue("maybe@example.com", action)
    queue(engine, smtp, "maybe@example.com")
    drain(engine, smtp, NOW)
    row = row_for(engine, "maybe@example.com")
    assert row.status == "unknown"
    accepted_before = copies(smtp_server, "maybe@example.com")
    assert drain(engine, smtp, LATER).counts == {}  # never resent on its own

    assert row.id is not None
    with Session(engine) as session:
        assert recovery.requeue(session, [row.id], LATER) == {row.id: "unknown"}
    drain(engine, smtp, LATER)

    after = row_for(engine, "maybe@example.com")
    assert (after.status, after.message_id) == ("sent", row.message_id)
    # The human chose to resend: one more copy, which a receiver can recognise by its Message-ID.
    assert copies(smtp_server, "maybe@example.com") == [*accepted_before, row.message_id]


@contextmanager
def loopback_relay(talk: Callable[[socket.socket], None]) -> Iterator[int]:
    """A relay on loopback that lets ``talk`` speak on each connection it accepts; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                talk(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


def greeting_refused(
    reply: bytes = b"421 4.3.2 Service not available, closing channel\r\n",
) -> AbstractContextManager[int]:
    """A relay that answers every connection with ``reply`` and hangs up."""
    return loopback_relay(lambda conn: conn.sendall(reply))


def test_a_421_greeting_stops_the_pass_as_relay_unusable_and_leaves_every_row_queued_untried(
    engine: Engine, settings: Settings
) -> None:
    with greeting_refused() as port:
        smtp = replace(settings, transport=replace(settings.transport, kind="smtp", host="127.0.0.1", port=port,
                                                   security="none", timeout=TIMEOUT))
        queue(engine, smtp, "a@example.com", "b@example.com", "c@example.com")

        report = drain(engine, smtp, NOW)

    assert report.relay_down.startswith("421 4.3.2 Service not available")
    assert report.needs_a_human
    rows = [row_for(engine, f"{x}@example.com") for x in "abc"]
    assert [r.status for r in rows] == ["queued"] * 3
    assert sum(r.attempts for r in rows) == 1  # the pass stopped at the first: the rest were not tried in vain


def test_a_tls_handshake_failure_stops_the_pass_and_sends_nothing_in_clear(engine: Engine, settings: Settings) -> None:
    with SmtpServer(tls="starttls", untrusted=True) as server:
        smtp = deliver_to(settings, server, timeout=TIMEOUT)
        queue(engine, smtp, "a@example.com", "b@example.com")

        report = drain(engine, smtp, NOW)

        assert server.messages == []
    assert report.relay_down.startswith("TLS certificate refused")
    assert [row_for(engine, a).status for a in ("a@example.com", "b@example.com")] == ["queued", "queued"]


def test_the_reply_to_the_final_dot_may_take_longer_than_the_command_timeout(
    engine: Engine, settings: Settings, smtp_server: SmtpServer
) -> None:
    # RFC 5321 4.5.3.2.6: a relay may take minutes to answer the final dot (filters, antivirus).
    smtp = deliver_to(settings, smtp_server, timeout=1.0, final_reply_timeout=30.0)
    smtp_server.enqueue("slow@example.com", "stall:2")
    queue(engine, smtp, "slow@example.com")

    drain(engine, smtp, NOW)

    assert row_for(engine, "slow@example.com").status == "sent"
    assert len(copies(smtp_server, "slow@example.com")) == 1


@contextmanager
def scripted_relay(
    *, data_command: bytes = b"354 go on", final_reply: bytes = b"250 ok", pipelining: bool = False
) -> Iterator[tuple[int, list[bytes]]]:
    """A relay speaking just enough SMTP to answer DATA and the final dot as scripted.

    For what aiosmtpd will not say: a refused DATA command, or a reply to the final dot that is
    not SMTP at all. Yields its port and the commands it received, in order. With ``pipelining``
    it offers PIPELINING: it reads commands line by line, so a pipelined group is answered in turn.
    """
    seen: list[bytes] = []

    def talk(conn: socket.socket) -> None:
        with conn.makefile("rb") as lines:
            conn.sendall(b"220 relay.test ESMTP\r\n")
            for line in lines:
                command = line.strip().upper()
                seen.append(command)
                if command.startswith(b"EHLO"):
                    offers = b"250-PIPELINING\r\n" if pipelining else b""
                    conn.sendall(b"250-relay.test\r\n" + offers + b"250 8BITMIME\r\n")
                elif command == b"DATA":
                    conn.sendall(data_command + b"\r\n")
                    if data_command.startswith(b"354"):
                        for body_line in lines:
                            if body_line == b".\r\n":
                                break
                        conn.sendall(final_reply + b"\r\n")
                elif command == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    break
                else:  # MAIL, RCPT, RSET, NOOP
                    conn.sendall(b"250 ok\r\n")

    with loopback_relay(talk) as port:
        yield port, seen


def scripted_settings(settings: Settings, port: int) -> Settings:
    transport = replace(settings.transport, kind="smtp", host="127.0.0.1", port=port, security="none", timeout=TIMEOUT)
    return replace(settings, transport=transport)


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-by-one"])
def test_a_reply_to_the_final_dot_that_is_not_smtp_leaves_the_row_unknown(
    engine: Engine, settings: Settings, pipelining: bool
) -> None:
    with scripted_relay(final_reply=b"hello, I am not a mail server", pipelining=pipelining) as (port, _):
        smtp = scripted_settings(settings, port)
        queue(engine, smtp, "odd@example.com")

        drain(engine, smtp, NOW)

    row = row_for(engine, "odd@example.com")
    assert row.status == "unknown"  # only a real 4xx or 5xx proves the relay did not take it
    assert row.reason.startswith("unknown: unreadable reply")
    assert row.next_attempt_at is None


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-by-one"])
def test_a_refused_data_command_resets_the_session_and_the_next_message_goes_out_on_it(
    engine: Engine, settings: Settings, pipelining: bool
) -> None:
    with scripted_relay(data_command=b"451 4.3.0 not now", pipelining=pipelining) as (port, seen):
        smtp = scripted_settings(settings, port)
        queue(engine, smtp, "first@example.com", "second@example.com")

        drain(engine, smtp, NOW)

    assert [row_for(engine, a).reason for a in ("first@example.com", "second@example.com")] == [
        "retrying: 451 4.3.0 not now", "retrying: 451 4.3.0 not now"
    ]
    assert seen.count(b"RSET") == 2  # after each refusal the session was reset, not dropped
    assert sum(c.startswith(b"EHLO") for c in seen) == 1  # one connection served both messages
