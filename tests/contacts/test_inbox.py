"""``mailer inbox`` on a real project: returned mail from a real maildir pass ends in the opt-out columns."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer.cli import cli
from mailer.store.tables import Customer, SendLog
from tests.support.factories import add_customer
from tests.support.inbox import PEOPLE, sample_bytes, sent_ids
from tests.support.inbox import anniversary_rows as rows

DAY = date(2026, 11, 23)  # a Monday: the anniversary of everyone below goes out
LATER = date(2026, 12, 1)  # everyone's birthday, past the 7-day frequency cap


def mailer(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


@pytest.fixture
def inbox_project(project: Path, engine: Engine) -> Path:
    """The project with an [inbox] Maildir, and one customer per sample whose anniversary went out on DAY."""
    with project.open("a", encoding="utf-8") as config:
        config.write('\n[inbox]\nkind = "maildir"\npath = "inbox"\n')
    for sub in ("new", "cur", "tmp"):
        (project.parent / "inbox" / sub).mkdir(parents=True)
    for n, address in enumerate(PEOPLE.values()):
        add_customer(engine, f"R{n}", since=date(2020, 11, 23), email=address, birthday=date(1990, 12, 1))
    result = mailer(project, "run", "--date", DAY.isoformat())
    assert result.exit_code == 0, result.output
    return project


def drop_samples(project: Path, engine: Engine) -> None:
    ids = sent_ids(engine)
    for name, address in PEOPLE.items():
        assert ids[address].startswith("<"), ids[address]
        (project.parent / "inbox" / "new" / f"1795428312.{name}.mx1").write_bytes(
            sample_bytes(name, address, ids[address])
        )


def test_bounces_complaints_and_unsubscribes_become_opt_outs_once_and_the_next_pass_mails_none_of_them(
    inbox_project: Path, engine: Engine
) -> None:
    drop_samples(inbox_project, engine)

    result = mailer(inbox_project, "inbox")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        "bounces 3, complaints 2, unsubscribes 1, auto-replies 1, left for a human 1, delays 1"
    )

    listing = json.loads(mailer(inbox_project, "suppressions", "--format", "json").output)
    why = {(row["email"], row["state"]): row["source/reason"] for row in listing}
    assert why == {
        ("bea@example.com", "suppressed"): "bounce: 5.1.1 550 5.1.1 <bea@example.com>: Recipient address "
        "rejected: User unknown in virtual mailbox table",
        ("eli@example.org", "suppressed"): "bounce: 5.0.0 550 5.1.1 The email account that you tried to reach "
        "does not exist",
        ("gus@example.net", "suppressed"): why[("gus@example.net", "suppressed")],
        ("yan@yahoo.example", "suppressed"): "complaint",
        ("ola@outlook.example", "suppressed"): "complaint",
        ("ann@example.com", "unsubscribed"): "mailto",
    }
    assert why[("gus@example.net", "suppressed")].startswith("bounce: 5.1.1 550-5.1.1 The email account")

    statuses = rows(engine)
    for address in ("bea@example.com", "eli@example.org", "gus@example.net"):
        assert statuses[address] == ("bounced", "bounced: " + why[(address, "suppressed")].removeprefix("bounce: "))
    assert {a: s for a, (s, _) in statuses.items() if s != "bounced"} == dict.fromkeys(
        ("dan@example.info", "yan@yahoo.example", "ola@outlook.example", "ann@example.com", "hugo@example.com",
         "ida@example.org"), "sent"
    )

    inbox = inbox_project.parent / "inbox"
    assert [p.name for p in (inbox / "new").iterdir()] == ["1795428312.human-reply.mx1"]
    processed = sorted(p.name for p in (inbox / ".processed" / "cur").iterdir())
    assert len(processed) == 8 and all(name.endswith(":2,S") for name in processed)
    kept = (inbox / ".processed" / "cur" / "1795428312.yahoo-complaint.mx1:2,S").read_bytes()
    assert kept == sample_bytes("yahoo-complaint", PEOPLE["yahoo-complaint"], sent_ids(engine)["yan@yahoo.example"])

    again = mailer(inbox_project, "inbox")
    assert again.exit_code == 0, again.output
    assert again.output.strip() == "bounces 0, complaints 0, unsubscribes 0, auto-replies 0, left for a human 1"
    assert json.loads(mailer(inbox_project, "suppressions", "--format", "json").output) == listing
    assert rows(engine) == statuses

    later = mailer(inbox_project, "run", "--date", LATER.isoformat())
    assert later.exit_code == 0, later.output
    with Session(engine) as session:
        birthdays = dict(
            session.execute(
                select(Customer.email, SendLog.status)
                .join(Customer, Customer.id == SendLog.customer_id)  # type: ignore[arg-type]
                .where(SendLog.campaign == "birthday")  # type: ignore[arg-type]
            ).all()
        )
    opted_out = {email for email, _ in why}
    assert {email: status for email, status in birthdays.items() if email in opted_out} == dict.fromkeys(
        opted_out, "skipped"
    )
    assert {email: birthdays[email] for email in ("dan@example.info", "hugo@example.com", "ida@example.org")} == (
        dict.fromkeys(("dan@example.info", "hugo@example.com", "ida@example.org"), "sent")
    )


def test_a_malformed_report_is_left_in_place_and_logged_with_its_reason(
    inbox_project: Path, engine: Engine
) -> None:
    file = inbox_project.parent / "inbox" / "new" / "1795428312.broken.mx1"
    file.write_bytes(sample_bytes("malformed-dsn", "bea@example.com"))
    result = mailer(inbox_project, "inbox")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("malformed 1")
    assert file.exists()
    assert f"inbox {file.name}: malformed: a delivery-status report naming no recipient" in result.stderr
    assert json.loads(mailer(inbox_project, "suppressions", "--format", "json").output) == []


def test_without_an_inbox_section_the_command_is_one_line_and_exit_status_2(project: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(project), "inbox"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: mailer.toml: no [inbox] section; add one to read bounces and complaints"


def test_an_inbox_path_that_is_not_a_maildir_is_one_line(project: Path) -> None:
    with project.open("a", encoding="utf-8") as config:
        config.write('\n[inbox]\nkind = "maildir"\npath = "nowhere"\n')
    result = CliRunner().invoke(cli, ["--config", str(project), "inbox"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: [inbox] path: {project.parent / 'nowhere'} is not a Maildir folder (it needs new/ and cur/)"
    )
