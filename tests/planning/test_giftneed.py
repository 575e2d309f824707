"""PURE: a gift's need over the forecast against its pool, soonest expiry first, expired codes not counted."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from mailer.config import Campaign, Gift, Secret
from mailer.planning.forecast import ForecastRow
from mailer.planning.giftneed import assess, daily_need

D = date(2026, 11, 23)
POOL = Gift(name="anniversary-5", label="a free bag", kind="pool", secret=Secret(env="X"))
MADE = Gift(name="thanks", label="a coffee", kind="generated", secret=Secret(env="X"), prefix="THANKS")


def day(n: int) -> date:
    return D + timedelta(days=n)


def test_the_need_adds_up_the_sends_of_every_campaign_that_gives_the_gift() -> None:
    campaigns = [
        Campaign("fifth", "anniversary", "anniversary", gift=POOL),
        Campaign("tenth", "milestone", "milestone", gift=POOL),
        Campaign("birthday", "birthday", "birthday"),
    ]
    rows = [
        ForecastRow(day(0), "fifth", 2, 1, 0),
        ForecastRow(day(0), "tenth", 3, 0, 0),
        ForecastRow(day(0), "birthday", 9, 0, 0),
        ForecastRow(day(2), "fifth", 1, 0, 4),
    ]
    assert daily_need(rows, campaigns) == {"anniversary-5": {day(0): 5, day(2): 1}}


@pytest.mark.parametrize(
    ("per_day", "expiries", "left", "short", "runs_out"),
    [
        ({day(0): 2, day(1): 2}, [None] * 5, 5, 0, None),  # enough
        ({day(0): 2, day(1): 2, day(3): 3}, [None] * 5, 5, 2, day(3)),  # runs out on the third day with mail
        ({day(0): 1, day(5): 1}, [day(3), day(3)], 2, 1, day(5)),  # the second code expires unused
        ({day(0): 1, day(5): 1}, [None, day(3)], 2, 0, None),  # soonest expiry first: the lasting code waits
        ({day(0): 1}, [day(0)], 1, 1, day(0)),  # a code is usable only before its expiry day
        ({}, [], 0, 0, None),  # no need, no pool: nothing to warn about
    ],
)
def test_the_pool_is_drawn_down_day_by_day_soonest_expiry_first(
    per_day: dict[date, int], expiries: list[date | None], left: int, short: int, runs_out: date | None
) -> None:
    need = assess(POOL, 30, per_day, expiries)
    assert (need.need, need.left, need.short, need.runs_out) == (sum(per_day.values()), left, short, runs_out)


def test_a_generated_gift_never_runs_out_and_says_how_many_codes_will_be_made() -> None:
    need = assess(MADE, 14, {day(0): 4, day(1): 3}, [])
    assert (need.left, need.short, need.runs_out) == (None, 0, None)
    assert need.describe() == "gift 'thanks': 7 code(s) to be made over the next 14 days"


def test_a_short_pool_describes_when_it_runs_out_and_by_how_many() -> None:
    need = assess(POOL, 30, {day(0): 3, day(4): 3}, [None] * 4)
    assert need.describe() == (
        "gift 'anniversary-5': 6 needed over the next 30 days, 4 left: runs out on 2026-11-27, 2 short"
    )
