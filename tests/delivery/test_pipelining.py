"""PIPELINING (RFC 2920): MAIL FROM, RCPT TO and DATA in one write, every outcome the same as one command at a time.

Each case sends one message through SmtpTransport to a real aiosmtpd server that misbehaves as
scripted, then a second message on the same transport, once with a server that offers PIPELINING
and once with one that does not. The results, the session afterwards (reset, or dropped and
reopened) and what the server holds must be the same both ways. A Wiretap between the two records
what the client wrote in each read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from mailer.config import TransportSettings
from mailer.delivery.transport import Outcome, SendResult, SmtpTransport, Stage
from tests.support.smtpserver import SmtpServer
from tests.support.wiretap import Wiretap

SENDER = "shop@northwind.example"
FAULT = "fault@example.com"
NEXT = "next@example.com"
MESSAGE = b"From: <shop@northwind.example>\r\nSubject: hello\r\n\r\nhello\r\n"
TIMEOUT = 1.0
DATA_ANYWAY = "354 End data with <CR><LF>.<CR><LF>"  # a lax server: DATA accepted with no recipient
NO_VALID_RECIPIENTS = "554 5.5.1 Error: no valid recipients"  # Postfix's words

DELIVERED, TEMPORARY, PERMANENT, UNKNOWN = Outcome.DELIVERED, Outcome.TEMPORARY, Outcome.PERMANENT, Outcome.UNKNOWN


@dataclass(frozen=True)
class Case:
    action: str  # the server's script: for FAULT, or for SENDER when it starts with "mail:"
    outcome: Outcome
    stage: Stage
    reply: str  # how the result's reply starts
    connections: int = 1  # 2 when the first session had to be dropped
    data_without_recipients: str | None = None  # the server's reply to a DATA with no recipient accepted


CASES = {
    "delivered": Case("ok", DELIVERED, Stage.DATA, "250 OK"),
    "451 at MAIL": Case("mail:451 4.3.0 sender check failed", TEMPORARY, Stage.MAIL, "451 4.3.0 sender check failed"),
    "550 at MAIL": Case("mail:550 5.7.1 sender refused", TEMPORARY, Stage.MAIL, "550 5.7.1 sender refused"),
    "451 at MAIL, DATA 354 all the same": Case(
        "mail:451 4.3.0 sender check failed", TEMPORARY, Stage.MAIL, "451 4.3.0", data_without_recipients=DATA_ANYWAY
    ),
    "421 at MAIL": Case("mail:421 4.3.2 closing", TEMPORARY, Stage.MAIL, "421 4.3.2 closing", 2),
    "drop at MAIL": Case("mail:drop", TEMPORARY, Stage.MAIL, "connection lost", 2),
    "550 5.1.1 at RCPT, DATA 503": Case("rcpt:550 5.1.1 no such user", PERMANENT, Stage.RCPT, "550 5.1.1 no such user"),
    "550 5.1.1 at RCPT, DATA 554": Case(
        "rcpt:550 5.1.1 no such user", PERMANENT, Stage.RCPT, "550 5.1.1", data_without_recipients=NO_VALID_RECIPIENTS
    ),
    "550 5.1.1 at RCPT, DATA 354": Case(
        "rcpt:550 5.1.1 no such user", PERMANENT, Stage.RCPT, "550 5.1.1", data_without_recipients=DATA_ANYWAY
    ),
    "451 at RCPT": Case("rcpt:451 4.3.0 try later", TEMPORARY, Stage.RCPT, "451 4.3.0 try later"),
    "421 at RCPT": Case("rcpt:421 4.3.2 shutting down", TEMPORARY, Stage.RCPT, "421 4.3.2 shutting down", 2),
    "drop at RCPT, after the group was sent": Case("rcpt:drop", TEMPORARY, Stage.RCPT, "connection lost", 2),
    "timeout at RCPT": Case("rcpt:stall:30", TEMPORARY, Stage.RCPT, f"timed out after {TIMEOUT:g}s", 2),
    "drop at DATA, before the message": Case("hangup", TEMPORARY, Stage.DATA, "connection lost", 2),
    "554 after the final dot": Case("554 5.7.1 spam", PERMANENT, Stage.DATA, "554 5.7.1 spam"),
    "421 after the final dot": Case("421 4.3.2 bye", TEMPORARY, Stage.DATA, "421 4.3.2 bye", 2),
    "drop after the final dot": Case("drop", UNKNOWN, Stage.REPLY, "connection lost", 2),
    "timeout after the final dot": Case("stall:30", UNKNOWN, Stage.REPLY, f"timed out after {TIMEOUT:g}s", 2),
    "delivered, then the line dropped": Case("lost-reply", UNKNOWN, Stage.REPLY, "connection lost", 2),
}


def relay(port: int) -> TransportSettings:
    return TransportSettings(
        kind="smtp", host="127.0.0.1", port=port, security="none", timeout=TIMEOUT, final_reply_timeout=TIMEOUT,
        helo_name="mailer.test",
    )


@dataclass(frozen=True)
class Seen:
    first: SendResult
    then: SendResult  # the next message, on the same transport
    held: list[tuple[str, ...]]  # the recipients of each message the server accepted
    connections: int
    resets: int  # RSETs the client sent
    orphan_data: list[bytes]  # what the client sent after a 354 to a DATA without recipients


def send_two(case: Case, *, pipelining: bool) -> Seen:
    script = {SENDER if case.action.startswith("mail:") else FAULT: [case.action]}
    server = SmtpServer(script=script, pipelining=pipelining, data_without_recipients=case.data_without_recipients)
    with server, Wiretap(server.host, server.port) as tap:
        with SmtpTransport(relay(tap.port)) as transport:
            first = transport.send_wire(SENDER, FAULT, MESSAGE)
            then = transport.send_wire(SENDER, NEXT, MESSAGE)
        held = [m.rcpt_tos for m in server.messages]
        orphans = server.orphan_data
    return Seen(first, then, held, tap.connections, b"".join(tap.reads).upper().count(b"RSET\r\n"), orphans)


@pytest.mark.parametrize("name", CASES)
def test_each_reply_is_classified_the_same_pipelined_as_one_command_at_a_time(name: str) -> None:
    case = CASES[name]

    pipelined = send_two(case, pipelining=True)
    one_by_one = send_two(case, pipelining=False)

    first = pipelined.first
    assert (first.outcome, first.stage, first.reply[: len(case.reply)]) == (case.outcome, case.stage, case.reply)
    assert pipelined.then.outcome is DELIVERED  # the session was reset, or dropped and reopened
    assert pipelined.connections == case.connections
    refused_and_kept = case.stage in (Stage.MAIL, Stage.RCPT) and case.connections == 1
    assert pipelined.resets == (1 if refused_and_kept else 0)  # a final dot ends the transaction by itself
    # Only a pipelining client sends DATA before it knows that MAIL or RCPT was refused; a relay
    # that answers it 354 all the same gets a lone dot (RFC 2920 3.1), never the message.
    assert pipelined.orphan_data == ([b""] if case.data_without_recipients == DATA_ANYWAY else [])
    assert one_by_one.orphan_data == []
    assert replace(pipelined, orphan_data=[]) == one_by_one


def test_a_pipelining_client_waits_twice_per_message_instead_of_four_times() -> None:
    addresses = [f"r{n}@example.com" for n in range(3)]
    reads = {}
    for pipelining in (True, False):
        server = SmtpServer(pipelining=pipelining)
        with server, Wiretap(server.host, server.port) as tap:
            with SmtpTransport(relay(tap.port)) as transport:
                for address in addresses:
                    assert transport.send_wire(SENDER, address, MESSAGE).outcome is DELIVERED
            assert [m.rcpt_tos for m in server.messages] == [(a,) for a in addresses]
        reads[pipelining] = tap.reads

    ehlo, *transactions, quit_ = reads[True]
    assert (ehlo, quit_) == (b"ehlo mailer.test\r\n", b"quit\r\n")  # smtplib writes these in lower case
    mail, body = f"MAIL FROM:<{SENDER}>\r\n".encode(), MESSAGE + b".\r\n"
    assert transactions == [
        write for a in addresses for write in (mail + f"RCPT TO:<{a}>\r\n".encode() + b"DATA\r\n", body)
    ]
    assert reads[False][1:-1] == [
        write for a in addresses for write in (mail, f"RCPT TO:<{a}>\r\n".encode(), b"DATA\r\n", body)
    ]


def test_a_pipelined_group_carries_the_smtputf8_and_8bitmime_parameters() -> None:
    sender = "zoë@northwind.example"  # a local part that is not ASCII: only SMTPUTF8 can carry it
    with SmtpServer() as server, Wiretap(server.host, server.port) as tap:
        with SmtpTransport(relay(tap.port)) as transport:
            assert transport.send_wire(sender, "ann@example.com", MESSAGE).outcome is DELIVERED
        [message] = server.messages
    assert message.mail_from == sender
    assert message.mail_options == ("SMTPUTF8", "BODY=8BITMIME")
    assert f"MAIL FROM:<{sender}> SMTPUTF8 BODY=8BITMIME\r\nRCPT TO:<ann@example.com>\r\nDATA\r\n".encode() in tap.reads
