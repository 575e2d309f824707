"""The planner's reads: customers who may have an occasion in a pass, and what the send log already holds.

Every query narrows in SQL (month/day keys, metrics, recent interactions) so a pass
never reads the whole store; the pure pickers decide from what comes back.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import (
    String,
    Text,
    and_,
    cast,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from mailer.config import Campaign
from mailer.contacts.since import FROM_IMPORT
from mailer.planning.dates import earliest_instant, latest_instant, month_days_for
from mailer.planning.occasions import CustomerFacts, InteractionFact
from mailer.store import bulk
from mailer.store.tables import Customer, CustomerDate, Feedback, Interaction, SendLog, SendStatus

_FACT_COLUMNS: tuple[Any, ...] = (
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
    # The latest unhappy answer still waiting for a person: one index search per customer, in the same query.
    select(func.max(col(Feedback.unhappy_since)))
    .where(col(Feedback.customer_id) == col(Customer.id))
    .correlate(Customer)
    .scalar_subquery(),
)


def _facts(row: Sequence[Any], default_zone: str, recent: tuple[InteractionFact, ...] = ()) -> CustomerFacts:
    (cid, external_id, email, since, zone, tags, b_month, b_day, b_year,
     orders, spend, interactions, last_interaction, last_emailed, unsubscribed, suppressed, unhappy_since) = row
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
        unhappy_since=unhappy_since,
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
    skip: Collection[int] = (),
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
    never aggregated. ``only`` restricts the query to these customer ids;
    customers in ``skip`` are passed over before their facts and interactions are read.
    """
    first, last = min(dates), max(dates)
    among = None if only is None else partial(bulk.among, session, ids=sorted(only))
    query, recent_from, recent_kind = candidate_query(campaign, dates, first, last, among)
    # Core rows (plain tuples), not the ORM's: a pass reads tens of thousands of them.
    result = session.connection().execute(query.execution_options(yield_per=batch))
    for rows in result.partitions():
        if skip:
            rows = [row for row in rows if row[0] not in skip]
        if campaign.occasion == "date":  # the attribute's date comes as one more column
            for row in rows:
                facts = _facts(row[:-1], default_zone)
                yield replace(facts, dates=((campaign.attribute, row[-1]),))
            continue
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


# Restricts a query to some customers: given a column of customer ids, the criterion (see bulk.among).
Among = Callable[[Any], Any]


def candidate_query(
    campaign: Campaign, dates: Sequence[date], first: date, last: date, among: Among | None = None
) -> tuple[Any, datetime | None, str | None]:
    """(query over customers, read interactions from this instant, of this kind only).

    ``among``: only these customers (a pass's customers with deferrals waiting, one customer's outlook).
    """
    query = select(*_FACT_COLUMNS)
    if among is not None:
        query = query.where(among(col(Customer.id)))
    segment = _may_have_tag(campaign.tags_any)
    if segment is not None:
        query = query.where(segment)
    kind = campaign.occasion
    # A customer_since that only stands in for the day of an import (no order yet) is no day to mark.
    known_since = or_(col(Customer.customer_since_from).is_(None), col(Customer.customer_since_from) != FROM_IMPORT)
    if kind == "anniversary":
        query = query.where(_yearly_open(Customer.since_md, campaign, dates), known_since)
        if campaign.years:  # only some anniversaries (the fifth): customers since those years, by the same rows
            earliest = min(dates).year - max(campaign.years)
            latest = max(dates).year - min(campaign.years)
            query = query.where(col(Customer.customer_since).between(date(earliest, 1, 1), date(latest, 12, 31)))
        return query, None, None
    if kind == "milestone" and campaign.metric == "years_as_customer":
        return query.where(col(Customer.since_md).in_(sorted(month_days_for(dates))), known_since), None, None
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
            select(col(Interaction.customer_id))
            .where(col(Interaction.kind) == campaign.interaction_kind)
            .where(col(Interaction.occurred_at) >= since, col(Interaction.occurred_at) < until)
            .where(~_settled(campaign, col(Interaction.customer_id), key))
        )
        if among is None:  # who ordered then, by the (kind, occurred_at) index, and each of them by the primary key
            return query.where(bulk.in_select(col(Customer.id), who)), since, campaign.interaction_kind
        # A few customers: each one's own interactions, by the customer/time index, not everyone's that week.
        mine = who.where(col(Interaction.customer_id) == col(Customer.id)).exists()
        return query.where(mine), since, campaign.interaction_kind
    if kind == "date":
        return _date_query(campaign, dates, among), None, None
    raise ValueError(f"no candidate query for occasion {kind!r}")


def _date_query(campaign: Campaign, dates: Sequence[date], among: Among | None) -> Any:
    """Customers whose ``campaign.attribute`` date is ``offset_days`` away from one of ``dates`` (by its index)."""
    marked = [day - timedelta(days=campaign.offset_days) for day in dates]
    held = CustomerDate.__table__  # type: ignore[attr-defined]
    query = select(*_FACT_COLUMNS, held.c.value).join(
        held, and_(held.c.customer_id == Customer.id, held.c.attribute == campaign.attribute)
    )
    if among is not None:
        query = query.where(among(col(Customer.id)))
    segment = _may_have_tag(campaign.tags_any)
    if segment is not None:
        query = query.where(segment)
    if campaign.repeat == "once":
        return query.where(held.c.value.in_(sorted(set(marked))))
    return query.where(held.c.md.in_(sorted(month_days_for(marked))), held.c.value <= max(marked))


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
    for chunk in bulk.chunks(session, customer_ids):
        query = (
            select(
                col(Interaction.customer_id), col(Interaction.id), col(Interaction.kind), col(Interaction.occurred_at),
                col(Interaction.amount), col(Interaction.reference),
            )
            .where(bulk.among(session, col(Interaction.customer_id), chunk))
            .where(col(Interaction.occurred_at) >= since)
            .order_by(col(Interaction.customer_id), col(Interaction.occurred_at), col(Interaction.id))
        )
        if kind is not None:
            query = query.where(col(Interaction.kind) == kind)
        for cid, iid, ikind, occurred, amount, reference in session.connection().execute(query).all():
            found.setdefault(cid, []).append(InteractionFact(iid or 0, ikind, occurred, amount, reference))
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
    for chunk in bulk.chunks(session, customer_ids):
        query = (
            select(
                col(Interaction.customer_id), col(Interaction.id), col(Interaction.kind), col(Interaction.occurred_at),
                col(Interaction.amount), col(Interaction.reference),
            )
            .join_from(Customer, Interaction, col(Interaction.customer_id) == col(Customer.id))
            .where(bulk.among(session, col(Customer.id), chunk), occurred >= start_at)
            .order_by(col(Interaction.customer_id), col(Interaction.occurred_at), col(Interaction.id))
        )
        for cid, iid, ikind, occurred_at, amount, reference in session.execute(query).all():
            found.setdefault(cid, []).append(InteractionFact(iid, ikind, occurred_at, amount, reference))
    return {cid: tuple(items) for cid, items in found.items()}


def logged_statuses(session: Session, customer_ids: Sequence[int]) -> dict[tuple[int, str, str], str]:
    """(customer, campaign, key) → status, for the given customers' send-log rows."""
    found: dict[tuple[int, str, str], str] = {}
    for chunk in bulk.chunks(session, customer_ids):
        rows = session.connection().execute(
            select(col(SendLog.customer_id), col(SendLog.campaign), col(SendLog.occasion_key), col(SendLog.status))
            .where(bulk.among(session, col(SendLog.customer_id), chunk), col(SendLog.is_test).is_(False))
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
# separate two-int4 key space (mailer.outbox.lease), so they never collide with these.
PLAN_LOCK = 0x6D61696C65723A70


def try_plan_lock(session: Session) -> bool:
    """Become the one process that plans now (PostgreSQL: a transaction-level advisory lock).

    True if this session's transaction holds the lock until it commits or
    rolls back; False if another process is planning at this moment. SQLite
    has one process per store (the lock file), so it always gets it.
    """
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(session.execute(select(func.pg_try_advisory_xact_lock(PLAN_LOCK))).scalar())


def wait_for_plan_lock(
    session: Session, timeout: timedelta, should_stop: Callable[[], bool] = lambda: False
) -> bool:
    """Wait, at most ``timeout``, for the process planning now to finish; then hold the plan lock.

    True once this session's transaction holds the lock (the other planner committed its plan or
    gave up); False if the wait ran out or ``should_stop`` said so, with the session rolled back.
    The wait is made of short slices so a SIGTERM (a daemon stopping) is noticed within about
    :data:`WAIT_SLICE`, not after the whole timeout. SQLite: always True at once.
    """
    if session.get_bind().dialect.name != "postgresql":
        return True
    deadline = time.monotonic() + timeout.total_seconds()
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or should_stop():
            return False
        milliseconds = max(1, int(min(left, WAIT_SLICE.total_seconds()) * 1000))
        # lock_timeout bounds the wait of this one transaction only (set_config's "local" flag).
        session.execute(select(func.set_config("lock_timeout", str(milliseconds), True)))
        try:
            session.execute(select(func.pg_advisory_xact_lock(PLAN_LOCK)))
        except OperationalError as exc:
            session.rollback()
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise  # not the slice running out (the connection broke): the pass fails and says why
            continue
        return True


# How often a worker waiting for another one's plan looks at its stop flag.
WAIT_SLICE = timedelta(seconds=1)
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout ends a wait
