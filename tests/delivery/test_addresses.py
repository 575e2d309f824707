"""Addresses beyond ASCII, against a real SMTP server: IDNA domains in ASCII, SMTPUTF8 only where it must be."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer.addresses import AddressError, ascii_domain, needs_smtputf8, wire_address
from mailer.compose.message import Envelope, build_message
from mailer.compose.render import Rendered
from mailer.config import ConfigError, Settings, load_settings
from mailer.delivery import drain as delivery
from mailer.delivery.transport import NO_SMTPUTF8, MaildirTransport, SmtpTransport, default_helo_name
from mailer.store.tables import SendLog
from tests.support.factories import deliver_to, queue_anniversaries
from tests.support.smtpserver import SmtpServer

DAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("address", "on_the_wire", "utf8"),
    [
        ("anna@bücher.example", "anna@xn--bcher-kva.example", False),
        ("anna@xn--bcher-kva.example", "anna@xn--bcher-kva.example", False),
        ("anna@BÜCHER.example", "anna@xn--bcher-kva.example", False),
        ("Anna@Example.ORG", "Anna@example.org", False),  # the local part is the mailbox's own business
        ("jürgen@example.org", "jürgen@example.org", True),
        ("jürgen@bücher.example", "jürgen@xn--bcher-kva.example", True),
    ],
)
def test_a_domain_travels_in_a_labels_and_only_a_non_ascii_local_part_needs_smtputf8(
    address: str, on_the_wire: str, utf8: bool
) -> None:
    assert wire_address(address) == on_the_wire
    assert needs_smtputf8(address) is utf8


def test_a_domain_idna_cannot_write_is_refused_with_a_reason() -> None:
    with pytest.raises(AddressError, match="cannot be written in IDNA"):
        ascii_domain("a\u200db.example")  # a zero-width joiner outside its allowed context


def queue(engine: Engine, settings: Settings, *addresses: str) -> None:
    queue_anniversaries(engine, settings, addresses, day=DAY, now=NOW, first_name="Jürgen")


def statuses(engine: Engine) -> dict[str, tuple[str, str]]:
    with Session(engine) as session:
        return {r.to_address: (r.status, r.reason) for r in session.execute(select(SendLog)).scalars()}


def test_an_idn_address_reaches_the_server_in_ascii_in_the_envelope_and_the_to_header(
    engine: Engine, settings: Settings
) -> None:
    with SmtpServer(smtputf8=False) as server:
        smtp = deliver_to(settings, server)
        queue(engine, smtp, "anna@bücher.example")
        report = delivery.drain(engine, smtp, lambda: SmtpTransport(smtp.transport), now=lambda: NOW)
        [message] = server.messages

    assert report.counts == {"sent": 1}
    assert message.rcpt_tos == ("anna@xn--bcher-kva.example",)
    assert "SMTPUTF8" not in message.mail_options
    assert message.data.isascii()  # nothing in it needs more than ASCII
    assert message.parsed()["To"].addresses[0].addr_spec == "anna@xn--bcher-kva.example"
    assert b"=?utf-8?" not in message.data.split(b"\r\n\r\n")[0].split(b"To:")[1].split(b"\r\n")[0].split(b"<")[1]


def test_a_non_ascii_local_part_goes_over_smtputf8_with_raw_utf8_headers(engine: Engine, settings: Settings) -> None:
    with SmtpServer(smtputf8=True) as server:
        smtp = deliver_to(settings, server)
        queue(engine, smtp, "jürgen@example.org")
        report = delivery.drain(engine, smtp, lambda: SmtpTransport(smtp.transport), now=lambda: NOW)
        [message] = server.messages

    assert report.counts == {"sent": 1}
    assert message.rcpt_tos == ("jürgen@example.org",)
    assert "SMTPUTF8" in message.mail_options
    head = message.data.split(b"\r\n\r\n")[0].decode("utf-8")
    assert "<jürgen@example.org>" in head  # RFC 6532: the address itself, not an encoded word
    parsed = email.message_from_string(message.data.decode("utf-8"), policy=email.policy.default)
    assert parsed["To"].addresses[0].addr_spec == "jürgen@example.org"


def test_without_smtputf8_that_one_recipient_fails_at_once_and_the_rest_of_the_pass_goes_on(
    engine: Engine, settings: Settings
) -> None:
    with SmtpServer(smtputf8=False) as server:
        smtp = deliver_to(settings, server)
        queue(engine, smtp, "ann@example.org", "jürgen@example.org", "bob@example.org")
        report = delivery.drain(engine, smtp, lambda: SmtpTransport(smtp.transport), now=lambda: NOW)
        delivered = sorted(r for m in server.messages for r in m.rcpt_tos)

    assert delivered == ["ann@example.org", "bob@example.org"]
    assert statuses(engine)["jürgen@example.org"] == ("failed", f"failed: {NO_SMTPUTF8}")
    assert report.counts == {"sent": 2, "failed": 1}
    assert not report.relay_down


def test_the_maildir_transport_writes_a_non_ascii_address_as_utf8(tmp_path: Path, settings: Settings) -> None:
    envelope = Envelope("jürgen@bücher.example", "Jürgen", "", "", "https://x.example/u/t")
    msg = build_message(Rendered("Hallo", "<p>Hallo</p>", "Hallo"), envelope, settings.sender)
    with MaildirTransport(tmp_path) as folder:
        folder.send(settings.sender.from_address, envelope.to_address, msg)
    [written] = (tmp_path / "new").iterdir()
    assert "To: Jürgen <jürgen@xn--bcher-kva.example>" in written.read_bytes().decode("utf-8")


def test_the_client_greets_the_relay_with_the_configured_helo_name(settings: Settings) -> None:
    with SmtpServer() as server:
        smtp = deliver_to(settings, server, helo_name="mail.northwind.example")
        with SmtpTransport(smtp.transport) as transport:
            transport.send_wire(settings.sender.from_address, "ann@example.org", b"Subject: hi\r\n\r\nhi\r\n")
        [message] = server.messages
    assert message.helo == "mail.northwind.example"


def test_the_default_helo_name_is_never_localhost() -> None:
    helo = default_helo_name("bücher.example")
    assert "." in helo and not helo.startswith("localhost")
    assert helo.isascii()  # the From domain, when it is the fallback, in A-labels


def test_a_helo_name_that_is_not_a_host_name_is_a_config_error(project: Path) -> None:
    project.write_text(project.read_text().replace("[transport]\n", '[transport]\nhelo_name = "bad name"\n'))
    with pytest.raises(ConfigError, match=r"\[transport\] helo_name: not a host name: 'bad name'"):
        load_settings(project)


def test_a_reply_to_with_a_non_ascii_local_part_makes_the_headers_utf8_and_needs_smtputf8(
    engine: Engine, settings: Settings
) -> None:
    queue_anniversaries(engine, settings, ["ann@example.org"], day=DAY, now=NOW,
                        owner_email="jörg@northwind.example", owner_name="Jörg")
    with SmtpServer(smtputf8=False) as ascii_only:
        smtp = deliver_to(settings, ascii_only)
        delivery.drain(engine, smtp, lambda: SmtpTransport(smtp.transport), now=lambda: NOW)
        assert ascii_only.messages == []
    assert statuses(engine)["ann@example.org"] == ("failed", f"failed: {NO_SMTPUTF8}")

    message = build_message(Rendered("Hi", "<p>Hi</p>", "Hi"),
                            Envelope("ann@example.org", "Ann", "jörg@northwind.example", "Jörg", "https://x.example/u/t"),
                            settings.sender)
    head = message.as_bytes().split(b"\n\n")[0].decode("utf-8")
    assert "Reply-To: Jörg <jörg@northwind.example>" in head  # the address itself, never an encoded word
