"""The same customers and interactions reach the same store by CSV, by a SQL source and by the API's rows."""

from __future__ import annotations

import csv
import shutil
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, select, text
from sqlmodel import Session

from mailer import store
from mailer.config import Settings
from mailer.config.settings import SourceSettings
from mailer.contacts import apirows, importer
from mailer.service import sync as syncing
from mailer.store.tables import Customer, Interaction

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # every path is told the same "now": nothing reads the clock
ZONE = "Europe/Berlin"
CUSTOMER_COLUMNS = ("external_id", "email", "first_name", "last_name", "customer_since", "tags", "loyalty_tier")
INTERACTION_COLUMNS = ("external_id", "kind", "occurred_at", "amount", "reference")
IGNORED = {"id", "customer_id", "created_at", "updated_at"}


@dataclass(frozen=True)
class Person:
    external_id: str
    email: str
    first_name: str
    last_name: str
    customer_since: date
    tags: tuple[str, ...]
    loyalty_tier: str

    def cells(self) -> dict[str, str]:
        return {
            "external_id": self.external_id, "email": self.email, "first_name": self.first_name,
            "last_name": self.last_name, "customer_since": self.customer_since.isoformat(),
            "tags": ";".join(self.tags), "loyalty_tier": self.loyalty_tier,
        }


@dataclass(frozen=True)
class Order:
    external_id: str
    kind: str
    occurred_at: datetime
    amount: Decimal | None
    reference: str

    def cells(self) -> dict[str, str]:
        return {
            "external_id": self.external_id, "kind": self.kind, "occurred_at": self.occurred_at.isoformat(),
            "amount": "" if self.amount is None else str(self.amount), "reference": self.reference,
        }


words = st.text(st.characters(codec="utf-8", categories=("L",)), min_size=0, max_size=12)
tag = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=8)
amounts = st.none() | st.decimals(min_value=-500, max_value=5000, places=2, allow_nan=False, allow_infinity=False)
instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2026, 11, 22)).map(
    lambda moment: moment.replace(microsecond=0, tzinfo=UTC)
)


@st.composite
def shops(draw: st.DrawFn) -> tuple[list[Person], list[Order]]:
    count = draw(st.integers(min_value=1, max_value=4))
    people = [
        Person(
            f"c-{n}", f"person{n}@example.com", draw(words), draw(words),
            draw(st.dates(min_value=date(2010, 1, 1), max_value=date(2026, 11, 23))),
            tuple(sorted(draw(st.sets(tag, max_size=3)))), draw(st.sampled_from(["", "gold", "silver"])),
        )
        for n in range(count)
    ]
    orders = [
        Order(draw(st.sampled_from(people)).external_id, draw(st.sampled_from(["order", "visit"])),
              draw(instants), draw(amounts), f"r-{n}")
        for n in range(draw(st.integers(min_value=0, max_value=6)))
    ]
    return people, orders


def by_csv(engine: Engine, folder: Path, people: list[Person], orders: list[Order]) -> None:
    customers, interactions = folder / "customers.csv", folder / "interactions.csv"
    for path, columns, rows in ((customers, CUSTOMER_COLUMNS, people), (interactions, INTERACTION_COLUMNS, orders)):
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows(row.cells() for row in rows)
    importer.import_customers(engine, customers, default_zone=ZONE, now=NOW)
    importer.import_interactions(engine, interactions, default_zone=ZONE, now=NOW)


def by_sql(engine: Engine, folder: Path, base: Settings, people: list[Person], orders: list[Order]) -> None:
    shop = create_engine(f"sqlite:///{folder / 'shop.db'}")
    with shop.begin() as connection:
        connection.execute(text("CREATE TABLE clients (no TEXT PRIMARY KEY, mail TEXT, given TEXT, family TEXT,"
                                " since DATE, labels TEXT, tier TEXT)"))
        connection.execute(text("CREATE TABLE sales (ref TEXT PRIMARY KEY, client TEXT, what TEXT, at TEXT,"
                                " total NUMERIC)"))
        for p in people:
            connection.execute(text("INSERT INTO clients VALUES (:no, :mail, :given, :family, :since, :labels, :tier)"),
                               {"no": p.external_id, "mail": p.email, "given": p.first_name, "family": p.last_name,
                                "since": p.customer_since.isoformat(), "labels": ";".join(p.tags),
                                "tier": p.loyalty_tier})
        for o in orders:
            connection.execute(text("INSERT INTO sales VALUES (:ref, :client, :what, :at, :total)"),
                               {"ref": o.reference, "client": o.external_id, "what": o.kind,
                                "at": o.occurred_at.isoformat(), "total": None if o.amount is None else str(o.amount)})
    shop.dispose()
    source = SourceSettings(
        name="shop", kind="sql", url=f"sqlite:///{folder / 'shop.db'}",
        customers="SELECT no AS external_id, mail AS email, given AS first_name, family AS last_name,"
                  " since AS customer_since, labels AS tags, tier AS loyalty_tier FROM clients",
        interactions="SELECT client AS external_id, what AS kind, at AS occurred_at, total AS amount,"
                     " ref AS reference FROM sales",
    )
    configured = replace(base, sources=(source,), sender=replace(base.sender, timezone=ZONE))
    [outcome] = syncing.sync(engine, configured, now=NOW)
    assert not outcome.failed, outcome.error


def by_api(engine: Engine, people: list[Person], orders: list[Order]) -> None:
    # As the routes call them: one PUT per customer (a JSON object: tags a list), one POST of every order.
    for p in people:
        body: dict[str, Any] = {**p.cells(), "tags": list(p.tags)}
        del body["external_id"]
        apirows.put_customer(engine, p.external_id, body, default_zone=ZONE, now=NOW)
    if orders:
        items = [{**o.cells(), "amount": o.amount} for o in orders]
        apirows.post_interactions(engine, items, default_zone=ZONE, now=NOW)


def held(engine: Engine) -> tuple[dict[str, dict[str, Any]], list[tuple[Any, ...]]]:
    """Every customer's fields and every interaction, without ids and timestamps of the store's own."""
    with Session(engine) as session:
        customers = session.execute(select(Customer)).scalars().all()
        ids = {c.id: c.external_id for c in customers}
        fields = {c.external_id: {k: v for k, v in c.model_dump().items() if k not in IGNORED} for c in customers}
        interactions = sorted(
            ((ids[i.customer_id], *(v for k, v in sorted(i.model_dump().items()) if k not in IGNORED))
             for i in session.execute(select(Interaction)).scalars().all()),
            key=repr,
        )
    return fields, interactions


@pytest.fixture(scope="module")
def blank_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty store, copied for every path of every example (migrating each would take seconds)."""
    path = tmp_path_factory.mktemp("blank") / "mailer.db"
    engine = store.make_engine(f"sqlite:///{path}")
    store.create_schema(engine)
    engine.dispose()
    return path


@settings(max_examples=5, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(shop=shops())
def test_csv_sql_source_and_api_rows_give_the_same_store(
    settings: Settings, blank_store: Path, shop: tuple[list[Person], list[Order]]
) -> None:
    people, orders = shop
    stores = []
    with tempfile.TemporaryDirectory() as temp:
        for path in ("csv", "sql", "api"):
            folder = Path(temp) / path
            folder.mkdir()
            shutil.copyfile(blank_store, folder / "mailer.db")
            engine = store.make_engine(f"sqlite:///{folder / 'mailer.db'}")
            if path == "csv":
                by_csv(engine, folder, people, orders)
            elif path == "sql":
                by_sql(engine, folder, settings, people, orders)
            else:
                by_api(engine, people, orders)
            stores.append(held(engine))
            engine.dispose()
    csv_store, sql_store, api_store = stores
    assert len(csv_store[0]) == len(people) and len(csv_store[1]) == len(orders)
    assert sql_store == csv_store
    assert api_store == csv_store
