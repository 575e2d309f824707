"""Opting out from the CLI: unsubscribe, suppress, unsuppress, the listing; passes honour them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer.cli import cli
from mailer.config import Settings
from mailer.contacts import importer, optout
from mailer.delivery import drain as delivery
from mailer.delivery.transport import MaildirTransport
from mailer.outbox import decisions
from mailer.planning import plan as planning
from mailer.planning.clock import PassClock
from mailer.store.tables import Customer, SendLog
from tests.support.factories import add_customer

DAY = date(2026, 11, 23)
CSV = """\
external_id,email,first_name,last_name,customer_since,birthday,timezone,tags,owner_name,owner_email
B1,ann@example.com,Ann,Lee,2020-03-01,--11-23,Europe/London,,,
B2,bob@example.com,Bob,Ray,2021-04-02,--11-23,Europe/London,,,
B3,Ann@Example.com,Annie,Lee,2022-05-03,--11-23,Europe/London,,,
"""


@pytest.fixture
def people(project: Path, engine: Engine) -> Path:
    """Three customers whose birthday is DAY; two share an address (in different case)."""
    path = project.parent / "people.csv"
    path.write_text(CSV, encoding="utf-8")
    importer.import_customers(engine, path)
    return project


def mailer(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


def customer(engine: Engine, external_id: str) -> Customer:
    with Session(engine) as session:
        found = session.execute(
            select(Customer).where(Customer.external_id == external_id)
        ).scalar_one()  # type: ignore[arg-type]
        return found


def statuses(engine: Engine) -> dict[str, tuple[str, str]]:
    with Session(engine) as session:
        rows = session.execute(
            select(Customer.external_id, SendLog.status, SendLog.reason)
            .join(Customer, Customer.id == SendLog.customer_id)  # type: ignore[arg-type]
            .where(SendLog.campaign == "birthday")  # type: ignore[arg-type]
        ).all()
    return {external_id: (status, reason) for external_id, status, reason in rows}


def test_unsubscribe_records_time_and_source_for_every_customer_with_the_address(
    people: Path, engine: Engine
) -> None:
    before = datetime.now(UTC)
    result = mailer(people, "unsubscribe", "ANN@example.com")
    assert result.exit_code == 0, result.output
    assert "2 customers unsubscribed" in result.output
    for external_id in ("B1", "B3"):
        found = customer(engine, external_id)
        assert found.unsubscribe_source == "cli"
        assert found.unsubscribed_at is not None and found.unsubscribed_at >= before
    assert customer(engine, "B2").unsubscribed_at is None


def test_the_next_pass_sends_nothing_to_an_unsubscribed_customer(
    people: Path, engine: Engine, settings: Settings
) -> None:
    assert mailer(people, "unsubscribe", "ann@example.com").exit_code == 0
    result = mailer(people, "run", "--date", DAY.isoformat())
    assert result.exit_code == 0, result.output
    assert statuses(engine) == {
        "B1": ("skipped", "unsubscribed"),
        "B2": ("sent", "delivered"),
        "B3": ("skipped", "unsubscribed"),
    }
    delivered = list((settings.transport.path / "new").glob("*.eml"))
    assert [p.read_bytes().count(b"bob@example.com") > 0 for p in delivered] == [True]


def test_an_unsubscribe_after_planning_stops_the_delivery(
    people: Path, engine: Engine, settings: Settings
) -> None:
    clock = PassClock.on(DAY)
    campaigns = [settings.campaign("birthday")]
    with Session(engine, expire_on_commit=False) as session:
        planned = planning.plan(session, settings, clock, campaigns)
        decisions.record(session, planned, {c.name: c for c in campaigns}, clock.now)
    assert {s for s, _ in statuses(engine).values()} == {"queued"}

    assert (
        optout.unsubscribe(engine, customer(engine, "B2").id or 0, optout.Source.ONE_CLICK)
        is optout.Change.CHANGED
    )
    delivery.drain(engine, settings, MaildirTransport(settings.transport.path))
    assert statuses(engine)["B2"] == ("skipped", "unsubscribed before delivery")
    assert not any(
        b"bob@example.com" in p.read_bytes()
        for p in (settings.transport.path / "new").glob("*.eml")
    )


def test_unsubscribing_twice_is_harmless_and_the_first_source_stays(
    people: Path, engine: Engine
) -> None:
    assert mailer(people, "unsubscribe", "bob@example.com", "--source", "mailto").exit_code == 0
    first = customer(engine, "B2")
    again = mailer(people, "unsubscribe", "bob@example.com")
    assert again.exit_code == 0
    assert "1 already unsubscribed" in again.output
    second = customer(engine, "B2")
    assert (second.unsubscribed_at, second.unsubscribe_source) == (first.unsubscribed_at, "mailto")


def test_an_unknown_address_is_one_clear_error(people: Path) -> None:
    result = mailer(people, "unsubscribe", "nobody@example.com")
    assert result.exit_code == 2
    assert result.output.strip() == "error: no customer has the address nobody@example.com"


def test_suppress_unsuppress_and_the_listing(people: Path, engine: Engine) -> None:
    assert mailer(people, "suppress", "bob@example.com", "--reason", "complaint").exit_code == 0
    assert mailer(people, "unsubscribe", "ann@example.com").exit_code == 0
    found = customer(engine, "B2")
    assert found.suppressed_at is not None and found.suppressed_reason == "complaint"

    listing = mailer(people, "suppressions", "--format", "csv")
    assert listing.exit_code == 0
    rows = sorted(
        [*line.split(",")[:3], line.split(",")[-1]]
        for line in listing.output.strip().splitlines()[1:]
    )
    assert rows == [
        ["B1", "ann@example.com", "unsubscribed", "cli"],
        ["B2", "bob@example.com", "suppressed", "complaint"],
        ["B3", "Ann@example.com", "unsubscribed", "cli"],
    ]

    result = mailer(people, "run", "--date", DAY.isoformat())
    assert result.exit_code == 0, result.output
    assert statuses(engine)["B2"] == ("skipped", "suppressed")

    assert (
        "1 customer no longer suppressed" in mailer(people, "unsuppress", "bob@example.com").output
    )
    assert customer(engine, "B2").suppressed_at is None
    assert "were not suppressed" in mailer(people, "unsuppress", "bob@example.com").output


def test_only_an_explicit_resubscribe_lifts_an_unsubscribe_made_in_mailer(
    people: Path, engine: Engine, tmp_path: Path
) -> None:
    assert mailer(people, "unsubscribe", "ann@example.com").exit_code == 0
    # A shop's export that still says "yes" keeps the unsubscribe: it may be older than the request.
    export = tmp_path / "consent.csv"
    export.write_text("external_id,email,subscribed\nB1,ann@example.com,yes\n", encoding="utf-8")
    assert mailer(people, "import", "customers", str(export)).exit_code == 0
    assert customer(engine, "B1").unsubscribed_at is not None

    refused = mailer(people, "resubscribe", "ann@example.com")
    assert refused.exit_code == 2 and "--because" in refused.output  # an admin says why, every time
    result = mailer(people, "resubscribe", "ann@example.com", "--because", "asked by phone, ticket 4711")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "ann@example.com: 2 customers subscribed again"
    assert customer(engine, "B1").unsubscribed_at is None and customer(engine, "B3").unsubscribed_at is None
    assert mailer(people, "resubscribe", "ann@example.com", "--because", "again").output.strip() == (
        "ann@example.com: 2 were not unsubscribed"
    )


def test_suppress_needs_a_reason_that_is_not_blank(people: Path) -> None:
    result = mailer(people, "suppress", "bob@example.com", "--reason", "  ")
    assert result.exit_code == 2
    assert "--reason" in result.output


@pytest.mark.parametrize(
    ("stored", "given"),
    [("anna@xn--bcher-kva.example", "anna@bücher.example"), ("anna@bücher.example", "anna@XN--BCHER-KVA.example")],
)
def test_an_address_is_found_in_either_spelling_of_its_domain(
    project: Path, engine: Engine, stored: str, given: str
) -> None:
    add_customer(engine, "ANNA", since=date(2020, 1, 1), email=stored)

    result = mailer(project, "suppress", given, "--reason", "complaint")

    assert "1 customer suppressed" in result.output
    assert customer(engine, "ANNA").suppressed_reason == "complaint"
