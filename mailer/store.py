"""The contact store: engine, schema, and the queries the pass needs.

SQLite (embedded default) and PostgreSQL run the same code. SQLite gets WAL
and a busy timeout so a reader (``mailer log``) never blocks the pass.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Engine,
    Select,
    String,
    Text,
    and_,
    bindparam,
    cast,
    event,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, create_engine

from mailer import migrate
from mailer.config import Campaign
from mailer.errors import MailerError
from mailer.models import Customer, Interaction, SendLog, SendStatus, month_day, utcnow
from mailer.occasions import CustomerFacts, InteractionFact, noon
from mailer.outbox_lease import is_dead, lease_for

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
    cast(Customer.tags, Text),  # decoded by _tags: most customers have none, and json.loads is not free
    Customer.birthday_month,
    Customer.birthday_day,
    Customer.birthday_year,
    Customer.order_count,
    Customer.lifetime_spend,
    Customer.interaction_count,
    Customer.last_interaction_at,
    Customer.last_emailed_at,
    col(Customer.unsubscribed_at).is_not(None),
    col(Customer.suppressed_at).is_not(None),
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
        tags=_tags(tags),
        birthday_month=b_month,
        birthday_day=b_day,
        birthday_year=b_year,
        order_count=orders,
        lifetime_spend=spend,
        interaction_count=interactions,
        last_interaction_at=last_interaction,
        last_emailed_at=last_emailed,
        unsubscribed=bool(unsubscribed),
        suppressed=bool(suppressed),
        recent=recent,
    )


_NO_TAGS = frozenset[str]()


def _tags(text: str | None) -> frozenset[str]:
    """The tags column as read through ``_FACT_COLUMNS`` (JSON text)."""
    if not text or text == "[]":
        return _NO_TAGS
    return frozenset(json.loads(text))


def _may_have_tag(tags: frozenset[str]) -> Any:
    """A cheap SQL superset of "has one of ``tags``", or None when it cannot be written safely.

    The column holds the JSON list as text; a tag of plain printable ASCII
    (no quote or backslash) reads ``"tag"`` there whichever JSON encoder wrote
    it, so a substring test finds every customer who has it (SQLite's LIKE
    ignores ASCII case: a few more rows, which the policy's exact segment
    check then drops). Other tags are left to that check alone.
    """
    if not tags or not all(_PLAIN_TAG.fullmatch(tag) for tag in tags):
        return None
    text = cast(Customer.tags, Text)
    return or_(*(text.contains(f'"{tag}"', autoescape=True) for tag in sorted(tags)))


_PLAIN_TAG = re.compile(r'[ !#-\[\]-~]+')  # printable ASCII except " and \


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
    session: Session,
    campaign: Campaign,
    dates: Sequence[date],
    default_zone: str,
    batch: int = 5000,
    *,
    only: Sequence[int] | None = None,
) -> Iterator[CustomerFacts]:
    """Customers who may have an occasion of ``campaign`` on one of the local ``dates`` that is still open.

    The filter is a cheap, indexed superset in SQL (month/day columns, the
    last-interaction time, interactions of one kind on given days); the exact
    per-zone decision is the picker's. Where the occasion key can be written
    in SQL (a birthday's or an anniversary's year, a follow-up's interaction),
    customers whose occasion the send log already holds as settled are left
    out here: the policy would only pass them over. Customers whose pickers read
    interactions come with ``recent``: every interaction of theirs from the
    first instant of the earliest date (less a follow-up's delay) onward; for
    silence, only customers with an interaction in the span, and with the
    last one before it (that began the spell then under way). The
    interaction table is only ever read by index for those customers: it is
    never aggregated. ``only`` restricts the query to these customer ids.
    """
    first, last = min(dates), max(dates)
    query, recent_from, recent_kind = candidate_query(campaign, dates, first, last)
    if only is not None:
        query = query.where(col(Customer.id).in_(sorted(only)))
    # Core rows (plain tuples), not the ORM's: a pass reads tens of thousands of them.
    result = session.connection().execute(query.execution_options(yield_per=batch))
    for rows in result.partitions():
        if campaign.occasion == "silence" and recent_from:
            # Spells that ended inside the span are rebuilt from these; the others need only the aggregates.
            active = [row[0] for row in rows if row.last_interaction_at and row.last_interaction_at >= recent_from]
            recent = _recent_from_spell_start(session, active, recent_from)
        elif recent_from:
            recent = _recent(session, [row[0] for row in rows], recent_from, recent_kind)
        else:
            recent = {}
        for row in rows:
            yield _facts(row, default_zone, recent.get(row[0], ()))


def candidate_query(
    campaign: Campaign, dates: Sequence[date], first: date, last: date
) -> tuple[Any, datetime | None, str | None]:
    """(query over customers, read interactions from this instant, of this kind only)."""
    query = select(*_FACT_COLUMNS)
    segment = _may_have_tag(campaign.tags_any)
    if segment is not None:
        query = query.where(segment)
    kind = campaign.occasion
    if kind == "anniversary":
        return query.where(_yearly_open(Customer.since_md, campaign, dates)), None, None
    if kind == "milestone" and campaign.metric == "years_as_customer":
        return query.where(col(Customer.since_md).in_(sorted(month_days_for(dates)))), None, None
    if kind == "birthday":
        return query.where(_yearly_open(Customer.birthday_md, campaign, dates)), None, None
    if kind == "milestone":
        # A crossing needs a counted interaction dated inside the span, so the
        # customer's latest interaction is at least that recent.
        since = earliest_instant(first)
        metric = _METRIC_COLUMNS[campaign.metric]
        return query.where(metric >= min(campaign.thresholds), col(Customer.last_interaction_at) >= since), since, None
    if kind == "silence":
        # A step N is due on the spell's start + N days: the spell started N days before the span. It started
        # with the latest interaction (the spell under way), or with one whose successor is inside the span
        # (a spell ended since, e.g. by an interaction dated inside an outage): found through the customer's
        # interactions since the span began and, for each, its predecessor (both by the customer/time index).
        since = earliest_instant(first)
        later, earlier = aliased(Interaction), aliased(Interaction)
        previous = (
            select(func.max(col(earlier.occurred_at)))
            .where(col(earlier.customer_id) == col(later.customer_id))
            .where(col(earlier.occurred_at) < col(later.occurred_at))
            .scalar_subquery()
        )
        spells: list[Any] = []
        ended: list[Any] = []
        for step in campaign.after_days:
            begin, end = first - timedelta(days=step), last - timedelta(days=step)
            started = (earliest_instant(begin), latest_instant(end))
            joined = col(Customer.customer_since).between(begin, end)
            spells.append(col(Customer.last_interaction_at).between(*started))
            spells.append(and_(col(Customer.last_interaction_at).is_(None), joined))
            ended.append(previous.between(*started))
            ended.append(and_(joined, previous.is_(None)))  # the cheap test first: it rarely holds
        broken = (
            select(col(later.id))
            .where(col(later.customer_id) == col(Customer.id), col(later.occurred_at) >= since, or_(*ended))
            .exists()
        )
        spells.append(and_(col(Customer.last_interaction_at) >= since, broken))
        return query.where(or_(*spells)), since, None
    if kind == "follow_up":
        delay = timedelta(days=campaign.after_days[0])
        since, until = earliest_instant(first - delay), latest_instant(last - delay)
        key = literal("follow_up:", String) + cast(col(Interaction.id), String)
        who = (
            select(Interaction.customer_id)
            .where(Interaction.kind == campaign.interaction_kind)  # type: ignore[arg-type]
            .where(col(Interaction.occurred_at) >= since, col(Interaction.occurred_at) < until)
            .where(~_settled(campaign, col(Interaction.customer_id), key))
        )
        return query.where(col(Customer.id).in_(who)), since, campaign.interaction_kind
    raise ValueError(f"no candidate query for occasion {kind!r}")


def _yearly_open(month_day_column: Any, campaign: Campaign, dates: Sequence[date]) -> Any:
    """The month/day falls on one of ``dates`` and that year's occasion (``<kind>:<year>``) is not settled."""
    by_year: dict[int, list[date]] = {}
    for day in dates:
        by_year.setdefault(day.year, []).append(day)
    return or_(
        *(
            and_(
                col(month_day_column).in_(sorted(month_days_for(days))),
                ~_settled(campaign, col(Customer.id), literal(f"{campaign.occasion}:{year}", String)),
            )
            for year, days in sorted(by_year.items())
        )
    )


def _settled(campaign: Campaign, customer_id: Any, key: Any) -> Any:
    """The send log holds this occasion in a status no pass decides again (anything but ``deferred``).

    An index search on the log's UNIQUE (customer, campaign, occasion key).
    """
    return (
        select(col(SendLog.id))
        .where(
            col(SendLog.customer_id) == customer_id,
            col(SendLog.campaign) == campaign.name,
            col(SendLog.occasion_key) == key,
            col(SendLog.status) != SendStatus.DEFERRED,
            col(SendLog.is_test).is_(False),
        )
        .exists()
    )


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
        for cid, iid, ikind, occurred, amount, reference in session.connection().execute(query):
            found.setdefault(cid, []).append(InteractionFact(iid, ikind, occurred, amount, reference))
    return {cid: tuple(items) for cid, items in found.items()}


def _recent_from_spell_start(
    session: Session, customer_ids: Sequence[int], since: datetime
) -> dict[int, tuple[InteractionFact, ...]]:
    """Each customer's interactions from ``since`` onward and the last one before it, oldest first.

    That last one started the silent spell under way at ``since``. Per
    customer: one index search for it, then a range of the customer/time index.
    """
    earlier = aliased(Interaction)
    occurred = col(Interaction.occurred_at)
    start_at = func.coalesce(
        select(func.max(col(earlier.occurred_at)))
        .where(col(earlier.customer_id) == col(Customer.id), col(earlier.occurred_at) < since)
        .scalar_subquery(),
        literal(since, occurred.type),  # type: ignore[attr-defined]  # compared as the column stores it
    )
    found: dict[int, list[InteractionFact]] = {}
    for start in range(0, len(customer_ids), 900):  # SQLite caps bound parameters
        query = (
            select(
                Interaction.customer_id, Interaction.id, Interaction.kind, Interaction.occurred_at,
                Interaction.amount, Interaction.reference,
            )
            .join_from(Customer, Interaction, col(Interaction.customer_id) == col(Customer.id))
            .where(col(Customer.id).in_(customer_ids[start : start + 900]), occurred >= start_at)
            .order_by(Interaction.customer_id, Interaction.occurred_at, Interaction.id)
        )
        for cid, iid, ikind, occurred_at, amount, reference in session.execute(query):
            found.setdefault(cid, []).append(InteractionFact(iid, ikind, occurred_at, amount, reference))
    return {cid: tuple(items) for cid, items in found.items()}


def logged_statuses(session: Session, customer_ids: Sequence[int]) -> dict[tuple[int, str, str], str]:
    """(customer, campaign, key) → status, for the given customers' send-log rows."""
    found: dict[tuple[int, str, str], str] = {}
    for start in range(0, len(customer_ids), 900):  # SQLite caps bound parameters
        chunk = customer_ids[start : start + 900]
        rows = session.connection().execute(
            select(SendLog.customer_id, SendLog.campaign, SendLog.occasion_key, SendLog.status).where(
                SendLog.customer_id.in_(chunk), SendLog.is_test.is_(False)  # type: ignore[attr-defined]
            )
        ).all()
        for cid, campaign, key, status in rows:
            found[(cid, campaign, key)] = status
    return found


@dataclass(frozen=True, slots=True)
class Deferral:
    """A send-log row held back (``deferred``) by an earlier pass."""

    id: int
    customer_id: int
    campaign: str
    key: str
    due: date
    reason: str


def deferrals(session: Session, due_before: date | None = None, due_from: date | None = None) -> list[Deferral]:
    """Every ``deferred`` row, optionally only those due in [``due_from``, ``due_before``), by due date."""
    query = select(
        col(SendLog.id), col(SendLog.customer_id), col(SendLog.campaign), col(SendLog.occasion_key),
        col(SendLog.due_date), col(SendLog.reason),
    ).where(col(SendLog.status) == SendStatus.DEFERRED)
    if due_before is not None:
        query = query.where(col(SendLog.due_date) < due_before)
    if due_from is not None:
        query = query.where(col(SendLog.due_date) >= due_from)
    rows = session.connection().execute(query.order_by(col(SendLog.due_date), col(SendLog.id)))
    return [Deferral(int(row[0] or 0), *row[1:]) for row in rows]


# One-bigint advisory lock keys ("mailer:plan", "mailer:cap"); worker leases use the
# separate two-int4 key space (mailer.outbox_lease), so they never collide with these.
PLAN_LOCK = 0x6D61696C65723A70
CAP_LOCK = 0x6D61696C65723A63

INTERRUPTED = (
    "interrupted while sending: the process died between claiming it and recording the SMTP reply, "
    "so it may or may not have been delivered (look for its Message-ID at the relay); "
    "`mailer requeue ID` sends it again"
)


def try_plan_lock(session: Session) -> bool:
    """Become the one process that plans now (PostgreSQL: a transaction-level advisory lock).

    True if this session's transaction holds the lock until it commits or
    rolls back; False if another process is planning at this moment. SQLite
    has one process per store (the lock file), so it always gets it.
    """
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(session.execute(select(func.pg_try_advisory_xact_lock(PLAN_LOCK))).scalar())


def claim_next(session: Session, now: datetime, claimer: int, daily_cap: int = 0) -> int | None:
    """Claim the next due ``queued`` row as ``sending`` for ``claimer``; its id, or None.

    One statement, so it is atomic on its own: on PostgreSQL the candidate is
    picked ``FOR UPDATE SKIP LOCKED`` (workers never wait for, or take, each
    other's row) and the update is still conditional on ``queued``; on SQLite
    the statement holds the database's write lock. With ``daily_cap`` the row
    is claimed only while fewer than ``daily_cap`` messages were sent in the
    24 hours before ``now`` or are in flight; PostgreSQL workers take that
    decision one at a time under an advisory lock, so the cap holds across
    processes. The caller commits, before the SMTP transaction starts.
    """
    return _claim(session, None, now, claimer, daily_cap, {})


def claim(
    session: Session,
    row_id: int,
    now: datetime,
    claimer: int,
    daily_cap: int = 0,
    noted: dict[str, Any] | None = None,
    *,
    reachable: tuple[int, str] | None = None,
) -> bool:
    """Claim the row ``row_id`` as ``sending`` if it is still ``queued`` and due; False if not.

    For a message rendered before its row was claimed: ``noted`` (subject,
    Message-ID, address) is written by the same statement, and with
    ``reachable=(customer id, address)`` the row is claimed only if that
    customer still has that address and has neither unsubscribed nor been
    suppressed (False otherwise: see :func:`customer_state` for which). The
    same rules as :func:`claim_next`: on PostgreSQL the row is picked ``FOR
    UPDATE SKIP LOCKED``, the update is conditional, the daily cap honoured,
    and the caller commits before the SMTP transaction starts.
    """
    return _claim(session, row_id, now, claimer, daily_cap, noted or {}, reachable) is not None


# The sending loop runs a handful of statements per message. They are built once and
# then only executed with new parameters, on the session's connection (Core statements
# need none of the ORM's handling): building SQLAlchemy constructs anew for every
# message cost more CPU than the message's SMTP transaction.
_LOG = SendLog.__table__  # type: ignore[attr-defined]
_CUSTOMER = Customer.__table__  # type: ignore[attr-defined]


def _param(name: str, column: Any) -> Any:
    """A bound parameter typed like ``column`` (stored as the column stores it)."""
    return bindparam(name, type_=column.type)


def _claim(
    session: Session,
    row_id: int | None,
    now: datetime,
    claimer: int,
    daily_cap: int,
    noted: dict[str, Any],
    reachable: tuple[int, str] | None = None,
) -> int | None:
    postgres = session.get_bind().dialect.name == "postgresql"
    if daily_cap and postgres:
        session.execute(select(func.pg_advisory_xact_lock(CAP_LOCK)))
    statement = _claim_statement(row_id is None, postgres, bool(daily_cap), tuple(sorted(noted)), reachable is not None)
    params: dict[str, Any] = {"row_id": row_id, "now": now, "claimer": claimer, "since": now - timedelta(days=1)}
    params |= {f"noted_{key}": value for key, value in noted.items()}
    params["cap"] = daily_cap
    if reachable is not None:
        params["reach_customer"], params["reach_address"] = reachable
    claimed: int | None = session.connection().execute(statement, params).scalar_one_or_none()
    return claimed


@functools.cache
def _claim_statement(next_due: bool, postgres: bool, capped: bool, noted: tuple[str, ...], reachable: bool) -> Any:
    """``UPDATE send_log SET status = 'sending' … WHERE id = (the row, if still queued and due) RETURNING id``."""
    candidate = _LOG.alias("candidate")  # its own FROM: an un-aliased subquery would be correlated to the UPDATE
    now = _param("now", _LOG.c.claimed_at)
    pick = select(candidate.c.id).where(candidate.c.status == SendStatus.QUEUED, candidate.c.next_attempt_at <= now)
    if next_due:
        pick = pick.order_by(candidate.c.next_attempt_at, candidate.c.id).limit(1)
    else:
        pick = pick.where(candidate.c.id == bindparam("row_id"))
    if postgres:
        # A row another worker is claiming right now is skipped at once, never waited for.
        pick = pick.with_for_update(skip_locked=True)
    statement = update(_LOG).where(_LOG.c.id == pick.scalar_subquery(), _LOG.c.status == SendStatus.QUEUED)
    if capped:
        statement = statement.where(_counted_by_cap().scalar_subquery() < bindparam("cap"))
    if reachable:
        statement = statement.where(
            select(_CUSTOMER.c.id)
            .where(
                _CUSTOMER.c.id == bindparam("reach_customer"),
                _CUSTOMER.c.email == bindparam("reach_address"),
                _CUSTOMER.c.unsubscribed_at.is_(None),
                _CUSTOMER.c.suppressed_at.is_(None),
            )
            .exists()
        )
    return statement.values(
        status=SendStatus.SENDING,
        claimed_by=bindparam("claimer"),
        claimed_at=now,
        attempts=_LOG.c.attempts + 1,
        first_attempt_at=func.coalesce(_LOG.c.first_attempt_at, now),
        updated_at=now,
        **{key: _param(f"noted_{key}", _LOG.c[key]) for key in noted},
    ).returning(_LOG.c.id)


def due_rows(
    session: Session, now: datetime, exclude: Iterable[int], limit: int, shuffle: int = 0
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Due ``queued`` rows with their customers, not yet claimed, for rendering ahead of the claim.

    Each as two dicts of column values (what a composer process rebuilds the
    row and the customer from; reading them as ORM objects first cost the
    sending process more than it needs them). Oldest due first. ``shuffle``
    (non-zero, PostgreSQL) orders rows due at the same instant by a
    permutation of their ids, so several workers rendering ahead start at
    different rows instead of all at the head.
    """
    order: list[Any] = [_LOG.c.next_attempt_at]
    if shuffle and session.get_bind().dialect.name == "postgresql":
        order.append(func.mod(cast(_LOG.c.id, BigInteger) * literal(shuffle, BigInteger), 2147483629))
    order.append(_LOG.c.id)
    query = (
        select(*_LOG.c, *_CUSTOMER.c)
        .select_from(_LOG.join(_CUSTOMER, _CUSTOMER.c.id == _LOG.c.customer_id))
        .where(_LOG.c.status == SendStatus.QUEUED, _LOG.c.next_attempt_at <= now)
        .order_by(*order)
        .limit(limit)
    )
    excluded = sorted(exclude)
    if excluded:
        query = query.where(_LOG.c.id.not_in(excluded))
    log_keys = [column.key for column in _LOG.c]
    customer_keys = [column.key for column in _CUSTOMER.c]
    split = len(log_keys)
    return [
        (dict(zip(log_keys, values[:split], strict=True)), dict(zip(customer_keys, values[split:], strict=True)))
        for values in session.connection().execute(query)
    ]


@dataclass(frozen=True, slots=True)
class CustomerState:
    """What must be re-read right before a message goes: whether the customer opted out, and their address."""

    why: str | None  # "suppressed", "unsubscribed", or None
    email: str


def customer_state(session: Session, customer_id: int) -> CustomerState:
    unsubscribed, suppressed, email = session.execute(_CUSTOMER_STATE, {"customer_id": customer_id}).one()
    why = "suppressed" if suppressed is not None else "unsubscribed" if unsubscribed is not None else None
    return CustomerState(why, email)


_CUSTOMER_STATE = select(_CUSTOMER.c.unsubscribed_at, _CUSTOMER.c.suppressed_at, _CUSTOMER.c.email).where(
    _CUSTOMER.c.id == bindparam("customer_id")
)


def mark_emailed(
    session: Session, customer_id: int, now: datetime, *, day: date | None = None, default_zone: str = "UTC"
) -> None:
    """Note that a message reached the customer (the frequency cap counts from it); the caller commits.

    With ``day`` (a pass that stands for that day) the customer counts as
    emailed at noon of ``day`` in their own zone, not at ``now``: the cap of
    the following days' passes counts from the day the pass stood for.
    """
    if day is not None:
        zone = session.connection().execute(_CUSTOMER_ZONE, {"customer_id": customer_id}).scalar_one()
        now = noon(day, zone or default_zone)
    session.connection().execute(_MARK_EMAILED, {"customer_id": customer_id, "now": now})


_CUSTOMER_ZONE = select(_CUSTOMER.c.timezone).where(_CUSTOMER.c.id == bindparam("customer_id"))


_MARK_EMAILED = (
    update(_CUSTOMER)
    .where(_CUSTOMER.c.id == bindparam("customer_id"))
    .values(last_emailed_at=_param("now", _CUSTOMER.c.last_emailed_at))
)


@functools.cache
def _counted_by_cap() -> Select[tuple[int]]:
    """Messages sent since ``:since`` plus those being sent: what the daily cap counts."""
    sent = select(func.count()).where(_LOG.c.sent_at > _param("since", _LOG.c.sent_at)).scalar_subquery()
    in_flight = select(func.count()).where(_LOG.c.status == SendStatus.SENDING).scalar_subquery()
    return select(sent + in_flight)


def sent_or_in_flight(session: Session, now: datetime) -> int:
    """Messages sent in the 24 hours before ``now`` plus those being sent: what the daily cap counts."""
    return int(session.execute(_counted_by_cap(), {"since": now - timedelta(days=1)}).scalar_one())


def hold_for_cap(session: Session, now: datetime, daily_cap: int) -> int:
    """Say on every due ``queued`` row why it waits (the cap); returns how many. Nothing is dropped."""
    result = session.execute(
        update(SendLog)
        .where(col(SendLog.status) == SendStatus.QUEUED, col(SendLog.next_attempt_at) <= now)
        .values(reason=f"waiting: daily cap of {daily_cap} messages in 24 hours reached", updated_at=now)
    )
    session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


def finish(session: Session, row_id: int, claimer: int, values: dict[str, Any]) -> bool:
    """Record a claimed row's outcome (the caller commits); False if the claim is no longer ours.

    Conditional on ``claimed_by``: if this process's lease was lost for a
    while and another process turned the row into ``unknown``, the real
    outcome still replaces that guess; a row requeued and claimed by someone
    else since is left alone.
    """
    params = {"row_id": row_id, "claimer": claimer} | {f"value_{key}": value for key, value in values.items()}
    result = session.connection().execute(_finish_statement(tuple(values)), params)
    return bool(result.rowcount == 1)


@functools.cache
def _finish_statement(keys: tuple[str, ...]) -> Any:
    return (
        update(_LOG)
        .where(
            _LOG.c.id == bindparam("row_id"),
            _LOG.c.claimed_by == bindparam("claimer"),
            # Two comparisons, not IN (…): an IN list is re-expanded into the SQL on every execution.
            or_(_LOG.c.status == SendStatus.SENDING, _LOG.c.status == SendStatus.UNKNOWN),
        )
        .values({key: _param(f"value_{key}", _LOG.c[key]) for key in keys})
    )


def recover_interrupted(engine: Engine, now: datetime | None = None) -> list[int]:
    """Turn rows left ``sending`` by processes that have died into ``unknown``; returns their ids.

    Such a row may or may not have been delivered, so it is never resent
    automatically: ``mailer log --status unknown`` lists it and ``mailer
    requeue`` sends it after a human look. Safe at any time and from any
    number of processes: a row is touched only when the lease of the process
    that claimed it is gone (mailer.outbox_lease), never because it is old, and
    never this process's own rows.
    """
    own = lease_for(engine).key
    moment = now or utcnow()
    recovered: list[int] = []
    with engine.begin() as connection:
        sending = col(SendLog.status) == SendStatus.SENDING
        claimers = connection.execute(select(col(SendLog.claimed_by)).where(sending).distinct()).scalars().all()
        for key in claimers:
            if key == own or not is_dead(engine, connection, key):
                continue
            owner = col(SendLog.claimed_by).is_(None) if key is None else col(SendLog.claimed_by) == key
            ids = connection.execute(
                update(SendLog)
                .where(sending, owner)
                .values(status=SendStatus.UNKNOWN, reason=INTERRUPTED, updated_at=moment)
                .returning(col(SendLog.id))
            ).scalars().all()
            recovered.extend(row_id for row_id in ids if row_id is not None)
    return sorted(recovered)


def has_due(session: Session, now: datetime) -> bool:
    """Whether any ``queued`` row is due for an attempt at ``now``."""
    query = select(col(SendLog.id)).where(col(SendLog.status) == SendStatus.QUEUED, col(SendLog.next_attempt_at) <= now)
    return session.execute(query.limit(1)).first() is not None


REQUEUEABLE = frozenset({SendStatus.UNKNOWN, SendStatus.FAILED})


def requeue(session: Session, row_ids: Sequence[int], now: datetime) -> dict[int, str]:
    """Queue ``unknown`` or ``failed`` rows again, all or none; returns id → the status each had, committed.

    Raises StoreError naming every id that does not exist or is in another
    status (nothing is changed then). The move is a conditional update, so a
    row that changed meanwhile is not touched.
    """
    query = select(col(SendLog.id), col(SendLog.status)).where(
        col(SendLog.id).in_(sorted(set(row_ids))), col(SendLog.is_test).is_(False)
    )
    found: dict[int, str] = {row_id: status for row_id, status in session.execute(query).all()}
    problems = [f"{i}: no such send-log row" for i in row_ids if i not in found]
    problems += [
        f"{i}: is {found[i]}; only {' or '.join(sorted(REQUEUEABLE))} rows can be requeued"
        for i in row_ids
        if i in found and found[i] not in REQUEUEABLE
    ]
    if problems:
        raise StoreError("nothing requeued: " + "; ".join(dict.fromkeys(problems)))
    for row_id, status in found.items():
        moved = session.execute(
            update(SendLog)
            .where(col(SendLog.id) == row_id, col(SendLog.status) == status)
            .values(status=SendStatus.QUEUED, reason=f"requeued by hand (was {status})", next_attempt_at=now)
            # A fresh retry window: a row that had given up gets its days of retries again.
            .values(updated_at=now, first_attempt_at=None)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            raise StoreError(f"nothing requeued: {row_id} changed while requeueing; look again")
    session.commit()
    return found
