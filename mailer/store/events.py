"""Recording an event for the ``[[webhook]]``s: one row, in the caller's transaction.

An event is written in the same transaction as the change it reports (a row's final
status, an unsubscribe, a suppression), so the two are stored together or not at all and a
crash between recording and delivering loses nothing; mailer/service/events.py delivers them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert
from sqlmodel import Session

from mailer.store.tables import Event, utcnow

_EVENT = Event.__table__  # type: ignore[attr-defined]
# Built once: the sending loop records one event per message, and building the ORM insert
# anew each time cost more than executing it.
_INSERT = insert(_EVENT).values({
    column: bindparam(column, type_=_EVENT.c[column].type)
    for column in ("uid", "kind", "occurred_at", "customer_id", "send_log_id", "data")
})


def record(
    session: Session,
    kind: str,
    *,
    customer_id: int | None = None,
    send_log_id: int | None = None,
    data: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    """Add one event (``sent``, ``bounced``, ``failed``, ``unsubscribed``, ``suppressed``); the caller commits."""
    session.connection().execute(_INSERT, {
        "uid": uuid.uuid4().hex, "kind": kind, "occurred_at": now or utcnow(),
        "customer_id": customer_id, "send_log_id": send_log_id, "data": data or {},
    })
