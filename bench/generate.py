"""Generate a deterministic benchmark store: N customers, ~5 interactions each, in SQLite.

    python -m bench.generate --customers 1000000 [--due 20000] [--date 2026-11-23]

Raw sqlite3 ``executemany`` in large transactions (the ORM would take an
hour). Aggregates (order count, lifetime spend, interaction count, last
interaction) are computed here exactly as the importer keeps them. ``--due``
makes exactly that many customers reach an anniversary on ``--date`` and
nobody else have an occasion near it (no other anniversary or birthday within
:data:`QUIET_DAYS` of it, no interaction in the :data:`QUIET_DAYS` + 120 days
before it and nobody joined in that span, so no follow-up, silence step or
milestone): the delivery benchmarks' "20,000 occasions due on the benchmark
date", and nothing else.
The schema comes from the real migrations. Output: bench/data/store-N.db.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from mailer import store
from mailer.service.project import DEMO_GIFT

DATA = Path(__file__).resolve().parent / "data"
ZONES = ["Europe/London", "Europe/Berlin", "America/New_York", "America/Los_Angeles", "Asia/Tokyo",
         "Australia/Sydney", "Pacific/Auckland", "America/Sao_Paulo", "Asia/Kolkata", "Pacific/Kiritimati",
         "Pacific/Pago_Pago", None]
KINDS = ["order"] * 7 + ["support"] * 2 + ["visit"]
BATCH = 50_000
QUIET_DAYS = 10  # with --due: no other occasion this close to --date (the demo's catch-up is 3 days)
QUIET_SPAN = timedelta(days=QUIET_DAYS + 120)  # past the demo's last silence step (120 days)


def store_path(customers: int, due: int) -> Path:
    return DATA / (f"store-{customers}.db" if not due else f"store-{customers}-due{due}.db")


def _stamp(moment: datetime) -> str:
    """How SQLModel's UTCDateTime stores an instant in SQLite."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def generate(customers: int, day: date, due: int = 0, per_customer: int = 5, seed: int = 1) -> Path:
    path = store_path(customers, due)
    DATA.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    engine = store.make_engine(f"sqlite:///{path}")
    store.create_schema(engine)
    engine.dispose()
    rng = random.Random(seed)
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=OFF")
    connection.execute("PRAGMA synchronous=OFF")
    start = time.perf_counter()
    now = _stamp(datetime.now(UTC))
    forced = set(rng.sample(range(1, customers + 1), due)) if due else set()
    customer_rows: list[tuple[object, ...]] = []
    interaction_rows: list[tuple[object, ...]] = []
    interaction_id = 0
    end_of_day = datetime(day.year, day.month, day.day, tzinfo=UTC)
    quiet = _near(day) if due else frozenset()
    last_allowed = end_of_day - QUIET_SPAN if due else end_of_day
    # A customer without interactions is silent since joining: with --due, none joined inside the quiet span.
    newest_since = QUIET_SPAN.days + 1 if due else 30
    for cid in range(1, customers + 1):
        since = day - timedelta(days=rng.randint(newest_since, 15 * 365))
        while since.month * 100 + since.day in quiet:
            since -= timedelta(days=2 * QUIET_DAYS + 1)
        if cid in forced:  # an anniversary on the benchmark date (Feb 29 is marked on Feb 28 anyway)
            since = date(day.year - rng.randint(1, 10), day.month, min(day.day, 28) if day.month == 2 else day.day)
        birthday = None
        if rng.random() < 0.7:
            birthday = (rng.randint(1950, 2005), rng.randint(1, 12), rng.randint(1, 28))
            while birthday[1] * 100 + birthday[2] in quiet:
                birthday = (birthday[0], birthday[1] % 12 + 1, birthday[2])
        orders = spend_count = 0
        spend = Decimal(0)
        last: datetime | None = None
        count = rng.randint(0, per_customer * 2)
        span = (last_allowed - datetime(since.year, since.month, since.day, tzinfo=UTC)).total_seconds()
        for _ in range(count if span > 0 else 0):
            interaction_id += 1
            occurred = last_allowed - timedelta(seconds=rng.random() * span)
            kind = rng.choice(KINDS)
            amount = None
            if kind == "order":
                orders += 1
                amount = Decimal(rng.randint(500, 30000)) / 100
                spend += amount
            last = occurred if last is None or occurred > last else last
            interaction_rows.append((interaction_id, cid, kind, _stamp(occurred), str(amount) if amount else None,
                                     f"R{interaction_id}"))
        spend_count += count
        tags = json.dumps(["staff"] if cid % 500 == 0 else ["vip"] if cid % 10 == 0 else [])
        customer_rows.append((
            cid, f"X{cid:08d}", f"c{cid}@example.com", f"First{cid % 1000}", f"Last{cid % 777}", since.isoformat(),
            since.month * 100 + since.day,
            birthday[0] if birthday and cid % 5 else None, birthday[1] if birthday else None,
            birthday[2] if birthday else None, birthday[1] * 100 + birthday[2] if birthday else None,
            ZONES[cid % len(ZONES)], tags, "{}", orders, str(spend), spend_count, _stamp(last) if last else None,
            now, now,
        ))
        if len(customer_rows) >= BATCH:
            _flush(connection, customer_rows, interaction_rows)
    _flush(connection, customer_rows, interaction_rows)
    _stock_gift_pool(connection, customers, now)
    connection.execute("ANALYZE")
    connection.commit()
    connection.close()
    print(f"{path}: {customers} customers, {interaction_id} interactions in {time.perf_counter() - start:.0f} s")
    return path


def _stock_gift_pool(connection: sqlite3.Connection, customers: int, now: str) -> None:
    """Codes in the demo's pooled gift, more than its campaign can use, as a shop's import would leave them.

    The demo's fifth-anniversary campaign defers when its pool is empty; the delivery benchmarks
    send every due anniversary, gift included.
    """
    codes = max(1000, customers // 20)
    connection.executemany(
        "INSERT INTO gift_code (gift, code, generated, state, returns, note, added_at, source)"
        " VALUES (?, ?, 0, 'available', 0, '', ?, 'bench')",
        ((DEMO_GIFT, f"BENCH{n:08d}", now) for n in range(1, codes + 1)),
    )
    connection.commit()


def _near(day: date) -> frozenset[int]:
    """The month-day numbers (MMDD) within QUIET_DAYS of ``day``, in any year."""
    days = range(-QUIET_DAYS, QUIET_DAYS + 1)
    centres = [date(year, day.month, min(day.day, 28)) for year in (2023, 2024)]  # a common and a leap year
    nearby = (centre + timedelta(days=offset) for centre in centres for offset in days)
    return frozenset(when.month * 100 + when.day for when in nearby)


Rows = list[tuple[object, ...]]


def _flush(connection: sqlite3.Connection, customers: Rows, interactions: Rows) -> None:
    connection.executemany(
        "INSERT INTO customer (id, external_id, email, first_name, last_name, customer_since, since_md, birthday_year,"
        " birthday_month, birthday_day, birthday_md, timezone, tags, attributes, order_count, lifetime_spend,"
        " interaction_count, last_interaction_at, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        customers,
    )
    connection.executemany(
        "INSERT INTO interaction (id, customer_id, kind, occurred_at, amount, reference) VALUES (?, ?, ?, ?, ?, ?)",
        interactions,
    )
    connection.commit()
    customers.clear()
    interactions.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=0, help="extra anniversaries due on --date")
    parser.add_argument("--date", type=date.fromisoformat, default=date(2026, 11, 23))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    generate(args.customers, args.date, args.due, seed=args.seed)


if __name__ == "__main__":
    main()
