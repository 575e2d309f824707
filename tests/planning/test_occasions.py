"""The pure occasion pickers, one table of cases per rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from mailer.config import Campaign
from mailer.planning.occasions import CustomerFacts, InteractionFact, follow_up, milestone, pick, silence

TODAY = date(2026, 11, 23)
BASE = CustomerFacts(1, "C1", "c1@example.com", date(2020, 3, 10), "UTC")


def orders(*days: tuple[date, str], kind: str = "order") -> tuple[InteractionFact, ...]:
    """Interactions at noon UTC on the given days, each with an amount."""
    return tuple(
        InteractionFact(n, kind, datetime(d.year, d.month, d.day, 12, tzinfo=UTC), Decimal(amount))
        for n, (d, amount) in enumerate(days, start=100)
    )


def campaign(occasion: str, **fields: object) -> Campaign:
    return Campaign(name=occasion, occasion=occasion, template=occasion, **fields)  # type: ignore[arg-type]


ORDER_MILESTONE = campaign("milestone", metric="order_count", thresholds=(10.0, 25.0, 50.0))


@pytest.mark.parametrize(
    ("case", "order_count", "recent", "expected"),
    [
        ("tenth order yesterday is a milestone dated yesterday",
         10, orders((date(2026, 11, 22), "5")), [("milestone:order_count:10", date(2026, 11, 22))]),
        ("imported with 57 orders, none recent: no milestone for old crossings",
         57, (), []),
        ("imported with 57 orders, one recent: the recent one crossed nothing",
         57, orders((date(2026, 11, 22), "5")), []),
        ("one import jumping over two thresholds yields both, ranked in one series",
         26, orders(*[(date(2026, 11, 21), "1")] * 20),
         [("milestone:order_count:10", date(2026, 11, 21)), ("milestone:order_count:25", date(2026, 11, 21))]),
        ("a crossing before the look-back is not an occasion",
         11, orders((date(2026, 10, 1), "5"), (date(2026, 11, 22), "5")), []),
        ("a future-dated interaction has not crossed yet",
         10, orders((date(2026, 11, 30), "5")), []),
        ("support tickets do not count as orders",
         10, orders((date(2026, 11, 22), "0"), kind="support"), []),
    ],
)
def test_order_count_milestone_is_dated_by_the_interaction_that_crossed_it(
    case: str, order_count: int, recent: tuple[InteractionFact, ...], expected: list[tuple[str, date]]
) -> None:
    customer = replace(BASE, order_count=order_count, interaction_count=order_count, recent=recent)
    found = milestone(customer, ORDER_MILESTONE, TODAY, 10)
    assert [(o.key, o.due) for o in found] == expected, case
    assert len({o.series for o in found}) <= 1


def test_lifetime_spend_milestone_counts_order_amounts_and_keys_fractions_plainly() -> None:
    spend = campaign("milestone", metric="lifetime_spend", thresholds=(99.5, 500.0))
    recent = orders((date(2026, 11, 20), "40.00"), (date(2026, 11, 22), "470.00"))
    customer = replace(BASE, order_count=3, lifetime_spend=Decimal("560.00"), recent=recent)
    found = milestone(customer, spend, TODAY, 10)
    # 50 before the look-back, 90 after the 20th, 560 after the 22nd: both crossed on the 22nd.
    assert [(o.key, o.due, o.details["threshold"]) for o in found] == [
        ("milestone:lifetime_spend:99.5", date(2026, 11, 22), 99.5),
        ("milestone:lifetime_spend:500", date(2026, 11, 22), 500),
    ]


def test_spend_climbing_back_over_a_threshold_after_a_refund_is_not_a_second_crossing() -> None:
    spend = campaign("milestone", metric="lifetime_spend", thresholds=(500.0,))
    recent = orders((date(2026, 11, 18), "600"), (date(2026, 11, 19), "-200"), (date(2026, 11, 21), "150"))
    customer = replace(BASE, order_count=2, lifetime_spend=Decimal("550"), recent=recent)
    found = milestone(customer, spend, TODAY, 10)
    assert [(o.key, o.due) for o in found] == [("milestone:lifetime_spend:500", date(2026, 11, 18))]


def test_a_refund_is_not_an_order_for_order_count_milestones() -> None:
    # Nine orders before, then a refund: the refund does not make the tenth.
    customer = replace(BASE, order_count=9, interaction_count=10, recent=orders((date(2026, 11, 22), "-20")))
    assert milestone(customer, ORDER_MILESTONE, TODAY, 10) == []


def test_interaction_count_milestone_counts_every_kind() -> None:
    counts = campaign("milestone", metric="interaction_count", thresholds=(3.0,))
    recent = orders((date(2026, 11, 21), "0"), kind="support") + orders((date(2026, 11, 22), "0"), kind="visit")
    customer = replace(BASE, interaction_count=3, recent=recent)
    assert [o.due for o in milestone(customer, counts, TODAY, 10)] == [date(2026, 11, 22)]


@pytest.mark.parametrize(
    ("since", "today", "expected"),
    [
        (date(2021, 11, 23), TODAY, ["milestone:years_as_customer:5"]),
        (date(2016, 11, 23), TODAY, ["milestone:years_as_customer:10"]),
        (date(2019, 11, 23), TODAY, []),
        (date(2016, 2, 29), date(2026, 2, 28), ["milestone:years_as_customer:10"]),
    ],
)
def test_years_as_customer_milestone_falls_on_the_anniversary(since: date, today: date, expected: list[str]) -> None:
    years = campaign("milestone", metric="years_as_customer", thresholds=(5.0, 10.0))
    assert [o.key for o in milestone(replace(BASE, customer_since=since), years, today, 0)] == expected


SILENCE = campaign("silence", after_days=(30, 60, 90))


@pytest.mark.parametrize(
    ("case", "last", "today", "lookback", "expected"),
    [
        ("thirty days after the last interaction", date(2026, 10, 24), TODAY, 0, ["silence:2026-10-24:30"]),
        ("no step falls today", date(2026, 10, 20), TODAY, 0, []),
        ("a late pass still sees a step inside the look-back", date(2026, 10, 22), TODAY, 3, ["silence:2026-10-22:30"]),
        ("steps of one spell passed during an outage share a series",
         date(2026, 8, 25), TODAY, 30, ["silence:2026-08-25:60", "silence:2026-08-25:90"]),
    ],
)
def test_silence_steps_are_counted_from_the_last_interaction(
    case: str, last: date, today: date, lookback: int, expected: list[str]
) -> None:
    customer = replace(BASE, last_interaction_at=datetime(last.year, last.month, last.day, 15, tzinfo=UTC))
    found = silence(customer, SILENCE, today, lookback)
    assert [o.key for o in found] == expected, case
    assert len({o.series for o in found}) <= 1


def test_the_next_interaction_starts_a_new_spell_with_new_keys() -> None:
    before = replace(BASE, last_interaction_at=datetime(2026, 10, 24, 12, tzinfo=UTC))
    after = replace(before, last_interaction_at=datetime(2026, 11, 1, 12, tzinfo=UTC))
    assert [o.key for o in silence(before, SILENCE, TODAY, 0)] == ["silence:2026-10-24:30"]
    assert silence(after, SILENCE, TODAY, 0) == []
    assert [o.key for o in silence(after, SILENCE, date(2026, 12, 1), 0)] == ["silence:2026-11-01:30"]


def test_a_customer_who_never_interacted_is_silent_since_joining() -> None:
    customer = replace(BASE, customer_since=date(2026, 10, 24))
    assert [o.key for o in silence(customer, SILENCE, TODAY, 0)] == ["silence:2026-10-24:30"]


def test_a_step_that_fell_due_before_a_later_interaction_ended_its_spell_is_found_and_moot() -> None:
    # The store gives the interactions since the look-back began and the last one before (Aug 25).
    recent = orders((date(2026, 8, 25), "5"), (date(2026, 11, 20), "5"))
    customer = replace(BASE, interaction_count=7, recent=recent, last_interaction_at=recent[-1].occurred_at)
    found = silence(customer, SILENCE, TODAY, 30)
    # The 60-day step (Oct 24) fell due inside the spell; the 90-day one (Nov 23) came after the customer was back.
    assert [(o.key, o.due, o.moot) for o in found] == [
        ("silence:2026-08-25:60", date(2026, 10, 24), "ended: an interaction on 2026-11-20 broke the silence"),
    ]


def test_a_step_due_on_or_after_the_interaction_that_ended_the_spell_never_fell_due() -> None:
    recent = orders((date(2026, 9, 24), "5"), (date(2026, 10, 24), "5"))
    customer = replace(BASE, interaction_count=2, recent=recent, last_interaction_at=recent[-1].occurred_at)
    # Sep 24 + 30 = Oct 24, the day the customer came back; Oct 24 + 30 = Nov 23, today, is the live spell.
    assert [(o.key, o.moot) for o in silence(customer, SILENCE, TODAY, 40)] == [("silence:2026-10-24:30", "")]


def test_the_spell_from_joining_counts_only_when_recent_holds_every_interaction() -> None:
    joined = replace(BASE, customer_since=date(2026, 9, 24))
    first = orders((date(2026, 11, 1), "5"))
    every = replace(joined, interaction_count=1, recent=first, last_interaction_at=first[0].occurred_at)
    assert [(o.key, bool(o.moot)) for o in silence(every, SILENCE, TODAY, 40)] == [("silence:2026-09-24:30", True)]
    # With earlier interactions the store did not load, the spell before Nov 1 is unknown: no guess from joining.
    assert silence(replace(every, interaction_count=5), SILENCE, TODAY, 40) == []


def test_silence_spell_starts_on_the_local_date_of_the_last_interaction() -> None:
    # 23:30 UTC on Oct 23 is already Oct 24 in Auckland.
    last = datetime(2026, 10, 23, 23, 30, tzinfo=UTC)
    customer = replace(BASE, timezone="Pacific/Auckland", last_interaction_at=last)
    assert [o.key for o in silence(customer, SILENCE, TODAY, 0)] == ["silence:2026-10-24:30"]


FOLLOW_UP = campaign("follow_up", after_days=(7,), interaction_kind="order")


@pytest.mark.parametrize(
    ("case", "recent", "lookback", "expected"),
    [
        ("seven days after an order", orders((date(2026, 11, 16), "5")), 0, ["follow_up:100"]),
        ("not after a support ticket", orders((date(2026, 11, 16), "0"), kind="support"), 0, []),
        ("one per interaction", orders((date(2026, 11, 15), "5"), (date(2026, 11, 16), "5")), 1,
         ["follow_up:100", "follow_up:101"]),
        ("not for interactions whose follow-up fell before the look-back", orders((date(2026, 10, 1), "5")), 10, []),
        ("not before the delay is over", orders((date(2026, 11, 20), "5")), 10, []),
        ("not after a refund", orders((date(2026, 11, 16), "-5")), 0, []),
    ],
)
def test_follow_up_is_due_days_after_each_interaction_of_its_kind(
    case: str, recent: tuple[InteractionFact, ...], lookback: int, expected: list[str]
) -> None:
    found = follow_up(replace(BASE, recent=recent), FOLLOW_UP, TODAY, lookback)
    assert [o.key for o in found] == expected, case
    assert all(o.details["interaction"]["kind"] == "order" for o in found)


@pytest.mark.parametrize(
    ("zone", "instant", "due"),
    [
        # Kiritimati (UTC+14) and Pago Pago (UTC-11): the same instant, two different local dates.
        ("Pacific/Kiritimati", datetime(2026, 11, 15, 11, 0, tzinfo=UTC), date(2026, 11, 23)),
        ("Pacific/Pago_Pago", datetime(2026, 11, 15, 11, 0, tzinfo=UTC), date(2026, 11, 22)),
        # Across the end of US daylight saving (Nov 1): 03:30 UTC on Nov 2 is still Nov 1 in New York.
        ("America/New_York", datetime(2026, 11, 2, 3, 30, tzinfo=UTC), date(2026, 11, 8)),
    ],
)
def test_follow_up_date_is_taken_in_the_customers_zone(zone: str, instant: datetime, due: date) -> None:
    customer = replace(BASE, timezone=zone, recent=(InteractionFact(7, "order", instant),))
    assert [o.due for o in follow_up(customer, FOLLOW_UP, due, 0)] == [due]


def test_pick_dispatches_on_the_campaigns_occasion() -> None:
    customer = replace(BASE, customer_since=date(2025, 11, 23))
    assert [o.key for o in pick(customer, campaign("anniversary"), TODAY, 0)] == ["anniversary:2026"]
