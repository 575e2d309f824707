"""Occasions that fell due while the daemon was down are logged by the first pass after it, never lost.

Real passes on real stores (SQLite, and the same scenario on PostgreSQL);
interactions arrive through the real importer, so the customer aggregates
are what a late import really leaves behind.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer import store
from mailer.config import Settings
from mailer.contacts.importer import import_interactions
from mailer.delivery.transport import MaildirTransport
from mailer.planning.clock import PassClock
from mailer.service.passes import run_pass
from mailer.store.tables import SendLog
from tests.support.factories import add_customer

SILENCE = "we-miss-you"  # the init project's silence campaign: steps after 60 and 120 days, catch-up 3 days


def import_orders(engine: Engine, folder: Path, external_id: str, *moments: datetime) -> None:
    path = folder / f"orders-{moments[0]:%Y%m%d%H%M}.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["external_id", "kind", "occurred_at", "amount", "reference"])
        for moment in moments:
            out.writerow([external_id, "order", moment.isoformat(), "20.00", f"{external_id}-{moment:%Y%m%d%H%M}"])
    import_interactions(engine, path)


def pass_on(engine: Engine, settings: Settings, day: date) -> None:
    run_pass(engine, settings, PassClock.on(day), MaildirTransport(settings.transport.path), campaign_names=[SILENCE])


def silence_rows(engine: Engine, customer_id: int) -> list[tuple[str, date, str, str]]:
    with Session(engine) as session:
        found = session.execute(
            select(SendLog).where(SendLog.customer_id == customer_id, SendLog.campaign == SILENCE).order_by(SendLog.id)
        ).scalars()
        return [(r.occasion_key, r.due_date, r.status, r.reason) for r in found]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_settings(request: pytest.FixtureRequest, settings: Settings) -> Iterator[tuple[Engine, Settings]]:
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
        settings = replace(settings, store=replace(settings.store, url=url))
        engine = store.make_engine(url)
        store.create_schema(engine)
    else:
        engine = store.make_engine(settings.store.url)
    yield engine, settings
    engine.dispose()


def test_a_silence_step_due_in_an_outage_is_logged_though_an_interaction_dated_in_the_outage_ended_the_spell(
    store_settings: tuple[Engine, Settings], tmp_path: Path
) -> None:
    engine, settings = store_settings
    # Silent since an order on 2 Feb: the 60-day step falls due on 3 Apr, in the middle of an outage.
    cid = add_customer(engine, "GONE", since=date(2024, 2, 25), timezone="Pacific/Kiritimati")
    import_orders(engine, tmp_path, "GONE", datetime(2026, 2, 1, 20, tzinfo=UTC))  # 2 Feb in Kiritimati
    pass_on(engine, settings, date(2026, 3, 21))  # the last pass before the outage
    # The customer orders again on 24 Apr (their date); the order is imported when the daemon is back.
    import_orders(engine, tmp_path, "GONE", datetime(2026, 4, 23, 14, tzinfo=UTC))
    pass_on(engine, settings, date(2026, 4, 25))

    # 22 days late (catch-up is 3): logged as expired, not dropped because the spell is over by now.
    [(key, due, status, reason)] = silence_rows(engine, cid)
    assert (key, due, status) == ("silence:2026-02-02:60", date(2026, 4, 3), "skipped")
    assert reason == "expired: due 2026-04-03, catch-up is 3 days"


def test_a_silence_step_is_not_sent_once_a_later_interaction_has_ended_the_spell(
    store_settings: tuple[Engine, Settings], tmp_path: Path
) -> None:
    engine, settings = store_settings
    cid = add_customer(engine, "BACK", since=date(2024, 2, 25))
    import_orders(engine, tmp_path, "BACK", datetime(2026, 2, 2, 12, tzinfo=UTC))
    pass_on(engine, settings, date(2026, 4, 1))
    # Down on 2-4 Apr; the 60-day step fell due on the 3rd and the customer came back on the 4th.
    import_orders(engine, tmp_path, "BACK", datetime(2026, 4, 4, 9, tzinfo=UTC))
    pass_on(engine, settings, date(2026, 4, 5))

    # Two days late is inside the catch-up window, but a "we miss you" would now be wrong.
    assert silence_rows(engine, cid) == [
        ("silence:2026-02-02:60", date(2026, 4, 3), "skipped", "ended: an interaction on 2026-04-04 broke the silence")
    ]
    assert not list((settings.transport.path / "new").glob("*.eml"))
