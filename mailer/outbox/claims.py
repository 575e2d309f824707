"""Claiming due send-log rows and finishing them: the conditional updates that make every send exactly once.

A row is claimed (``queued`` to ``sending``) by one worker with a conditional update and
finished only by the worker that claimed it; the daily cap is counted in the same statements.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Select,
    bindparam,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlmodel import Session, col

from mailer.planning.occasions import noon
from mailer.store.tables import CampaignOptOut, Customer, SendLog, SendStatus

CAP_LOCK = 0x6D61696C65723A63


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
_OPTED_OUT = CampaignOptOut.__table__  # type: ignore[attr-defined]


def _left_campaign(customer_id: Any, campaign: Any) -> Any:
    """The customer has left this campaign on the preference page (an index search on its UNIQUE key)."""
    return (
        select(_OPTED_OUT.c.id)
        .where(_OPTED_OUT.c.customer_id == customer_id, _OPTED_OUT.c.campaign == campaign)
        .exists()
    )


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
            .exists(),
            ~_left_campaign(bindparam("reach_customer"), _LOG.c.campaign),
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

    why: str | None  # "suppressed", "unsubscribed", "opted out of campaign", or None
    email: str


def customer_state(session: Session, customer_id: int, campaign: str | None = None) -> CustomerState:
    """Whether the customer can still be mailed (with ``campaign``: mailed by that campaign) and their address."""
    unsubscribed, suppressed, email = session.execute(_CUSTOMER_STATE, {"customer_id": customer_id}).one()
    why = "suppressed" if suppressed is not None else "unsubscribed" if unsubscribed is not None else None
    if why is None and campaign is not None and left_campaign(session, customer_id, campaign):
        why = "opted out of campaign"
    return CustomerState(why, email)


def left_campaign(session: Session, customer_id: int, campaign: str) -> bool:
    """The customer has left ``campaign`` since its message was queued (re-read just before sending)."""
    return bool(session.execute(select(_left_campaign(customer_id, campaign))).scalar())


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
    # Never backwards: a pass standing for an earlier day must not shorten the cap of a later email.
    .values(
        last_emailed_at=case(
            (
                or_(
                    _CUSTOMER.c.last_emailed_at.is_(None),
                    _CUSTOMER.c.last_emailed_at < _param("now", _CUSTOMER.c.last_emailed_at),
                ),
                _param("now", _CUSTOMER.c.last_emailed_at),
            ),
            else_=_CUSTOMER.c.last_emailed_at,
        )
    )
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


def has_due(session: Session, now: datetime) -> bool:
    """Whether any ``queued`` row is due for an attempt at ``now``."""
    query = select(col(SendLog.id)).where(col(SendLog.status) == SendStatus.QUEUED, col(SendLog.next_attempt_at) <= now)
    return session.execute(query.limit(1)).first() is not None
