"""Shared fixtures: a project on disk, a real SQLite store, a real PostgreSQL database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from mailer import store
from mailer.config import Settings, load_settings
from mailer.project import init_project

PG_ADMIN_URL = os.environ.get("MAILER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh `mailer init` project (sample data for 2026-11-23) with its store created."""
    config = init_project(tmp_path / "proj", date(2026, 11, 23), customers=60)
    store.create_schema(store.make_engine(load_settings(config).store.url))
    return config


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings(project)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = store.make_engine(settings.store.url)
    yield engine
    engine.dispose()


def _pg_admin() -> Engine | None:
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text("select 1"))
        return admin
    except Exception:
        return None


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throw-away PostgreSQL database on the local server, dropped afterwards.

    Each test gets its own database, so concurrent test runs never share state.
    """
    admin = _pg_admin()
    if admin is None:
        pytest.skip(f"no PostgreSQL server reachable at {PG_ADMIN_URL} (.ci/run starts one)")
    name = f"mailer_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
