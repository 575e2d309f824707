"""Schema migrations: stores are created and upgraded only through the shipped Alembic revisions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Engine, MetaData, select, text
from sqlmodel import Session, SQLModel

from mailer import store
from mailer.cli import cli
from mailer.config import load_settings
from mailer.store import migrate
from mailer.store.tables import Customer, Interaction, PassRun, SendLog, SendStatus

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _engine_for(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Engine:
    if backend == "sqlite":
        return store.make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    return store.make_engine(request.getfixturevalue("pg_url"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    engine = _engine_for(request.param, tmp_path, request)
    yield engine
    engine.dispose()


def _fill_first_revision(engine: Engine) -> None:
    """Data written with the tables as they are at the first revision (reflected, not today's models)."""
    tables = MetaData()
    tables.reflect(engine, only=["customer", "interaction", "send_log"])
    customer, interaction, send_log = (tables.tables[n] for n in ("customer", "interaction", "send_log"))
    with engine.begin() as connection:
        customer_id = connection.execute(
            customer.insert().values(
                external_id="C-1",
                email="ada@example.com",
                first_name="Ada",
                customer_since=date(2020, 11, 23),
                since_md=1123,
                tags=["vip"],
                attributes={"shoe": 42},
                order_count=0,
                lifetime_spend=Decimal("12.50"),
                interaction_count=0,
                created_at=NOW,
                updated_at=NOW,
            )
        ).inserted_primary_key[0]
        connection.execute(
            interaction.insert().values(
                customer_id=customer_id, kind="order", occurred_at=NOW, amount=Decimal("12.50"), reference="O-1"
            )
        )
        connection.execute(
            send_log.insert().values(
                customer_id=customer_id,
                campaign="anniversary",
                occasion_key="anniversary:2026",
                occasion_kind="anniversary",
                due_date=date(2026, 11, 23),
                occasion={},
                template="anniversary",
                status=SendStatus.SENT,
                reason="delivered",
                attempts=1,
                to_address="ada@example.com",
                subject="",
                message_id="",
                last_reply="",
                is_test=False,
                sent_at=NOW,
                created_at=NOW,
                updated_at=NOW,
            )
        )


def test_upgrade_from_the_first_revision_to_head_keeps_every_row(empty_engine: Engine) -> None:
    first = migrate.revisions()[0]
    assert migrate.upgrade(empty_engine, first).after == first
    _fill_first_revision(empty_engine)

    result = migrate.upgrade(empty_engine)

    assert (result.before, result.after) == (first, migrate.head())
    store.check_schema(empty_engine)
    with Session(empty_engine) as session:
        customer = session.execute(select(Customer)).scalar_one()
        assert (customer.external_id, customer.tags, customer.attributes) == (
            "C-1",
            ["vip"],
            {"shoe": 42},
        )
        assert customer.lifetime_spend == Decimal("12.50")
        row = session.execute(select(SendLog)).scalar_one()
        assert (row.status, row.occasion_key, row.sent_at) == ("sent", "anniversary:2026", NOW)
        assert (row.first_attempt_at, row.claimed_by) == (NOW, None)  # 0004: the retry deadline's start
        assert session.execute(select(Interaction.reference)).scalar_one() == "O-1"
        session.add(PassRun(kind="pass", started_at=NOW, host="h", pid=1, counts={"sent": 1}))
        session.commit()
        assert session.execute(select(PassRun.counts)).scalar_one() == {"sent": 1}


def test_the_head_revision_creates_exactly_the_tables_the_models_declare(
    empty_engine: Engine,
) -> None:
    migrate.upgrade(empty_engine)
    with empty_engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert differences == []


def test_every_revision_downgrades_to_an_empty_store_and_back(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    with empty_engine.begin() as connection:
        command.downgrade(migrate.alembic_config(connection), "base")
        assert migrate.current(connection) is None
    assert migrate.upgrade(empty_engine).after == migrate.head()


def test_mailer_init_creates_a_store_at_the_head_revision(project: Path) -> None:
    engine = store.make_engine(load_settings(project).store.url)
    with engine.connect() as connection:
        assert migrate.current(connection) == migrate.head()
    engine.dispose()


def _run(config: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def test_a_store_at_an_older_revision_is_refused_and_left_as_it_was(
    project: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = project.with_name("old.toml")
    config.write_text(project.read_text().replace('url = "sqlite:///mailer.db"', f'url = "{url}"'))
    engine = store.make_engine(url)
    migrate.upgrade(engine, migrate.revisions()[0])

    refused = _run(config, "log")

    assert refused.exit_code == 2
    assert f"schema revision {migrate.revisions()[0]}" in refused.output
    assert "run `mailer db upgrade`" in refused.output
    with engine.connect() as connection:
        assert migrate.current(connection) == migrate.revisions()[0]
    upgraded = _run(config, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert f"upgraded from {migrate.revisions()[0]} to {migrate.head()}" in upgraded.output
    assert _run(config, "log").exit_code == 0
    engine.dispose()


def test_a_missing_store_is_refused_not_created(project: Path, tmp_path: Path) -> None:
    config = project.with_name("new.toml")
    config.write_text(
        project.read_text().replace(
            'url = "sqlite:///mailer.db"', f'url = "sqlite:///{tmp_path / "new.db"}"'
        )
    )

    refused = _run(config, "log")

    assert refused.exit_code == 2
    assert refused.output.strip().splitlines() == [
        "error: the store has no tables: run `mailer db upgrade`"
    ]


def test_a_store_from_a_newer_mailer_is_refused(engine: Engine, project: Path) -> None:
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))

    refused = _run(project, "log")

    assert refused.exit_code == 2
    assert "newer than this mailer knows" in refused.output


def test_db_upgrade_adopts_a_store_created_before_migrations(tmp_path: Path, project: Path) -> None:
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    engine = store.make_engine(url)
    # The tables as the first revision has them, without the version stamp: what create_all made then.
    migrate.upgrade(engine, migrate.BASELINE)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
    _fill_first_revision(engine)
    config = project.with_name("legacy.toml")
    config.write_text(project.read_text().replace('url = "sqlite:///mailer.db"', f'url = "{url}"'))

    assert "from before migrations: run `mailer db upgrade`" in _run(config, "log").output
    upgraded = _run(config, "db", "upgrade")

    assert upgraded.exit_code == 0, upgraded.output
    assert "adopted an unversioned store" in upgraded.output
    with Session(engine) as session:
        assert session.execute(select(Customer.external_id)).scalars().all() == ["C-1"]
    engine.dispose()
