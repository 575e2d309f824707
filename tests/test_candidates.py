"""The store's candidate queries narrow in SQL, but never lose a customer the decisions would pick."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from mailer import store
from mailer.config import Settings
from mailer.policy import in_segment
from tests.factories import add_customer

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
        found = list(store.candidates(session, campaign, [TODAY], settings.sender.timezone))
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
