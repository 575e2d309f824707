"""The store's engine: SQLite (embedded) or PostgreSQL on the same code, and its schema created or checked.

SQLite gets WAL and a busy timeout so a reader (``mailer log``) never blocks the pass;
PostgreSQL sessions run in UTC and without JIT compilation (see ``make_engine``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Engine,
    event,
)
from sqlalchemy.exc import DBAPIError
from sqlmodel import create_engine

from mailer.errors import MailerError
from mailer.store import migrate


class StoreError(MailerError):
    """The store is missing, unreachable or at the wrong schema."""


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    engine = create_engine(url, pool_pre_ping=True)

    @event.listens_for(engine, "connect")
    def _postgres_session(dbapi_connection: Any, _record: Any) -> None:
        # No JIT compilation for mailer's sessions: its queries are index searches returning at most tens of
        # thousands of rows, and compiling them costs more than it saves (a planning pass's silence query at 1M
        # customers: ~285 ms of JIT for ~265 ms of work; the first pass's backend CPU 1.3-1.8 s with JIT, 0.9 s
        # without: docs/scaling.md).
        dbapi_connection.execute("SET jit = off")
        # Instants come back in UTC, as mailer keeps them, whatever the server's TimeZone: no conversion of
        # each value afterwards (UTCDateTime's astimezone, ~1.5 us per value, a few hundred thousand a pass).
        dbapi_connection.execute("SET TimeZone = 'UTC'")
        # SET, not the connection's `options`, which connection poolers such as PgBouncer refuse.
        dbapi_connection.commit()

    return engine


def create_schema(engine: Engine) -> None:
    """Bring a new (or older) store to the current schema through the shipped migrations."""
    migrate.upgrade(engine)


def check_schema(engine: Engine) -> None:
    """Refuse a store that is missing, unreachable or not at this mailer's schema revision.

    A store is never created, recreated or altered here: that is `mailer db upgrade`'s job.
    """
    try:
        with engine.connect() as connection:
            revision = migrate.current(connection)
            unversioned = revision is None and migrate.is_unversioned_store(connection)
    except DBAPIError as exc:  # unreachable server, unreadable file, bad credentials
        raise StoreError(f"cannot open the store: {_first_line(exc.orig or exc)}") from None
    head = migrate.head()
    if revision == head:
        return
    if revision is None:
        what = "has tables from before migrations" if unversioned else "has no tables"
        raise StoreError(f"the store {what}: run `mailer db upgrade`")
    at = f"the store is at schema revision {revision}"
    if revision in migrate.revisions():
        raise StoreError(f"{at}, this mailer needs {head}: run `mailer db upgrade`")
    raise StoreError(f"{at}, newer than this mailer knows ({head}): upgrade mailer")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
