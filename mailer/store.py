"""The contact store: engine, schema, and the queries the pass needs.

SQLite (embedded default) and PostgreSQL run the same code. SQLite gets WAL
and a busy timeout so a reader (``mailer log``) never blocks the pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, event, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, create_engine

from mailer import migrate
from mailer.errors import MailerError
from mailer.models import Customer, SendLog, SendStatus, month_day, utcnow
from mailer.occasions import CustomerFacts

# Every local date on Earth at one UTC instant lies within this span of it.
_EARLIEST_OFFSET = timedelta(hours=-12)
_LATEST_OFFSET = timedelta(hours=14)


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
    return create_engine(url, pool_pre_ping=True)


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


def local_dates_span(utc_now: datetime, lookback_days: int) -> list[date]:
    """Every calendar date that is 'today' somewhere, plus the catch-up days before them."""
    earliest = (utc_now + _EARLIEST_OFFSET).date() - timedelta(days=lookback_days)
    latest = (utc_now + _LATEST_OFFSET).date()
    return [earliest + timedelta(days=i) for i in range((latest - earliest).days + 1)]


def month_days_for(dates: Iterable[date]) -> set[int]:
    """MMDD values that can be marked on these dates (Feb 28 also stands for Feb 29 in common years)."""
    values = set()
    for day in dates:
        values.add(month_day(day))
        if day.month == 2 and day.day == 28 and not _is_leap(day.year):
            values.add(229)
    return values


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


_FACT_COLUMNS = (
    Customer.id,
    Customer.external_id,
    Customer.email,
    Customer.customer_since,
    Customer.timezone,
    Customer.tags,
    Customer.birthday_month,
    Customer.birthday_day,
    Customer.birthday_year,
    Customer.order_count,
    Customer.lifetime_spend,
    Customer.interaction_count,
    Customer.last_interaction_at,
    Customer.last_emailed_at,
    Customer.unsubscribed_at,
    Customer.suppressed_at,
)


def _facts(row: Sequence[Any], default_zone: str) -> CustomerFacts:
    (cid, external_id, email, since, zone, tags, b_month, b_day, b_year,
     orders, spend, interactions, last_interaction, last_emailed, unsubscribed, suppressed) = row
    return CustomerFacts(
        id=cid,
        external_id=external_id,
        email=email,
        customer_since=since,
        timezone=zone or default_zone,
        tags=frozenset(tags or ()),
        birthday_month=b_month,
        birthday_day=b_day,
        birthday_year=b_year,
        order_count=orders,
        lifetime_spend=spend,
        interaction_count=interactions,
        last_interaction_at=last_interaction,
        last_emailed_at=last_emailed,
        unsubscribed=unsubscribed is not None,
        suppressed=suppressed is not None,
    )


def candidates(
    session: Session, occasion_kind: str, month_days: set[int], default_zone: str, batch: int = 5000
) -> Iterator[CustomerFacts]:
    """Customers who may have a dated occasion on one of ``month_days``, streamed in id order.

    Only the indexed month/day column is filtered here; the exact per-zone
    decision is the picker's.
    """
    column = {"anniversary": Customer.since_md, "birthday": Customer.birthday_md}.get(occasion_kind)
    query = select(*_FACT_COLUMNS)
    if column is not None:
        query = query.where(column.in_(sorted(month_days)))
    yield from _stream(session, query, default_zone, batch)


def _stream(session: Session, query: Any, default_zone: str, batch: int) -> Iterator[CustomerFacts]:
    last_id = 0
    while True:
        rows = session.execute(query.where(Customer.id > last_id).order_by(Customer.id).limit(batch)).all()
        if not rows:
            return
        for row in rows:
            yield _facts(row, default_zone)
        last_id = rows[-1][0]


def logged_statuses(session: Session, customer_ids: Sequence[int]) -> dict[tuple[int, str, str], str]:
    """(customer, campaign, key) → status, for the given customers' send-log rows."""
    found: dict[tuple[int, str, str], str] = {}
    for start in range(0, len(customer_ids), 900):  # SQLite caps bound parameters
        chunk = customer_ids[start : start + 900]
        rows = session.execute(
            select(SendLog.customer_id, SendLog.campaign, SendLog.occasion_key, SendLog.status).where(
                SendLog.customer_id.in_(chunk), SendLog.is_test.is_(False)  # type: ignore[attr-defined]
            )
        ).all()
        for cid, campaign, key, status in rows:
            found[(cid, campaign, key)] = status
    return found


def claim(connection: Connection | Session, row_id: int, from_status: str = SendStatus.QUEUED) -> bool:
    """Move one row to ``sending`` if it is still ``from_status``; False if another worker got there first."""
    result = connection.execute(
        update(SendLog)
        .where(SendLog.id == row_id, SendLog.status == from_status)  # type: ignore[arg-type]
        .values(status=SendStatus.SENDING, updated_at=utcnow(), attempts=SendLog.attempts + 1)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def due_ids(session: Session, now: datetime, limit: int = 500) -> list[int]:
    """Ids of queued rows whose next attempt is due, oldest first."""
    rows = session.execute(
        select(SendLog.id)
        .where(SendLog.status == SendStatus.QUEUED, SendLog.next_attempt_at <= now)  # type: ignore[arg-type, operator]
        .order_by(SendLog.next_attempt_at, SendLog.id)
        .limit(limit)
    ).all()
    return [row[0] for row in rows]
