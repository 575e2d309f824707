"""Shared fixtures: a project on disk, a real SQLite store, a real PostgreSQL database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from mailer import store
from mailer.config import Settings, load_settings
from mailer.service.project import fill_sample_pools, init_project
from tests.support.factories import deliver_to
from tests.support.smtpserver import DeliveryRecord, SmtpServer, read_delivery_log

REPO_ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("MAILER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh `mailer init` project (sample data for 2026-11-23) with its store created."""
    config = init_project(tmp_path / "proj", date(2026, 11, 23), customers=60)
    settings = load_settings(config)
    engine = store.make_engine(settings.store.url)
    store.create_schema(engine)
    # As `mailer init` does: the sample gift pool is stocked, so no test finds it short by chance of the date.
    fill_sample_pools(engine, settings, config.parent / "data", date(2026, 11, 23), datetime(2026, 11, 23, tzinfo=UTC))
    engine.dispose()
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


# ---- SMTP: the real aiosmtpd server from tests/support/smtpserver.py ---------------------------------------


@pytest.fixture
def smtp_server(request: pytest.FixtureRequest) -> Iterator[SmtpServer]:
    """A real SMTP server on loopback (plain, no AUTH); script faults per recipient with ``.enqueue``.

    It offers PIPELINING, as Postfix does; parametrize it indirectly with ``False`` for one that does not.
    """
    with SmtpServer(pipelining=getattr(request, "param", True)) as server:
        yield server


@pytest.fixture
def smtp_settings(settings: Settings, smtp_server: SmtpServer) -> Settings:
    """The project's settings delivering to ``smtp_server``."""
    return deliver_to(settings, smtp_server)


@dataclass
class Sink:
    """An SMTP sink in a process of its own (it outlives a SIGKILLed client); see :func:`smtp_sink`."""

    port: int
    log_file: Path
    process: subprocess.Popen[bytes]

    def deliveries(self) -> list[DeliveryRecord]:
        """Every message the sink accepted, from its own log (written before each 250)."""
        return read_delivery_log(self.log_file)


@pytest.fixture
def smtp_sink(tmp_path: Path) -> Iterator[Sink]:
    """``python -m tests.support.smtpserver --sink``: logs each accepted message's X-Mailer-Occasion."""
    ready, log_file = tmp_path / "sink.port", tmp_path / "sink.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.smtpserver", "--sink", "--log-file", str(log_file),
         "--ready-file", str(ready)],
        cwd=REPO_ROOT,
    )
    try:
        deadline = time.monotonic() + 60  # a guard against a hang, not a speed expectation
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the SMTP sink did not start (exit status {process.poll()})")
            time.sleep(0.05)
        yield Sink(int(ready.read_text()), log_file, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
