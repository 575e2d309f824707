"""Acting on webhook reports: receipts refuse a second copy of a call, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from mailer import store
from mailer.contacts.feedback import Feedback, Kind
from mailer.service import webhooks
from mailer.store.tables import Customer, WebhookReceipt
from tests.support.factories import add_customer

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
KEEP = timedelta(minutes=10)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_engine(request: pytest.FixtureRequest, engine: Engine) -> Iterator[Engine]:
    if request.param == "sqlite":
        yield engine
        return
    pg = store.make_engine(request.getfixturevalue("pg_url"))
    store.create_schema(pg)
    yield pg
    pg.dispose()


def receipts(engine: Engine) -> int:
    with Session(engine) as session:
        return session.execute(select(func.count()).select_from(WebhookReceipt)).scalar_one()


def test_a_key_is_received_once_per_provider_and_forgotten_after_its_window(any_engine: Engine) -> None:
    assert webhooks.first_receipt(any_engine, "mailgun", "token-1", NOW, KEEP)
    assert not webhooks.first_receipt(any_engine, "mailgun", "token-1", NOW + timedelta(minutes=1), KEEP)
    assert webhooks.first_receipt(any_engine, "ses", "token-1", NOW, KEEP)  # another provider's key space
    # Past its window the receipt goes (a call that old is refused before it gets here).
    assert webhooks.first_receipt(any_engine, "mailgun", "token-2", NOW + KEEP * 2, KEEP)
    assert receipts(any_engine) == 2
    webhooks.forget_receipt(any_engine, "mailgun", "token-2")
    assert webhooks.first_receipt(any_engine, "mailgun", "token-2", NOW + KEEP * 2, KEEP)


def test_two_copies_racing_record_one_receipt(any_engine: Engine) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def receive() -> None:
        barrier.wait()
        results.append(webhooks.first_receipt(any_engine, "mailgun", "raced", NOW, KEEP))

    threads = [threading.Thread(target=receive) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]


def test_a_report_for_an_address_nobody_has_changes_nothing_and_says_so(any_engine: Engine) -> None:
    add_customer(any_engine, "A", since=date(2020, 1, 1), email="ann@example.com")
    said = webhooks.apply(any_engine, "ses", Feedback(Kind.BOUNCE, "zed@example.com", "", "5.1.1"), NOW)
    assert said == "bounce via webhook:ses: 5.1.1 for zed@example.com, whom no customer has"
    said = webhooks.apply(any_engine, "mailgun", Feedback(Kind.UNSUBSCRIBE, "zed@example.com"), NOW)
    assert said == "unsubscribe for zed@example.com, whom no customer has"
    with Session(any_engine) as session:
        customer = session.execute(select(Customer)).scalar_one()
    assert (customer.suppressed_at, customer.unsubscribed_at) == (None, None)
