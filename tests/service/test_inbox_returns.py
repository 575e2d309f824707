"""What only the envelope tells: a VERP-tagged DSN without the original message, a mail to the tagged
unsubscribe address, and transient failures adding up to a soft-bounce suppression (`mailer inbox`, Maildir)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select
from sqlmodel import Session, col

from mailer.cli import cli
from mailer.compose.tokens import mailto_token
from mailer.config import load_settings
from mailer.store.tables import Customer, SendLog
from tests.support.factories import add_customer
from tests.support.inbox import anniversary_rows, sample_bytes, sent_ids

DAY = date(2026, 11, 23)
PEOPLE = ("ann@example.com", "bea@example.com", "cal@example.com")


def mailer(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


@pytest.fixture
def project_sent(project: Path, engine: Engine) -> Path:
    """A project with a VERP bounce address and an [inbox] Maildir, after a pass mailed PEOPLE."""
    text = project.read_text(encoding="utf-8").replace(
        "[sender]\n", '[sender]\nbounce_address = "bounces@northwind.example"\nverp = true\n', 1
    )
    text += '\n[inbox]\nkind = "maildir"\npath = "inbox"\nsoft_bounce_limit = 3\nsoft_bounce_days = 14\n'
    project.write_text(text, encoding="utf-8")
    for sub in ("new", "cur", "tmp"):
        (project.parent / "inbox" / sub).mkdir(parents=True)
    for n, address in enumerate(PEOPLE):
        add_customer(engine, f"V{n}", since=date(2020, 11, 23), email=address)
    result = mailer(project, "run", "--date", DAY.isoformat())
    assert result.exit_code == 0, result.output
    return project


def drop(project: Path, name: str, data: bytes) -> Path:
    file = project.parent / "inbox" / "new" / name
    file.write_bytes(data)
    return file


def opted_out(project: Path) -> dict[tuple[str, str], str]:
    listing = json.loads(mailer(project, "suppressions", "--format", "json").stdout)
    return {(row["email"], row["state"]): row["source/reason"] for row in listing}


def customer_id(engine: Engine, email: str) -> int:
    with Session(engine) as session:
        found = session.execute(select(col(Customer.id)).where(col(Customer.email) == email)).scalar_one()
    assert found is not None
    return found


def test_a_dsn_without_the_original_message_is_matched_to_its_row_by_the_verp_envelope(
    project_sent: Path, engine: Engine
) -> None:
    ref = sent_ids(engine)["bea@example.com"].strip("<>").partition("@")[0]
    data = sample_bytes("verp-bounce", "bea@example.com", envelope=f"bounces+{ref}@northwind.example")
    assert b"Message-ID: <" + ref.encode() not in data  # nothing of the message came back but the envelope
    drop(project_sent, "1.verp.mx1", data)

    result = mailer(project_sent, "inbox")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip().startswith("bounces 1,")
    what = "5.2.1 mailbox disabled, not accepting messages"
    assert anniversary_rows(engine)["bea@example.com"] == ("bounced", f"bounced: {what}")
    assert opted_out(project_sent) == {("bea@example.com", "suppressed"): f"bounce: {what}"}


def test_mail_to_the_tagged_unsubscribe_address_unsubscribes_the_tokens_customer_whoever_sends_it(
    project_sent: Path, engine: Engine
) -> None:
    secret = load_settings(project_sent).sender.secret.reveal()
    token = mailto_token(secret, customer_id(engine, "cal@example.com"))
    # Forwarded from another mailbox: the From address is nobody's, the token is Cal's.
    drop(project_sent, "1.tagged.mx1", (
        f"From: Cal at work <cal.smith@work.example>\nTo: unsubscribe+{token.upper()}@northwind.example\n"
        "Subject: unsubscribe\nMessage-ID: <u1@work.example>\n\nunsubscribe\n"
    ).encode())
    # A token that is not ours: the From address decides.
    drop(project_sent, "2.forged.mx1", (
        b"From: Ann <ann@example.com>\nTo: unsubscribe+1-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@northwind.example\n"
        b"Subject: unsubscribe\nMessage-ID: <u2@example.com>\n\nstop\n"
    ))

    result = mailer(project_sent, "inbox")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "bounces 0, complaints 0, unsubscribes 2, auto-replies 0, left for a human 0"
    assert "2.forged.mx1: the unsubscribe address's token is not ours (bad signature)" in result.stderr
    assert opted_out(project_sent) == {
        ("cal@example.com", "unsubscribed"): "mailto",
        ("ann@example.com", "unsubscribed"): "mailto",
    }


def test_transient_failures_of_three_messages_suppress_the_address_and_warnings_about_one_message_count_once(
    project_sent: Path, engine: Engine
) -> None:
    # Three "delayed" notices about the same message, then about two more messages.
    for n in range(3):
        drop(project_sent, f"1.same-{n}.mx1", sample_bytes("postfix-delayed", "ann@example.com", "<m1@n.example>"))
    result = mailer(project_sent, "inbox")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("left for a human 0, delays 3")
    assert opted_out(project_sent) == {}

    drop(project_sent, "2.other.mx1", sample_bytes("postfix-delayed", "ann@example.com", "<m2@n.example>"))
    assert mailer(project_sent, "inbox").exit_code == 0
    assert opted_out(project_sent) == {}

    drop(project_sent, "3.third.mx1", sample_bytes("postfix-delayed", "ann@example.com", "<m3@n.example>"))
    assert mailer(project_sent, "inbox").exit_code == 0
    [(key, reason)] = opted_out(project_sent).items()
    assert key == ("ann@example.com", "suppressed")
    assert reason.startswith("bounce: 3 transient failures in 14 days (last: 4.4.1 ")
    with Session(engine) as session:
        statuses = set(session.execute(select(col(SendLog.status))).scalars())
    assert statuses == {"sent"}  # a transient failure marks no row: the message may still arrive
