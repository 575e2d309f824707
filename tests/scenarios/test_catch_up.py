"""Catch-up: an occasion stays open for ``catch_up_days`` after it is due, however it came to be late.

Each pass looks back over the catch-up window (or, after an outage, every
day since the last planned one), so an occasion deferred on its day, or one
the store learns of days late, is still decided and sent inside the window.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer import store
from mailer.config import Settings
from mailer.contacts.importer import import_interactions
from mailer.delivery.report import PassReport
from mailer.delivery.transport import MaildirTransport
from mailer.planning.clock import PassClock
from mailer.service.passes import run_pass
from mailer.store.tables import SendLog
from tests.support.factories import add_customer

DUE = date(2026, 11, 20)  # settings.policy.catch_up_days is 3: the last day to send is Nov 23


def pass_on(engine: Engine, settings: Settings, day: date, campaign: str) -> PassReport:
    clock = PassClock.on(day, datetime.combine(day, time(12), UTC))
    return run_pass(engine, settings, clock, MaildirTransport(settings.transport.path), campaign_names=[campaign])


def logged(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return [(r.occasion_key, r.status) for r in session.execute(select(SendLog)).scalars()]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, settings: Settings) -> Iterator[tuple[Engine, Settings]]:
    """(engine, settings) on the project's SQLite store, or on a throw-away PostgreSQL database."""
    if request.param == "postgresql":
        settings = replace(settings, store=replace(settings.store, url=request.getfixturevalue("pg_url")))
    engine = store.make_engine(settings.store.url)
    store.create_schema(engine)
    yield engine, settings
    engine.dispose()


def test_an_occasion_held_back_by_the_frequency_cap_is_sent_on_the_last_day_of_its_catch_up_window(
    backend: tuple[Engine, Settings],
) -> None:
    engine, settings = backend
    assert settings.policy.catch_up_days == 3 and settings.policy.min_days_between == 7
    # Emailed on Nov 16 at noon: the cap lifts on Nov 23 at noon, the last day of catch-up.
    add_customer(engine, "CAPPED", since=date(2019, 11, 20), timezone="UTC",
                 last_emailed_at=datetime(2026, 11, 16, 12, tzinfo=UTC))
    for offset in range(3):
        report = pass_on(engine, settings, DUE + timedelta(days=offset), "customer-anniversary")
        assert (report.counts["deferred"], report.counts["sent"]) == (1, 0)
    assert logged(engine) == [("anniversary:2026", "deferred")]

    report = pass_on(engine, settings, DUE + timedelta(days=3), "customer-anniversary")
    assert report.counts["sent"] == 1
    assert logged(engine) == [("anniversary:2026", "sent")]


def write_orders(path: Path, orders: list[tuple[datetime, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["external_id", "kind", "occurred_at", "amount", "reference"])
        for moment, reference in orders:
            out.writerow(["LATE", "order", moment.isoformat(), "20.00", reference])
    return path


def test_a_milestone_crossed_by_an_order_imported_three_days_late_is_still_sent(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    add_customer(engine, "LATE", since=date(2020, 1, 1), timezone="UTC")
    nine = [(datetime(2025, 3, n, 12, tzinfo=UTC), f"OLD{n}") for n in range(1, 10)]
    import_interactions(engine, write_orders(tmp_path / "old.csv", nine))
    for offset in range(3):  # the daemon ran every day: nothing to send yet
        assert pass_on(engine, settings, DUE + timedelta(days=offset), "tenth-order").planned == []

    # The 10th order happened on Nov 20, but reached the store only on Nov 23.
    import_interactions(engine, write_orders(tmp_path / "late.csv", [(datetime.combine(DUE, time(10), UTC), "TENTH")]))
    report = pass_on(engine, settings, DUE + timedelta(days=3), "tenth-order")
    assert report.counts["sent"] == 1
    assert logged(engine) == [("milestone:order_count:10", "sent")]
