"""A pass's decisions written to the send log, and deferrals expired once their catch-up is over."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime
from typing import cast

from sqlalchemy import Boolean, Table, bindparam, case, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from mailer.config import Campaign, Settings
from mailer.outbox import gifts
from mailer.planning import candidates
from mailer.planning.clock import PassClock
from mailer.planning.occasions import Occasion
from mailer.planning.plan import PLAN_MARK, Planned, expired_reason, expiry_cutoff
from mailer.store.tables import PlanMark, SendLog, SendStatus


def settle(session: Session, settings: Settings, clock: PassClock) -> Counter[str]:
    """After recording a pass: expire deferrals no pass will decide again, and move the plan mark.

    A deferred occasion that no picker yields any more (the campaign was
    disabled, the customer left the segment) is not decided again; it is
    logged ``skipped: expired`` once it is older than :func:`expiry_cutoff`
    in every time zone, its reason keeping why it was deferred. Returns how
    many rows were expired, per campaign.
    """
    through = clock.planned_through()
    expired: Counter[str] = Counter()
    stale = candidates.deferrals(session, due_before=expiry_cutoff(settings, through))
    if stale:
        table = cast(Table, SendLog.__table__)  # type: ignore[attr-defined]
        statement = (
            update(table)
            .where(table.c.id == bindparam("b_id"), table.c.status == SendStatus.DEFERRED)
            .values(status=SendStatus.SKIPPED, reason=bindparam("reason"), updated_at=clock.now, next_attempt_at=None)
        )
        session.connection().execute(
            statement, [{"b_id": row.id, "reason": expired_reason(through, row.due, row.reason)} for row in stale]
        )
        expired.update(row.campaign for row in stale)
    mark = session.get(PlanMark, PLAN_MARK)
    if mark is None:
        session.add(PlanMark(name=PLAN_MARK, planned_through=through, updated_at=clock.now))
    elif through > mark.planned_through:
        mark.planned_through = through
        mark.updated_at = clock.now
        session.add(mark)
    session.commit()
    return expired


RECORD_BATCH = 2000  # rows per executemany


def record(
    session: Session, planned: Iterable[Planned], by_name: dict[str, Campaign], now: datetime
) -> Counter[str]:
    """Write decisions to the send log and commit: new rows inserted, earlier deferrals updated, nothing else touched.

    In batches (one ``executemany`` each). A new occasion's row is inserted
    unless one exists by then (whoever wrote it first wins: the key is UNIQUE);
    a deferral is decided again only while its row is still ``deferred``, so a
    row another pass has moved on is left alone. In the same transaction, queued
    rows of gift campaigns get their codes (:func:`mailer.outbox.gifts.bind_due`);
    returns how many were deferred for want of one, per campaign.
    """
    table = cast(Table, SendLog.__table__)  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).on_conflict_do_nothing(
        index_elements=["customer_id", "campaign", "occasion_key"]
    )
    redecide = (
        update(table)
        .where(
            table.c.customer_id == bindparam("b_customer_id"),
            table.c.campaign == bindparam("b_campaign"),
            table.c.occasion_key == bindparam("b_occasion_key"),
            table.c.status == SendStatus.DEFERRED,
        )
        .values(status=bindparam("status"), updated_at=now, next_attempt_at=bindparam("next_attempt_at"),
                # An expired deferral keeps why it was deferred after why it expired.
                reason=case((bindparam("history", type_=Boolean), bindparam("reason") + ": " + table.c.reason),
                            else_=bindparam("reason")))
    )
    connection = session.connection()
    new: list[dict[str, object]] = []
    again: list[dict[str, object]] = []
    for item in planned:
        if item.redecided:
            again.append(_redecided_row(item, now))
        else:
            new.append(_new_row(item, by_name, now))
        for statement, rows in ((insert, new), (redecide, again)):
            if len(rows) >= RECORD_BATCH:
                connection.execute(statement, rows)
                rows.clear()
    for statement, rows in ((insert, new), (redecide, again)):
        if rows:
            connection.execute(statement, rows)
    held = gifts.bind_due(session, by_name.values(), now)
    session.commit()
    return held


def _new_row(item: Planned, by_name: dict[str, Campaign], now: datetime) -> dict[str, object]:
    occasion = item.decision.occasion
    status = item.decision.status
    return {
        "customer_id": occasion.customer_id,
        "campaign": occasion.campaign,
        "occasion_key": occasion.key,
        "occasion_kind": occasion.kind,
        "due_date": occasion.due,
        "occasion": json_details(occasion),
        "template": by_name[occasion.campaign].template,
        "status": status,
        "reason": item.decision.reason,
        "to_address": item.customer.email,
        "next_attempt_at": now if status == SendStatus.QUEUED else None,
        "created_at": now,
        "updated_at": now,
    }


def _redecided_row(item: Planned, now: datetime) -> dict[str, object]:
    occasion = item.decision.occasion
    status = item.decision.status
    return {
        "b_customer_id": occasion.customer_id,
        "b_campaign": occasion.campaign,
        "b_occasion_key": occasion.key,
        "status": status,
        "reason": item.decision.reason,
        "history": item.decision.history,
        "next_attempt_at": now if status == SendStatus.QUEUED else None,
    }


def json_details(occasion: Occasion) -> dict[str, object]:
    return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in occasion.details.items()}
