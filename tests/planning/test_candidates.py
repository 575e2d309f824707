"""The store's candidate queries narrow in SQL, but never lose a customer the decisions would pick."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from mailer import store
from mailer.config import Settings
from mailer.planning import candidates
from mailer.planning.policy import in_segment
from mailer.store.tables import Interaction, SendLog, SendStatus
from tests.support.factories import add_customer

TODAY = date(2026, 11, 23)
# Tags a substring test could get wrong: LIKE wildcards, case, non-ASCII, JSON escapes.
TAGS = ["staff", "Staff", "50%_off", "50x_off", "é", 'say "hi"', "back\\slash"]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_engine(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = store.make_engine(settings.store.url)
    else:
        engine = store.make_engine(request.getfixturevalue("pg_url"))
        store.create_schema(engine)
    yield engine
    engine.dispose()


def candidate_ids(engine: Engine, settings: Settings, tags_any: frozenset[str]) -> tuple[set[str], set[str]]:
    """(every candidate the query returns, those the policy's exact segment check keeps) as external ids."""
    campaign = replace(settings.campaign("customer-anniversary"), tags_any=tags_any, tags_none=frozenset())
    with Session(engine) as session:
        found = list(candidates.candidates(session, campaign, [TODAY], settings.sender.timezone))
    return {c.external_id for c in found}, {c.external_id for c in found if in_segment(c.tags, campaign)}


def test_a_tags_any_segment_finds_every_customer_with_the_tag_whatever_the_tag_looks_like(
    any_engine: Engine, settings: Settings
) -> None:
    for n, tag in enumerate(TAGS):
        add_customer(any_engine, f"T{n}", since=date(2020, 11, 23), tags=[tag, "vip"])
    add_customer(any_engine, "UNTAGGED", since=date(2020, 11, 23))

    for n, tag in enumerate(TAGS):
        _returned, kept = candidate_ids(any_engine, settings, frozenset({tag}))
        assert kept == {f"T{n}"}, tag
    _returned, kept = candidate_ids(any_engine, settings, frozenset({"é", "50%_off"}))
    assert kept == {"T2", "T4"}


def test_a_plain_tags_any_segment_is_narrowed_in_sql(any_engine: Engine, settings: Settings) -> None:
    add_customer(any_engine, "STAFF", since=date(2020, 11, 23), tags=["staff"])
    add_customer(any_engine, "VIP", since=date(2019, 11, 23), tags=["vip"])
    add_customer(any_engine, "NONE", since=date(2018, 11, 23))

    returned, kept = candidate_ids(any_engine, settings, frozenset({"staff"}))
    assert (returned, kept) == ({"STAFF"}, {"STAFF"})
    returned, _kept = candidate_ids(any_engine, settings, frozenset())
    assert returned == {"STAFF", "VIP", "NONE"}


def log_row(engine: Engine, customer_id: int, campaign: str, key: str, status: str, due: date) -> None:
    with Session(engine) as session:
        session.add(SendLog(customer_id=customer_id, campaign=campaign, occasion_key=key, occasion_kind="x",
                            due_date=due, template="x", status=status, reason="earlier pass"))
        session.commit()


def open_candidates(engine: Engine, settings: Settings, name: str, dates: list[date]) -> set[str]:
    with Session(engine) as session:
        return {c.external_id for c in candidates.candidates(session, settings.campaign(name), dates, "UTC")}


@pytest.mark.parametrize(("campaign", "field"), [("customer-anniversary", "since"), ("birthday", "birthday")])
def test_a_yearly_occasion_already_settled_is_left_out_and_a_deferred_one_is_decided_again(
    any_engine: Engine, settings: Settings, campaign: str, field: str
) -> None:
    kind = settings.campaign(campaign).occasion
    dates: dict[str, date] = {"since": date(2020, 1, 1), field: date(2001, 11, 22)}  # the occasion: Nov 22
    names = ("SENT", "SKIPPED", "DEFERRED", "NEW", "LAST-YEAR")
    ids = {name: add_customer(any_engine, name, **dates) for name in names}
    log_row(any_engine, ids["SENT"], campaign, f"{kind}:2026", SendStatus.SENT, date(2026, 11, 22))
    log_row(any_engine, ids["SKIPPED"], campaign, f"{kind}:2026", SendStatus.SKIPPED, date(2026, 11, 22))
    log_row(any_engine, ids["DEFERRED"], campaign, f"{kind}:2026", SendStatus.DEFERRED, date(2026, 11, 22))
    log_row(any_engine, ids["LAST-YEAR"], campaign, f"{kind}:2025", SendStatus.SENT, date(2025, 11, 22))
    log_row(any_engine, ids["NEW"], "another-campaign", f"{kind}:2026", SendStatus.SENT, date(2026, 11, 22))

    found = open_candidates(any_engine, settings, campaign, [date(2026, 11, 22), date(2026, 11, 23)])
    assert found == {"DEFERRED", "NEW", "LAST-YEAR"}


def test_a_window_across_new_year_keeps_the_new_years_occasion_of_a_customer_settled_last_year(
    any_engine: Engine, settings: Settings
) -> None:
    settled = add_customer(any_engine, "DEC31", since=date(2020, 12, 31))
    add_customer(any_engine, "JAN1", since=date(2020, 1, 1))
    log_row(any_engine, settled, "customer-anniversary", "anniversary:2026", SendStatus.SENT, date(2026, 12, 31))
    jan1 = add_customer(any_engine, "JAN1-SETTLED", since=date(2021, 1, 1))
    log_row(any_engine, jan1, "customer-anniversary", "anniversary:2027", SendStatus.SENT, date(2027, 1, 1))

    found = open_candidates(any_engine, settings, "customer-anniversary", [date(2026, 12, 31), date(2027, 1, 1)])
    assert found == {"JAN1"}


def test_a_follow_up_already_settled_is_left_out_but_the_customers_next_order_is_not(
    any_engine: Engine, settings: Settings
) -> None:
    campaign = settings.campaign("how-did-we-do")  # 7 days after an order
    one, two = (add_customer(any_engine, n, since=date(2020, 1, 1)) for n in ("ONE", "TWO"))
    ordered = datetime(2026, 11, 16, 12, tzinfo=UTC)
    with Session(any_engine) as session:
        orders = [Interaction(customer_id=cid, kind="order", occurred_at=ordered + timedelta(hours=h))
                  for cid, h in ((one, 0), (two, 0), (two, 1))]
        session.add_all(orders)
        session.commit()
        first, second, third = (o.id for o in orders)
    log_row(any_engine, one, campaign.name, f"follow_up:{first}", SendStatus.SENT, date(2026, 11, 23))
    log_row(any_engine, two, campaign.name, f"follow_up:{second}", SendStatus.SENT, date(2026, 11, 23))

    with Session(any_engine) as session:
        found = list(candidates.candidates(session, campaign, [date(2026, 11, 23)], "UTC"))
    assert [(c.external_id, [i.id for i in c.recent]) for c in found] == [("TWO", [second, third])]


def test_an_anniversary_campaign_of_some_years_only_reads_the_customers_since_those_years(
    any_engine: Engine, settings: Settings
) -> None:
    for years in (1, 4, 5, 6, 10):
        add_customer(any_engine, f"Y{years}", since=date(2026 - years, 11, 23))
    add_customer(any_engine, "NEW-YEAR-5", since=date(2022, 1, 1))  # the fifth on 2027-01-01, across New Year

    assert open_candidates(any_engine, settings, "fifth-anniversary", [TODAY]) == {"Y5"}
    across = [date(2026, 12, 31), date(2027, 1, 1)]
    assert open_candidates(any_engine, settings, "fifth-anniversary", across) == {"NEW-YEAR-5"}
    assert open_candidates(any_engine, settings, "customer-anniversary", [TODAY]) == {"Y1", "Y4", "Y5", "Y6", "Y10"}
