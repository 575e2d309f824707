"""Date occasions on any attribute: yearly or once, days before or after, Feb 29, catch-up; never marked twice."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailer.config import Campaign, ConfigError, parse_settings
from mailer.planning.occasions import CustomerFacts, date_occasion, pick
from mailer.service.project import CONFIG_TEMPLATE

BASE = CustomerFacts(1, "C1", "c1@example.com", date(2020, 3, 10), "UTC")


def renewal(repeat: str = "yearly", offset: int = -14) -> Campaign:
    return Campaign(
        name="renewal", occasion="date", template="renewal", attribute="renewal_date", repeat=repeat, offset_days=offset
    )


def holding(value: date) -> CustomerFacts:
    return replace(BASE, dates=(("renewal_date", value),))


def due_days(customer: CustomerFacts, campaign: Campaign, start: date, days: int) -> dict[str, date]:
    """Key → due date over ``days`` daily passes without look-back."""
    found: dict[str, date] = {}
    for n in range(days):
        for occasion in pick(customer, campaign, start + timedelta(days=n), 0):
            assert occasion.key not in found
            found[occasion.key] = occasion.due
    return found


def test_a_yearly_reminder_two_weeks_before_jan_5_falls_on_dec_22_of_the_year_before() -> None:
    customer = holding(date(2026, 1, 5))
    [occasion] = date_occasion(customer, renewal(), date(2026, 12, 22), 0)
    assert (occasion.key, occasion.due) == ("date:renewal_date:2027-01-05", date(2026, 12, 22))
    assert occasion.details == {"attribute": "renewal_date", "date": date(2027, 1, 5), "days_until": 14, "years": 1}
    assert due_days(customer, renewal(), date(2025, 1, 1), 3 * 365) == {
        "date:renewal_date:2026-01-05": date(2025, 12, 22),
        "date:renewal_date:2027-01-05": date(2026, 12, 22),
        "date:renewal_date:2028-01-05": date(2027, 12, 22),
    }


def test_a_yearly_date_is_not_marked_before_its_own_year() -> None:
    assert due_days(holding(date(2027, 6, 1)), renewal(offset=0), date(2025, 1, 1), 900) == {
        "date:renewal_date:2027-06-01": date(2027, 6, 1)
    }


def test_once_marks_the_date_only_and_offsets_go_either_way() -> None:
    customer = holding(date(2027, 3, 10))
    assert due_days(customer, renewal("once", -30), date(2026, 1, 1), 800) == {
        "date:renewal_date:2027-03-10": date(2027, 2, 8)
    }
    assert due_days(customer, renewal("once", 3), date(2026, 1, 1), 800) == {
        "date:renewal_date:2027-03-10": date(2027, 3, 13)
    }


def test_feb_29_is_marked_on_feb_28_in_common_years_and_offsets_count_from_there() -> None:
    customer = holding(date(2024, 2, 29))
    assert due_days(customer, renewal(offset=0), date(2024, 1, 1), 5 * 366) == {
        "date:renewal_date:2024-02-29": date(2024, 2, 29),
        "date:renewal_date:2025-02-28": date(2025, 2, 28),
        "date:renewal_date:2026-02-28": date(2026, 2, 28),
        "date:renewal_date:2027-02-28": date(2027, 2, 28),
        "date:renewal_date:2028-02-29": date(2028, 2, 29),
    }
    assert due_days(customer, renewal(offset=-14), date(2025, 1, 1), 365) == {
        "date:renewal_date:2025-02-28": date(2025, 2, 14)
    }


def test_a_reminder_missed_while_the_daemon_was_down_is_found_in_the_catch_up_days_with_its_own_due_date() -> None:
    [occasion] = date_occasion(holding(date(2026, 1, 5)), renewal(), date(2026, 12, 25), 3)
    assert (occasion.key, occasion.due) == ("date:renewal_date:2027-01-05", date(2026, 12, 22))
    assert date_occasion(holding(date(2026, 1, 5)), renewal(), date(2026, 12, 26), 3) == []


def test_a_customer_without_the_attribute_has_no_date_occasion() -> None:
    assert date_occasion(BASE, renewal(), date(2026, 12, 22), 30) == []


@settings(max_examples=60, deadline=None)
@given(
    value=st.dates(min_value=date(2020, 1, 1), max_value=date(2029, 12, 31)),
    offset=st.integers(min_value=-60, max_value=60),
    repeat=st.sampled_from(["yearly", "once"]),
    lookback=st.integers(min_value=0, max_value=5),
    start=st.dates(min_value=date(2024, 1, 1), max_value=date(2026, 12, 31)),
)
def test_over_two_years_of_daily_passes_no_date_is_marked_twice_or_missed(
    value: date, offset: int, repeat: str, lookback: int, start: date
) -> None:
    customer, campaign = holding(value), renewal(repeat, offset)
    seen: dict[str, date] = {}
    for n in range(2 * 365):
        for occasion in pick(customer, campaign, start + timedelta(days=n), lookback):
            assert seen.setdefault(occasion.key, occasion.due) == occasion.due  # one key, one day
            assert occasion.due - timedelta(days=offset) == occasion.details["date"]
    last = start + timedelta(days=2 * 365 - 1)
    expected = set()
    for year in range(start.year - 1, last.year + 2):
        if repeat == "once" and year != value.year:
            continue
        if year < value.year:
            continue
        day = value.day if not (value.month == 2 and value.day == 29) else (29 if year % 4 == 0 else 28)
        marked = date(year, value.month, day)
        if start - timedelta(days=lookback) <= marked + timedelta(days=offset) <= last:
            expected.add(f"date:renewal_date:{marked.isoformat()}")
    assert set(seen) == expected


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('attribute = "renewal date"', "[campaign renewal] attribute: name a column of the customer CSV"),
        ('repeat = "monthly"', "[campaign renewal] repeat:"),
        ("offset_days = 400", "[campaign renewal] offset_days: at most a year before or after the date"),
    ],
)
def test_a_date_campaign_with_a_bad_setting_is_refused_in_one_line(line: str, problem: str) -> None:
    campaign = f'[[campaign]]\nname = "renewal"\noccasion = "date"\ntemplate = "birthday"\n{line}\n'
    if "attribute" not in line:
        campaign += 'attribute = "renewal_date"\n'
    text = CONFIG_TEMPLATE.format(secret_file=".mailer-secret") + "\n" + campaign
    with pytest.raises(ConfigError) as caught:
        parse_settings(tomllib.loads(text), Path("/tmp/mailer.toml"))
    assert problem in str(caught.value)
