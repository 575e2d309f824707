"""Gift codes and send-log rows: each queued email of a gift campaign gets one code, exactly once.

A code is bound in the transaction that records the decision (:func:`bind_due`,
called by :func:`mailer.outbox.decisions.record`), and written onto the row
(``send_log.gift``), so a retry, a requeue or a restart after a crash renders
the same code. ``gift_code.send_log_id`` is UNIQUE: a row never holds two
codes, and a code is bound to one row at a time. On PostgreSQL the rows and
the codes are both taken ``FOR UPDATE SKIP LOCKED``, so two processes binding
at once never take the same code; on SQLite the binding transaction holds the
database's write lock. A pool with no code left defers the occasion with the
reason ``gift pool 'NAME' is empty``: it is decided again by later passes and
never goes out without its gift.

A row that ends without reaching its customer (``failed``, ``bounced``,
``skipped``) gives its code back (:func:`release`): a pooled code returns to
the pool, a generated one is voided, each with the row and the reason.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, and_, bindparam, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from mailer.config import Campaign, Gift
from mailer.outbox.giftcodes import CodeMaker
from mailer.store.tables import Customer, GiftCode, GiftState, SendLog, SendStatus

ENDED_UNSEEN = (SendStatus.FAILED, SendStatus.BOUNCED, SendStatus.SKIPPED)

_CODES = GiftCode.__table__  # type: ignore[attr-defined]
_LOG = SendLog.__table__  # type: ignore[attr-defined]
_CHUNK = 900  # SQLite caps bound parameters


def empty_reason(gift: Gift) -> str:
    return f"gift pool {gift.name!r} is empty"


def gift_view(gift: Gift, code: str, expires: date | None) -> dict[str, Any]:
    """What ``send_log.gift`` holds and the ``gift`` template variable is made from."""
    return {"name": gift.name, "label": gift.label, "code": code, "expires": expires.isoformat() if expires else None}


def _valid_until(gift: Gift, today: date, own: date | None) -> date | None:
    """The code's last good day: its own expiry, or ``valid_days`` from today, whichever comes first."""
    limit = today + timedelta(days=gift.valid_days) if gift.valid_days else None
    candidates = [d for d in (own, limit) if d is not None]
    return min(candidates) if candidates else None


def bind_due(session: Session, campaigns: Iterable[Campaign], now: datetime) -> Counter[str]:
    """Give every ``queued`` row of a gift campaign that has none its code; the caller commits.

    Rows whose pool has run dry are deferred (reason :func:`empty_reason`).
    Codes of rows that ended unseen are released first, so they can be given
    again. Returns how many rows were deferred, per campaign.
    """
    release_ended(session, now)
    gifted = {c.name: c.gift for c in campaigns if c.gift is not None}
    if not gifted:
        return Counter()
    postgres = session.get_bind().dialect.name == "postgresql"
    query = (
        select(_LOG.c.id, _LOG.c.campaign)
        .where(
            _LOG.c.status == SendStatus.QUEUED,
            _LOG.c.campaign.in_(sorted(gifted)),
            _LOG.c.gift.is_(None),
            _LOG.c.is_test.is_(False),
        )
        .order_by(_LOG.c.id)
    )
    if postgres:
        query = query.with_for_update(skip_locked=True)
    waiting: dict[str, list[tuple[int, str]]] = defaultdict(list)
    gifts: dict[str, Gift] = {}
    for row_id, campaign in session.connection().execute(query):
        gift = gifted[campaign]
        gifts[gift.name] = gift
        waiting[gift.name].append((row_id, campaign))
    today = now.date()
    held: Counter[str] = Counter()
    for name, rows in waiting.items():
        gift = gifts[name]
        if gift.kind == "generated":
            _bind_generated(session, gift, [row_id for row_id, _ in rows], today, now)
            continue
        left = _bind_pooled(session, gift, rows, today, now, postgres)
        if left:
            _defer(session, [row_id for row_id, _ in left], empty_reason(gift), now)
            held.update(campaign for _, campaign in left)
    return held


def _bind_pooled(
    session: Session, gift: Gift, rows: list[tuple[int, str]], today: date, now: datetime, postgres: bool
) -> list[tuple[int, str]]:
    """Bind the pool's next codes (soonest expiry first) to ``rows``; returns the rows left without one."""
    pick = (
        select(_CODES.c.id, _CODES.c.code, _CODES.c.expires_on)
        .where(_CODES.c.gift == gift.name, _CODES.c.state == GiftState.AVAILABLE, _usable(today))
        .order_by(case((_CODES.c.expires_on.is_(None), 1), else_=0), _CODES.c.expires_on, _CODES.c.id)
        .limit(len(rows))
    )
    if postgres:
        # Codes another process is binding right now are skipped, never waited for or taken twice.
        pick = pick.with_for_update(skip_locked=True)
    codes = session.connection().execute(pick).all()
    pairs = list(zip(rows, codes, strict=False))
    if pairs:
        taken = session.connection().execute(
            update(_CODES)
            .where(_CODES.c.id == bindparam("code_id"), _CODES.c.state == GiftState.AVAILABLE)
            .values(state=GiftState.GIVEN, send_log_id=bindparam("row_id"), given_at=now),
            [{"code_id": code.id, "row_id": row_id} for (row_id, _), code in pairs],
        )
        if taken.rowcount != len(pairs):  # locked above: only a bug elsewhere could get here
            raise RuntimeError(f"gift {gift.name!r}: a picked code was taken meanwhile")
        _write_on_rows(
            session,
            [(row_id, gift_view(gift, code.code, _valid_until(gift, today, code.expires_on)))
             for (row_id, _), code in pairs],
        )
    return rows[len(pairs):]


def _usable(today: date) -> Any:
    return or_(_CODES.c.expires_on.is_(None), _CODES.c.expires_on > today)


def _bind_generated(session: Session, gift: Gift, row_ids: list[int], today: date, now: datetime) -> None:
    """A generated code per row, made from the row's number: a row voided and requeued gets its code back."""
    maker = CodeMaker(gift.secret.reveal(), gift.prefix)
    expires = _valid_until(gift, today, None)
    values = [
        {"gift": gift.name, "code": maker.make(row_id), "generated": True, "expires_on": expires,
         "state": GiftState.GIVEN, "send_log_id": row_id, "given_at": now, "returns": 0, "note": "",
         "added_at": now, "source": "generated"}
        for row_id in row_ids
    ]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    insert = dialect.insert(_CODES)
    upsert = insert.on_conflict_do_update(
        index_elements=["gift", "code"],
        set_={"state": GiftState.GIVEN, "send_log_id": insert.excluded.send_log_id,
              "given_at": insert.excluded.given_at, "expires_on": insert.excluded.expires_on},
    )
    if values:
        session.connection().execute(upsert, values)
        _write_on_rows(session, [(row_id, gift_view(gift, maker.make(row_id), expires)) for row_id in row_ids])


def _write_on_rows(session: Session, views: Sequence[tuple[int, dict[str, Any]]]) -> None:
    session.connection().execute(
        update(_LOG).where(_LOG.c.id == bindparam("row_id")).values(gift=bindparam("view", type_=JSON)),
        [{"row_id": row_id, "view": view} for row_id, view in views],
    )


def _defer(session: Session, row_ids: list[int], reason: str, now: datetime) -> None:
    for start in range(0, len(row_ids), _CHUNK):
        session.connection().execute(
            update(_LOG)
            .where(_LOG.c.id.in_(row_ids[start : start + _CHUNK]), _LOG.c.status == SendStatus.QUEUED)
            .values(status=SendStatus.DEFERRED, reason=reason, next_attempt_at=None, updated_at=now)
        )


def release(session: Session, row_id: int, why: str, now: datetime) -> bool:
    """Give back the code of a row that ended unseen (the caller commits); whether it had one.

    A pooled code goes back to the pool, a generated one is voided; the row
    forgets its gift, so a requeue binds one again.
    """
    note = f"send-log row {row_id} {why}"[:1000]
    result = session.connection().execute(
        update(_CODES)
        .where(_CODES.c.send_log_id == row_id, _CODES.c.state == GiftState.GIVEN)
        .values(
            state=case((_CODES.c.generated, GiftState.VOID), else_=GiftState.AVAILABLE),
            send_log_id=None,
            given_at=None,
            returned_at=now,
            returns=_CODES.c.returns + 1,
            note=note,
        )
    )
    session.connection().execute(
        update(_LOG).where(_LOG.c.id == row_id, _LOG.c.gift.is_not(None)).values(gift=None)
    )
    return bool(result.rowcount)


def release_ended(session: Session, now: datetime) -> int:
    """Release the codes of every row that has ended unseen since (whatever ended it); how many."""
    ended = session.connection().execute(
        select(_LOG.c.id, _LOG.c.status, _LOG.c.reason)
        .select_from(_CODES.join(_LOG, _LOG.c.id == _CODES.c.send_log_id))
        .where(_CODES.c.state == GiftState.GIVEN, _LOG.c.status.in_(ENDED_UNSEEN))
    ).all()
    for row_id, status, reason in ended:
        release(session, row_id, f"{status}: {reason}", now)
    return len(ended)


# ---- what the pools hold -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GiftCounts:
    name: str
    kind: str
    label: str
    left: int | None  # None: generated, never runs out
    given: int
    returned: int  # times a code came back from an email that never reached its customer
    expired: int  # in the pool, past their expiry: never given
    void: int


def counts(session: Session, gifts: Iterable[Gift], today: date) -> list[GiftCounts]:
    """Per configured gift: codes left, given, returned, expired, voided."""
    expired = and_(_CODES.c.expires_on.is_not(None), _CODES.c.expires_on <= today)
    query = select(
        _CODES.c.gift,
        func.sum(case((and_(_CODES.c.state == GiftState.AVAILABLE, ~expired), 1), else_=0)),
        func.sum(case((_CODES.c.state == GiftState.GIVEN, 1), else_=0)),
        func.sum(_CODES.c.returns),
        func.sum(case((and_(_CODES.c.state == GiftState.AVAILABLE, expired), 1), else_=0)),
        func.sum(case((_CODES.c.state == GiftState.VOID, 1), else_=0)),
    ).group_by(_CODES.c.gift)
    found = {row[0]: [int(v or 0) for v in row[1:]] for row in session.connection().execute(query)}
    rows = []
    for gift in gifts:
        left, given, returned, gone, void = found.get(gift.name, [0, 0, 0, 0, 0])
        rows.append(
            GiftCounts(gift.name, gift.kind, gift.label, None if gift.kind == "generated" else left,
                       given, returned, gone, void)
        )
    return rows


def usable_expiries(session: Session, gift: str, today: date) -> list[date | None]:
    """The expiry of every code still in ``gift``'s pool and usable after ``today`` (None: never expires)."""
    query = select(_CODES.c.expires_on).where(
        _CODES.c.gift == gift, _CODES.c.state == GiftState.AVAILABLE, _usable(today)
    )
    return list(session.connection().execute(query).scalars())


@dataclass(frozen=True, slots=True)
class GivenCode:
    """A code given with an email: what the shop needs to honour and reconcile it."""

    gift: str
    code: str
    external_id: str
    campaign: str
    occasion_key: str
    occasion_date: date
    given_at: datetime
    expires: str  # YYYY-MM-DD or "" (never)
    status: str  # the email's: sent, queued (on its way), unknown …
    send_log_id: int


def given(
    session: Session, gift: str, since: datetime | None = None, *, row_id: int | None = None
) -> list[GivenCode]:
    """Codes of ``gift`` bound to emails (given on or after ``since``; or the one of row ``row_id``), oldest first."""
    query = (
        select(GiftCode, SendLog, col(Customer.external_id))
        .join(SendLog, col(SendLog.id) == col(GiftCode.send_log_id))
        .join(Customer, col(Customer.id) == col(SendLog.customer_id))
        .where(col(GiftCode.gift) == gift, col(GiftCode.state) == GiftState.GIVEN)
        .order_by(col(GiftCode.given_at), col(GiftCode.id))
    )
    if since is not None:
        query = query.where(col(GiftCode.given_at) >= since)
    if row_id is not None:
        query = query.where(col(GiftCode.send_log_id) == row_id)
    out = []
    for code, row, external_id in session.execute(query).all():
        assert code.given_at is not None and row.id is not None
        expires = (row.gift or {}).get("expires") or (code.expires_on.isoformat() if code.expires_on else "")
        out.append(GivenCode(gift, code.code, external_id, row.campaign, row.occasion_key, row.due_date,
                             code.given_at, expires, row.status, row.id))
    return out


@dataclass(frozen=True, slots=True)
class CodeRecord:
    gift: str
    code: str
    state: str
    expires_on: date | None
    note: str
    given: GivenCode | None


def look_up(session: Session, code: str) -> list[CodeRecord]:
    """Every stored code written ``code`` (any gift; letter case ignored), with the email it went with."""
    query = select(GiftCode).where(func.upper(col(GiftCode.code)) == code.strip().upper()).order_by(col(GiftCode.id))
    found = []
    for record in session.execute(query).scalars():
        bound = given(session, record.gift, row_id=record.send_log_id) if record.send_log_id is not None else []
        found.append(CodeRecord(record.gift, record.code, record.state, record.expires_on, record.note,
                                bound[0] if bound else None))
    return found
