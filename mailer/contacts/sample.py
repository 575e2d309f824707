"""Deterministic sample customers and interactions for ``mailer init`` and ``mailer demo``.

The data is generated relative to ``today`` so that a fresh demo always has
somebody to thank: a handful of customers reach an anniversary or a birthday
today, some placed an order a week ago, some went quiet. The same ``today``
and count always give the same files.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from mailer.contacts.fields import CUSTOMER_COLUMNS, INTERACTION_COLUMNS

FIRST_NAMES = [
    "Amelia",
    "Oliver",
    "Zoë",
    "Mateo",
    "王芳",
    "Ólafur",
    "Priya",
    "Kwame",
    "Sofía",
    "Liam",
    "Aiko",
    "Noah",
    "Fatima",
    "Lukas",
    "Chloé",
    "Jonas",
    "Isabela",
    "Tariq",
    "Hannah",
    "Mei",
    "Ines",
    "Rafael",
    "Astrid",
    "Dmitri",
    "Grace",
    "",
]
LAST_NAMES = [
    "Hughes",
    "Okafor",
    "Bergström",
    "García",
    "Nakamura",
    "Müller",
    "Kowalski",
    "Silva",
    "O'Brien",
    "Dubois",
    "Haddad",
    "Jensen",
    "Rossi",
    "Sato",
    "Andersen",
    "Ng",
    "",
]
ZONES = [
    "Europe/London",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "",
]
OWNERS = [("Hannah Lee", "hannah@northwind.example"), ("Tomás Ruiz", "tomas@northwind.example"), ("", "")]
# The documented columns plus one custom attribute, to show templates using customer.attributes.
CUSTOMER_HEADER = [*CUSTOMER_COLUMNS, "favourite_roast"]
INTERACTION_HEADER = list(INTERACTION_COLUMNS)
ROASTS = ["Harbour Espresso", "Morning Fog", "Decaf Dusk", "Single Origin Kenya", ""]


def _on(day: date, years_back: int) -> date:
    """The same month/day ``years_back`` years earlier (Feb 29 becomes Feb 28 where needed)."""
    try:
        return day.replace(year=day.year - years_back)
    except ValueError:
        return day.replace(year=day.year - years_back, day=28)


def write_sample_data(
    customers_csv: Path, interactions_csv: Path, today: date, count: int = 300, seed: int = 7
) -> None:
    rng = random.Random(seed)
    reference = 10000
    with (
        open(customers_csv, "w", encoding="utf-8", newline="") as cf,
        open(interactions_csv, "w", encoding="utf-8", newline="") as inf,
    ):
        customers = csv.writer(cf)
        interactions = csv.writer(inf)
        customers.writerow(CUSTOMER_HEADER)
        interactions.writerow(INTERACTION_HEADER)
        for n in range(1, count + 1):
            external_id = f"C{n:05d}"
            first = rng.choice(FIRST_NAMES)
            last = rng.choice(LAST_NAMES)
            since = today - timedelta(days=rng.randint(40, 12 * 365))
            birthday = ""
            if rng.random() < 0.7:
                born = date(rng.randint(1950, 2004), rng.randint(1, 12), rng.randint(1, 28))
                birthday = born.isoformat() if rng.random() < 0.8 else f"--{born:%m-%d}"
            # Every 37th customer joined on this day some years ago; every 53rd was born on it.
            if n % 37 == 0:
                since = _on(today, rng.randint(1, 9))
                if n == 74:
                    since = _on(today, 5)  # someone's 5th: the demo shows a gift going out
            if n % 53 == 0:
                birthday = _on(today, rng.randint(20, 60)).isoformat()
            tags = []
            if rng.random() < 0.1:
                tags.append("vip")
            if rng.random() < 0.05:
                tags.append("wholesale")
            if n % 50 == 0:
                tags.append("staff")
                # Staff joined on days spread over the coming weeks: work anniversaries on the calendar.
                since = _on(today + timedelta(days=n // 10), n // 50 + 1)
            owner_name, owner_email = rng.choice(OWNERS)
            zone = rng.choice(ZONES)
            slug = "".join(ch for ch in (first or "customer").lower() if ch.isascii() and ch.isalpha()) or "customer"
            customers.writerow(
                [
                    external_id,
                    f"{slug}.{n}@example.com",
                    first,
                    last,
                    since.isoformat(),
                    birthday,
                    zone,
                    ";".join(tags),
                    owner_name,
                    owner_email,
                    _sample_locale(n, zone),
                    rng.choice(ROASTS),
                ]
            )
            reference = _write_orders(interactions, rng, external_id, since, today, n, reference)


def _sample_locale(n: int, zone: str) -> str:
    """German for customers in Berlin and every third one (Austrian German for some); the rest get the default."""
    if n % 29 == 0:
        return "de-AT"
    if zone == "Europe/Berlin" or n % 3 == 0:
        return "de"
    return ""


class CsvWriter(Protocol):
    """What ``csv.writer`` returns (the csv module names no type for it)."""

    def writerow(self, row: Iterable[Any], /) -> Any: ...


def _write_orders(
    writer: CsvWriter, rng: random.Random, external_id: str, since: date, today: date, n: int, reference: int
) -> int:
    """Orders between ``since`` and ``today``; some customers get a recent order, some go quiet."""
    orders = rng.randint(0, 14)
    span = max((today - since).days, 1)
    last_order = today - timedelta(days=rng.randint(1, min(span, 200)))
    if n % 17 == 0:
        orders, last_order = 10, today - timedelta(days=1)  # the tenth order, yesterday: a milestone
    elif n % 11 == 0:
        last_order = today - timedelta(days=7)  # "how did we do?" is due today
    elif n % 13 == 0:
        last_order = today - timedelta(days=60)  # a silent spell reaches 60 days today
    dates = sorted(
        since + timedelta(days=rng.randint(0, max((last_order - since).days, 0))) for _ in range(max(orders - 1, 0))
    )
    if orders:
        dates.append(last_order)
    for day in dates:
        reference += 1
        moment = datetime(day.year, day.month, day.day, rng.randint(8, 20), rng.randint(0, 59))
        writer.writerow(
            [
                external_id,
                "order",
                moment.isoformat(),
                f"{rng.randint(12, 180)}.{rng.randint(0, 99):02d}",
                f"ORD-{reference}",
            ]
        )
    if rng.random() < 0.2:
        reference += 1
        day = today - timedelta(days=rng.randint(1, 300))
        writer.writerow([external_id, "support", f"{day.isoformat()}T10:00:00", "", f"TCK-{reference}"])
    return reference


GIFT_CODE_CHARS = "ABCDEFGHJKMNPQRSTVWXYZ23456789"


def write_gift_codes(path: Path, today: date, count: int = 60, seed: int = 11) -> None:
    """A shop's export of gift codes, as `mailer gifts import` reads it: ``code,expires``, unique codes."""
    rng = random.Random(seed)
    codes: dict[str, None] = {}
    while len(codes) < count:
        codes["NW-" + "".join(rng.choice(GIFT_CODE_CHARS) for _ in range(8))] = None
    expires = today + timedelta(days=365)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["code", "expires"])
        writer.writerows([code, expires.isoformat()] for code in codes)
