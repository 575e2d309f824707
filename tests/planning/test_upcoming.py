"""What is coming for one customer: the forecast's passes, restricted to that customer, occasion by occasion."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer.config import Settings
from mailer.contacts import importer, preferences
from mailer.planning.forecast import forecast
from mailer.planning.upcoming import Upcoming, upcoming
from mailer.store.tables import Customer
from tests.support.factories import add_customer

START = date(2026, 11, 23)


def test_a_customers_next_occasions_come_with_the_verdict_and_reason_of_the_pass_that_decides_them(
    engine: Engine, settings: Settings
) -> None:
    # Emailed on the 26th: the frequency cap (7 days) holds the anniversary of the 30th until 3 December,
    # and that email holds the birthday of the 10th exactly until its own day.
    ann = add_customer(engine, "ANN", since=date(2019, 11, 30), birthday=date(1990, 12, 10),
                       last_emailed_at=datetime(2026, 11, 26, 12, tzinfo=UTC))
    with Session(engine) as session:
        coming = upcoming(session, settings, ann, START, 30)
        assert upcoming(session, settings, ann, START, 5) == []
        assert upcoming(session, settings, 999_999, START, 30) == [], "an unknown customer has nothing coming"
    assert coming == [
        Upcoming(date(2026, 11, 30), "customer-anniversary", "send",
                 "sent on 2026-12-03 after deferral (frequency cap: last email 2026-11-26)"),
        Upcoming(date(2026, 12, 10), "birthday", "send", "sent on 2026-12-10"),
    ]


def test_a_campaign_the_customer_left_is_listed_as_skipped_with_the_reason(engine: Engine, settings: Settings) -> None:
    bo = add_customer(engine, "BO", since=date(2019, 11, 30), birthday=date(1990, 12, 10))
    preferences.opt_out_of_campaign(engine, bo, "birthday", "page")
    with Session(engine) as session:
        coming = upcoming(session, settings, bo, START, 30)
    assert [(u.campaign, u.verdict, u.reason) for u in coming] == [
        ("customer-anniversary", "send", "sent on 2026-11-30"),
        ("birthday", "skip", "opted out of campaign"),
    ]


def test_every_customers_upcoming_adds_up_to_the_forecast(project: Path, engine: Engine, settings: Settings) -> None:
    """The same passes as ``mailer plan``: per campaign, the sends of all customers one by one match its counts."""
    data = project.parent / "data"
    importer.import_customers(engine, data / "customers.csv")
    importer.import_interactions(engine, data / "interactions.csv")
    days = 12
    with Session(engine) as session:
        ids = session.execute(select(Customer.id)).scalars().all()
        mine: Counter[tuple[str, str]] = Counter()
        for customer_id in ids:
            assert customer_id is not None
            mine.update((u.campaign, u.verdict) for u in upcoming(session, settings, customer_id, START, days))
        rows = forecast(session, settings, START, days, settings.campaigns)
    theirs: Counter[tuple[str, str]] = Counter()
    for row in rows:
        theirs[(row.campaign, "send")] += row.send
    assert sum(theirs.values()) > 10, "the sample customers have occasions in these days"
    assert {k: v for k, v in mine.items() if k[1] == "send"} == {k: v for k, v in theirs.items() if v}
