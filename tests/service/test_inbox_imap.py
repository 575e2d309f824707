"""``mailer inbox`` over IMAP against a private Dovecot: the same verdicts as the Maildir, over verified TLS.

The samples of tests/support/data/inbox are APPENDed to a real IMAP folder after a real pass sent the
messages they answer; `mailer inbox` must leave the store and the folders as the Maildir path does.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from imapclient import DELETED, SEEN, IMAPClient
from sqlalchemy import Engine

from mailer.cli import cli
from tests.support.dovecot import PASSWORD, USER, Dovecot, DovecotUnavailable
from tests.support.factories import add_customer
from tests.support.inbox import PEOPLE, anniversary_rows, sample_bytes, sent_ids

DAY = date(2026, 11, 23)  # a Monday: everyone's anniversary goes out
PASSWORD_ENV = "MAILER_TEST_IMAP_PASSWORD"


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    try:
        server = Dovecot.create()
    except DovecotUnavailable as exc:
        pytest.skip(f"no private Dovecot IMAP server: {exc}")
    with server:
        yield server


def mailer(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def imap_section(server: Dovecot, security: str = "tls", **extra: str) -> str:
    port = server.tls_port if security == "tls" else server.port
    lines = {
        "kind": "imap", "host": server.host, "port": port, "security": security, "username": USER,
        "password_env": PASSWORD_ENV, "ca_file": str(server.ca_path), "processed_folder": "Processed/mailer",
        **extra,
    }
    body = "\n".join(f"{key} = {json.dumps(value)}" for key, value in lines.items())
    return f"\n[inbox]\n{body}\n"


def client(server: Dovecot) -> IMAPClient:
    context = ssl.create_default_context(cafile=str(server.ca_path))
    imap = IMAPClient(server.host, port=server.tls_port, ssl=True, ssl_context=context, timeout=10)
    imap.login(USER, PASSWORD)
    return imap


def folder(server: Dovecot, name: str) -> dict[bytes, tuple[bytes, ...]]:
    """Each message in the folder, by its bytes: its flags."""
    with client(server) as imap:
        if not imap.folder_exists(name):
            return {}
        imap.select_folder(name, readonly=True)
        fetched = imap.fetch(imap.search(["ALL"]), ["BODY.PEEK[]", "FLAGS"])
        imap.logout()
    return {data[b"BODY[]"]: data[b"FLAGS"] for data in fetched.values()}


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.fixture
def sent(project: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project after a pass mailed one customer per sample; the IMAP password in the environment."""
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    for n, address in enumerate(PEOPLE.values()):
        add_customer(engine, f"R{n}", since=date(2020, 11, 23), email=address)
    result = mailer(project, "run", "--date", DAY.isoformat())
    assert result.exit_code == 0, result.output
    return project


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_returned_mail_in_an_imap_folder_becomes_opt_outs_once_and_handled_mail_moves_to_the_processed_folder(
    sent: Path, engine: Engine, dovecot: Dovecot, security: str
) -> None:
    with sent.open("a", encoding="utf-8") as config:
        config.write(imap_section(dovecot, security))
    ids = sent_ids(engine)
    # IMAP stores messages with CRLF line ends, as they travel.
    samples = {name: crlf(sample_bytes(name, address, ids[address])) for name, address in PEOPLE.items()}
    samples["malformed-dsn"] = crlf(sample_bytes("malformed-dsn", "bea@example.com"))
    with client(dovecot) as imap:
        for data in samples.values():
            imap.append("INBOX", data)
        imap.logout()

    result = mailer(sent, "inbox")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "bounces 3, complaints 2, unsubscribes 1, auto-replies 1, left for a human 1, delays 1, malformed 1"
    )
    assert "INBOX UID 10: malformed: a delivery-status report naming no recipient" in result.stderr

    listing = json.loads(mailer(sent, "suppressions", "--format", "json").stdout)
    why = {(row["email"], row["state"]): row["source/reason"] for row in listing}
    assert set(why) == {
        ("bea@example.com", "suppressed"), ("eli@example.org", "suppressed"), ("gus@example.net", "suppressed"),
        ("yan@yahoo.example", "suppressed"), ("ola@outlook.example", "suppressed"),
        ("ann@example.com", "unsubscribed"),
    }
    assert why[("bea@example.com", "suppressed")].startswith("bounce: 5.1.1 550 5.1.1 <bea@example.com>")
    assert why[("yan@yahoo.example", "suppressed")] == "complaint"
    assert why[("ann@example.com", "unsubscribed")] == "mailto"
    statuses = anniversary_rows(engine)
    assert {a for a, (s, _) in statuses.items() if s == "bounced"} == {
        "bea@example.com", "eli@example.org", "gus@example.net"
    }

    # Handled mail moved, bytes unchanged, marked seen; the rest left in INBOX as it was, unread.
    left, processed = folder(dovecot, "INBOX"), folder(dovecot, "Processed/mailer")
    assert set(left) == {samples["human-reply"], samples["malformed-dsn"]}
    assert all(SEEN not in flags for flags in left.values())
    handled = {name for name in samples if name not in ("human-reply", "malformed-dsn")}
    assert set(processed) == {samples[name] for name in handled}
    assert all(SEEN in flags for flags in processed.values())

    again = mailer(sent, "inbox")
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == (
        "bounces 0, complaints 0, unsubscribes 0, auto-replies 0, left for a human 1, malformed 1"
    )
    assert json.loads(mailer(sent, "suppressions", "--format", "json").stdout) == listing
    assert anniversary_rows(engine) == statuses
    assert (set(folder(dovecot, "INBOX")), set(folder(dovecot, "Processed/mailer"))) == (set(left), set(processed))


def test_a_wrong_password_is_one_line_and_exit_status_1_and_the_password_is_never_shown(
    sent: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sent.open("a", encoding="utf-8") as config:
        config.write(imap_section(dovecot))
    monkeypatch.setenv(PASSWORD_ENV, "not the password")

    result = mailer(sent, "inbox")

    assert result.exit_code == 1
    assert result.stdout == ""
    where = f"{USER}@{dovecot.host}:{dovecot.tls_port}/INBOX"
    assert result.stderr.strip().splitlines() == [
        f"error: {where}: login refused: [AUTHENTICATIONFAILED] Authentication failed."
    ]
    assert "not the password" not in result.output and "Traceback" not in result.output


def test_a_server_whose_certificate_is_not_trusted_is_refused_with_exit_status_1(
    sent: Path, dovecot: Dovecot
) -> None:
    # Without ca_file the system's CAs are trusted, and they never signed the test server's certificate.
    section = imap_section(dovecot).replace(f'ca_file = "{dovecot.ca_path}"\n', "")
    with sent.open("a", encoding="utf-8") as config:
        config.write(section)

    result = mailer(sent, "inbox")

    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {USER}@{dovecot.host}:{dovecot.tls_port}/INBOX: cannot connect: ")
    assert "CERTIFICATE_VERIFY_FAILED" in line
    assert "Login" not in dovecot.log()  # the password never went out


def test_a_missing_password_variable_is_a_configuration_error_with_exit_status_2(
    project: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with project.open("a", encoding="utf-8") as config:
        config.write(imap_section(dovecot))

    result = mailer(project, "inbox")

    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: mailer.toml: [inbox] password_env: environment variable {PASSWORD_ENV} is not set"
    )


def test_without_move_a_handled_message_is_copied_then_expunged_by_its_uid_and_nothing_else_is(
    sent: Path, engine: Engine
) -> None:
    try:
        server = Dovecot.create(capabilities="IMAP4rev1 LITERAL+ UIDPLUS")  # an older server: no RFC 6851 MOVE
    except DovecotUnavailable as exc:
        pytest.skip(f"no private Dovecot IMAP server: {exc}")
    with server:
        with sent.open("a", encoding="utf-8") as config:
            config.write(imap_section(server))
        unsubscribe = crlf(sample_bytes("mailto-unsubscribe", PEOPLE["mailto-unsubscribe"]))
        reply = crlf(sample_bytes("human-reply", PEOPLE["human-reply"]))
        with client(server) as imap:
            imap.append("INBOX", unsubscribe)
            imap.append("INBOX", reply, flags=[b"\\Deleted"])  # someone's own deletion, not yet expunged
            imap.append("INBOX", reply)
            imap.logout()

        result = mailer(sent, "inbox")

        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == "bounces 0, complaints 0, unsubscribes 1, auto-replies 0, left for a human 1"
        [(moved, flags)] = folder(server, "Processed/mailer").items()
        assert moved == unsubscribe and SEEN in flags
        # The reply left for a human and the message someone else deleted are both still there, as they were.
        with client(server) as imap:
            imap.select_folder("INBOX", readonly=True)
            left = imap.fetch(imap.search(["ALL"]), ["BODY.PEEK[]", "FLAGS"])
            imap.logout()
        assert sorted((data[b"BODY[]"] == reply, DELETED in data[b"FLAGS"], SEEN in data[b"FLAGS"])
                      for data in left.values()) == [(True, False, False), (True, True, False)]
