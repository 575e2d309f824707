"""The contact store: engine, schema, and the queries the pass needs.

SQLite (embedded default) and PostgreSQL run the same code. SQLite gets WAL
and a busy timeout so a reader (``mailer log``) never blocks the pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, event, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col, create_engine

from mailer import migrate
from mailer.config import Campaign
from mailer.errors import MailerError
from mailer.models import Customer, Interaction, SendLog, SendStatus, month_day, utcnow
from mailer.occasions import CustomerFacts, InteractionFact

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


def _facts(row: Sequence[Any], default_zone: str, recent: tuple[InteractionFact, ...] = ()) -> CustomerFacts:
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
        recent=recent,
    )


def earliest_instant(day: date) -> datetime:
    """The first UTC instant at which ``day`` is the local date somewhere on Earth."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) - _LATEST_OFFSET


def latest_instant(day: date) -> datetime:
    """The first UTC instant at which ``day`` is over everywhere on Earth."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1) - _EARLIEST_OFFSET


_METRIC_COLUMNS: dict[str, Any] = {
    "order_count": Customer.order_count,
    "lifetime_spend": Customer.lifetime_spend,
    "interaction_count": Customer.interaction_count,
}


def candidates(
    session: Session, campaign: Campaign, dates: Sequence[date], default_zone: str, batch: int = 5000
) -> Iterator[CustomerFacts]:
    """Customers who may have an occasion of ``campaign`` on one of the local ``dates``.

    The filter is a cheap, indexed superset in SQL (month/day columns, the
    last-interaction time, interactions of one kind on given days); the exact
    per-zone decision is the picker's. Customers whose pickers read
    interactions come with ``recent``: every interaction of theirs from the
    first instant of the earliest date (less a follow-up's delay) onward. The
    interaction table is only ever read by index for those customers: it is
    never aggregated.
    """
    first, last = min(dates), max(dates)
    query, recent_from, recent_kind = _candidate_query(campaign, dates, first, last)
    result = session.execute(query.execution_options(yield_per=batch))
    for rows in result.partitions():
        recent = _recent(session, [row[0] for row in rows], recent_from, recent_kind) if recent_from else {}
        for row in rows:
            yield _facts(row, default_zone, recent.get(row[0], ()))


def _candidate_query(
    campaign: Campaign, dates: Sequence[date], first: date, last: date
) -> tuple[Any, datetime | None, str | None]:
    """(query over customers, read interactions from this instant, of this kind only)."""
    query = select(*_FACT_COLUMNS)
    kind = campaign.occasion
    if kind == "anniversary" or (kind == "milestone" and campaign.metric == "years_as_customer"):
        return query.where(col(Customer.since_md).in_(sorted(month_days_for(dates)))), None, None
    if kind == "birthday":
        return query.where(col(Customer.birthday_md).in_(sorted(month_days_for(dates)))), None, None
    if kind == "milestone":
        # A crossing needs a counted interaction dated inside the span, so the
        # customer's latest interaction is at least that recent.
        since = earliest_instant(first)
        metric = _METRIC_COLUMNS[campaign.metric]
        return query.where(metric >= min(campaign.thresholds), col(Customer.last_interaction_at) >= since), since, None
    if kind == "silence":
        # A step N is due on the spell's start + N days: the spell started N days before the span.
        spells = []
        for step in campaign.after_days:
            begin, end = first - timedelta(days=step), last - timedelta(days=step)
            spells.append(col(Customer.last_interaction_at).between(earliest_instant(begin), latest_instant(end)))
            spells.append(
                and_(col(Customer.last_interaction_at).is_(None), col(Customer.customer_since).between(begin, end))
            )
        return query.where(or_(*spells)), None, None
    if kind == "follow_up":
        delay = timedelta(days=campaign.after_days[0])
        since, until = earliest_instant(first - delay), latest_instant(last - delay)
        who = (
            select(Interaction.customer_id)
            .where(Interaction.kind == campaign.interaction_kind)  # type: ignore[arg-type]
            .where(col(Interaction.occurred_at) >= since, col(Interaction.occurred_at) < until)
        )
        return query.where(col(Customer.id).in_(who)), since, campaign.interaction_kind
    raise ValueError(f"no candidate query for occasion {kind!r}")


def _recent(
    session: Session, customer_ids: Sequence[int], since: datetime, kind: str | None
) -> dict[int, tuple[InteractionFact, ...]]:
    """Each customer's interactions from ``since`` onward, oldest first (by the customer/time index)."""
    found: dict[int, list[InteractionFact]] = {}
    for start in range(0, len(customer_ids), 900):  # SQLite caps bound parameters
        query = (
            select(
                Interaction.customer_id, Interaction.id, Interaction.kind, Interaction.occurred_at,
                Interaction.amount, Interaction.reference,
            )
            .where(col(Interaction.customer_id).in_(customer_ids[start : start + 900]))
            .where(col(Interaction.occurred_at) >= since)
            .order_by(Interaction.customer_id, Interaction.occurred_at, Interaction.id)
        )
        if kind is not None:
            query = query.where(Interaction.kind == kind)  # type: ignore[arg-type]
        for cid, iid, ikind, occurred, amount, reference in session.execute(query):
            found.setdefault(cid, []).append(InteractionFact(iid, ikind, occurred, amount, reference))
    return {cid: tuple(items) for cid, items in found.items()}


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
