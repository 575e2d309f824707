"""Searches by many ids (mailer.store.bulk), the same rows on both databases; the PostgreSQL session."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from mailer import store
from mailer.store import bulk
from mailer.store.tables import Customer, Interaction


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    engine = store.make_engine(url)
    store.create_schema(engine)
    yield engine
    engine.dispose()


def add_customers(engine: Engine, count: int) -> None:
    stamp = datetime(2026, 11, 23, tzinfo=UTC)
    rows = [
        {"id": n, "external_id": f"C{n}", "email": f"c{n}@example.com", "customer_since": stamp.date(),
         "since_md": 1123, "tags": [], "attributes": {}, "lifetime_spend": 0, "created_at": stamp, "updated_at": stamp}
        for n in range(1, count + 1)
    ]
    with Session(engine) as session:
        session.execute(insert(Customer), rows)
        session.execute(insert(Interaction), [
            {"customer_id": n, "kind": "order" if n % 3 else "visit", "occurred_at": stamp} for n in range(1, count + 1)
        ])
        session.commit()


def test_a_long_list_of_ids_finds_the_same_rows_in_chunks_on_either_database(any_engine: Engine) -> None:
    add_customers(any_engine, 2500)
    wanted = list(range(2, 2600, 2))  # longer than SQLite's chunk, and some ids nobody has
    found: list[int] = []
    with Session(any_engine) as session:
        chunks = list(bulk.chunks(session, wanted))
        for chunk in chunks:
            query = select(col(Customer.id)).where(bulk.among(session, col(Customer.id), chunk))
            found += session.execute(query).scalars()
        nobody = session.execute(select(col(Customer.id)).where(bulk.among(session, col(Customer.id), []))).all()
    assert sorted(found) == list(range(2, 2501, 2))
    assert nobody == []
    assert len(chunks) == (1 if any_engine.dialect.name == "postgresql" else 2)


def test_ids_from_a_subquery_are_the_same_rows_as_in_on_either_database(any_engine: Engine) -> None:
    add_customers(any_engine, 30)
    ordered = select(col(Interaction.customer_id)).where(col(Interaction.kind) == "order")
    with Session(any_engine) as session:
        found = session.execute(select(col(Customer.id)).where(bulk.in_select(col(Customer.id), ordered))).scalars()
        assert sorted(found) == [n for n in range(1, 31) if n % 3]


def test_postgresql_gets_one_array_parameter_and_searches_a_subquerys_ids_by_index() -> None:
    ordered = select(col(Interaction.customer_id)).where(col(Interaction.kind) == "order")
    query = select(col(Customer.id)).where(bulk.in_select(col(Customer.id), ordered))
    on_postgres = str(query.compile(dialect=postgresql.dialect()))
    on_sqlite = str(query.compile(dialect=sqlite.dialect()))
    assert "customer.id = ANY (array((SELECT interaction.customer_id" in on_postgres
    assert "customer.id IN (SELECT interaction.customer_id" in on_sqlite
    assert not on_sqlite.endswith("= 1")  # a predicate, not a Boolean value compared with 1: no index serves that


def test_sqlite_searches_a_subquerys_ids_by_primary_key(tmp_path: Path) -> None:
    engine = store.make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    store.create_schema(engine)
    ordered = select(col(Interaction.customer_id)).where(col(Interaction.kind) == "order")
    query = select(col(Customer.id)).where(bulk.in_select(col(Customer.id), ordered), col(Customer.since_md) > 0)
    with engine.connect() as connection:
        sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
        plan = [row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
    engine.dispose()
    assert "SEARCH customer USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan


@pytest.mark.postgres
def test_a_postgresql_session_runs_in_utc_without_jit(pg_url: str) -> None:
    engine = store.make_engine(pg_url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW jit").scalar() == "off"
        assert connection.exec_driver_sql("SHOW TimeZone").scalar() == "UTC"
        assert connection.exec_driver_sql("SELECT now()").scalar_one().tzinfo is UTC
    engine.dispose()
