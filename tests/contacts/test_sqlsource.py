"""A SQL source against a real second database (a SQLite file, and PostgreSQL) shaped like a shop, not like mailer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select, text
from sqlmodel import Session

from mailer.config import Settings
from mailer.config.settings import SourceSettings
from mailer.service import sync as syncing
from mailer.store.tables import Customer, Interaction, SourceState

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

CUSTOMERS = """
    SELECT 'shop-' || client_no AS external_id, mail AS email, given_name AS first_name,
           signup_date AS customer_since, loyalty_tier, modified AS updated_at
    FROM shop_clients
"""
ORDERS = """
    SELECT 'shop-' || client_no AS external_id, 'order' AS kind, placed AS occurred_at, total AS amount,
           'ord-' || order_no AS reference, modified AS updated_at
    FROM shop_orders
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def shop(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The shop's own database: its own table and column names, timestamps as the shop keeps them."""
    on_sqlite = request.param == "sqlite"
    url = f"sqlite:///{tmp_path / 'shop.db'}" if on_sqlite else request.getfixturevalue("pg_url")
    engine = create_engine(url)
    stamp = "TIMESTAMP" if request.param == "postgresql" else "TEXT"
    with engine.begin() as connection:
        connection.execute(text(
            f"CREATE TABLE shop_clients (client_no INTEGER PRIMARY KEY, mail VARCHAR(200), given_name VARCHAR(100),"
            f" signup_date DATE, loyalty_tier VARCHAR(20), modified {stamp})"
        ))
        connection.execute(text(
            f"CREATE TABLE shop_orders (order_no INTEGER PRIMARY KEY, client_no INTEGER, placed {stamp},"
            f" total NUMERIC(10, 2), modified {stamp})"
        ))
    yield engine
    engine.dispose()


def add_client(shop: Engine, no: int, mail: str, modified: str, *, tier: str = "gold", name: str = "Ada") -> None:
    with shop.begin() as connection:
        connection.execute(
            text("INSERT INTO shop_clients VALUES (:no, :mail, :name, :since, :tier, :modified)"),
            {"no": no, "mail": mail, "name": name, "since": _day(shop, "2020-05-01"), "tier": tier,
             "modified": _stamp(shop, modified)},
        )


def add_order(shop: Engine, no: int, client: int, placed: str, total: str) -> None:
    with shop.begin() as connection:
        connection.execute(
            text("INSERT INTO shop_orders VALUES (:no, :client, :placed, :total, :modified)"),
            {"no": no, "client": client, "placed": _stamp(shop, placed), "modified": _stamp(shop, placed),
             "total": total if shop.dialect.name == "sqlite" else Decimal(total)},
        )


def _day(shop: Engine, value: str) -> object:
    return value if shop.dialect.name == "sqlite" else datetime.fromisoformat(value).date()


def _stamp(shop: Engine, value: str) -> object:
    return value if shop.dialect.name == "sqlite" else datetime.fromisoformat(value)


def source_settings(settings: Settings, shop: Engine, **changes: str) -> Settings:
    source = SourceSettings(
        name="shop", kind="sql", url=shop.url.render_as_string(hide_password=False),
        customers=CUSTOMERS, interactions=ORDERS, updated_column="updated_at",
    )
    return replace(settings, sources=(replace(source, **changes),))


def customer(engine: Engine, external_id: str) -> Customer | None:
    with Session(engine) as session:
        return session.execute(select(Customer).where(Customer.external_id == external_id)).scalar_one_or_none()


def interactions(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.execute(select(func.count()).select_from(Interaction)).scalar_one())


def test_first_sync_reads_everything_with_custom_columns_as_attributes(
    engine: Engine, settings: Settings, shop: Engine
) -> None:
    add_client(shop, 1, "ada@example.com", "2026-11-01 10:00:00")
    add_client(shop, 2, "bob@example.com", "2026-11-02 10:00:00", tier="silver", name="Bob")
    add_order(shop, 10, 1, "2026-11-03 09:00:00", "25.50")
    add_order(shop, 11, 1, "2026-11-04 09:00:00", "-5.00")

    [outcome] = syncing.sync(engine, source_settings(settings, shop), now=NOW)

    assert not outcome.failed, outcome.error
    assert (outcome.new, outcome.updated, outcome.unchanged, outcome.rejected) == (4, 0, 0, 0)
    ada = customer(engine, "shop-1")
    assert ada is not None
    assert (ada.email, ada.first_name, ada.attributes) == ("ada@example.com", "Ada", {"loyalty_tier": "gold"})
    assert (ada.order_count, ada.lifetime_spend) == (1, Decimal("20.50"))  # the refund lowers the spend


def test_a_later_sync_reads_only_newer_rows_and_full_reads_all_again(
    engine: Engine, settings: Settings, shop: Engine
) -> None:
    configured = source_settings(settings, shop)
    add_client(shop, 1, "ada@example.com", "2026-11-01 10:00:00")
    add_client(shop, 2, "bob@example.com", "2026-11-02 10:00:00", name="Bob")
    add_order(shop, 10, 1, "2026-11-03 09:00:00", "25.50")
    syncing.sync(engine, configured, now=NOW)

    [idle] = syncing.sync(engine, configured, now=NOW)
    assert (idle.new, idle.updated, idle.unchanged) == (0, 0, 0)  # nothing newer than the marks: nothing read

    with shop.begin() as connection:  # changed at the source: the change is stamped, so the next sync reads it
        connection.execute(
            text("UPDATE shop_clients SET loyalty_tier = 'platinum', modified = :m WHERE client_no = 1"),
            {"m": _stamp(shop, "2026-11-20 08:00:00")},
        )
        # Changed without a new stamp: an incremental sync cannot see it; only --full does.
        connection.execute(text("UPDATE shop_clients SET given_name = 'Robert' WHERE client_no = 2"))
    add_order(shop, 12, 2, "2026-11-21 09:00:00", "40.00")

    [later] = syncing.sync(engine, configured, now=NOW)
    assert (later.new, later.updated, later.unchanged, later.rejected) == (1, 1, 0, 0)
    assert customer(engine, "shop-1").attributes == {"loyalty_tier": "platinum"}  # type: ignore[union-attr]
    assert customer(engine, "shop-2").first_name == "Bob"  # type: ignore[union-attr]
    assert interactions(engine) == 2

    [full] = syncing.sync(engine, configured, full=True, now=NOW)
    assert (full.new, full.updated, full.unchanged) == (0, 1, 3)  # the orders are already there by reference
    assert customer(engine, "shop-2").first_name == "Robert"  # type: ignore[union-attr]
    assert interactions(engine) == 2


def test_a_bad_row_rejects_the_sync_and_leaves_store_and_mark_as_they_were(
    engine: Engine, settings: Settings, shop: Engine
) -> None:
    configured = source_settings(settings, shop)
    add_client(shop, 1, "ada@example.com", "2026-11-01 10:00:00")
    syncing.sync(engine, configured, now=NOW)
    with Session(engine) as session:
        mark_before = session.get(SourceState, "shop").customers_mark  # type: ignore[union-attr]
    add_client(shop, 2, "bob@example.com", "2026-11-05 10:00:00", name="Bob")
    add_client(shop, 3, "not an address", "2026-11-06 10:00:00")
    add_order(shop, 10, 1, "2026-11-07 09:00:00", "10.00")

    [failed] = syncing.sync(engine, configured, now=NOW)

    assert failed.failed and failed.rejected == 1
    assert failed.details == [
        "shop/customers:2: email: not a valid email address: 'not an address' "
        "(An email address must have an @-sign.)"
    ]
    assert customer(engine, "shop-2") is None and interactions(engine) == 0
    with Session(engine) as session:
        state = session.get(SourceState, "shop")
        assert state is not None
        assert state.customers_mark == mark_before
        assert state.failing_since == NOW and "1 bad row" in state.last_error


def test_a_broken_query_and_an_unreachable_database_change_nothing(
    engine: Engine, settings: Settings, shop: Engine, tmp_path: Path
) -> None:
    add_client(shop, 1, "ada@example.com", "2026-11-01 10:00:00")
    broken = source_settings(settings, shop, customers="SELECT client_no AS external_id FROM no_such_table")
    [outcome] = syncing.sync(engine, broken, now=NOW)
    assert outcome.failed and outcome.error.startswith("customers query: ")
    assert "no_such_table" in outcome.error

    missing = source_settings(settings, shop, customers="SELECT mail AS email FROM shop_clients", updated_column="")
    [outcome] = syncing.sync(engine, missing, now=NOW)
    # customer_since may be absent (it then comes from the first order), external_id may not.
    assert outcome.error.startswith("customers query: no column 'external_id' in its result")

    gone = source_settings(settings, shop, url="postgresql+psycopg://nobody@127.0.0.1:9/shop")
    [outcome] = syncing.sync(engine, gone, now=NOW)
    assert outcome.failed and "nothing was changed" in outcome.error
    assert customer(engine, "shop-1") is None


def test_the_source_is_never_written(engine: Engine, settings: Settings, shop: Engine) -> None:
    add_client(shop, 1, "ada@example.com", "2026-11-01 10:00:00")
    sneaky = source_settings(settings, shop, updated_column="", customers=CUSTOMERS, interactions="")
    # The query is run inside SELECT * FROM (...): a statement that writes cannot even be formed there.
    writes = replace(sneaky.sources[0], customers="DELETE FROM shop_clients RETURNING client_no AS external_id")
    [outcome] = syncing.sync(engine, replace(sneaky, sources=(writes,)), now=NOW)
    assert outcome.failed
    with shop.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM shop_clients")).scalar_one() == 1
