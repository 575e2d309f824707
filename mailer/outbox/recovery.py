"""Rows a dead process left ``sending`` become ``unknown``; a human requeues them (or ``failed`` rows) on purpose."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import (
    Engine,
    select,
    update,
)
from sqlmodel import Session, col

from mailer.config import Campaign
from mailer.outbox import gifts
from mailer.outbox.lease import is_dead, lease_for
from mailer.store import StoreError
from mailer.store.tables import SendLog, SendStatus, utcnow

INTERRUPTED = (
    "interrupted while sending: the process died between claiming it and recording the SMTP reply, "
    "so it may or may not have been delivered (look for its Message-ID at the relay); "
    "`mailer requeue ID` sends it again"
)


def recover_interrupted(engine: Engine, now: datetime | None = None) -> list[int]:
    """Turn rows left ``sending`` by processes that have died into ``unknown``; returns their ids.

    Such a row may or may not have been delivered, so it is never resent
    automatically: ``mailer log --status unknown`` lists it and ``mailer
    requeue`` sends it after a human look. Safe at any time and from any
    number of processes: a row is touched only when the lease of the process
    that claimed it is gone (mailer.outbox.lease), never because it is old, and
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


REQUEUEABLE = frozenset({SendStatus.UNKNOWN, SendStatus.FAILED})


def requeue(
    session: Session, row_ids: Sequence[int], now: datetime, campaigns: Iterable[Campaign] = ()
) -> dict[int, str]:
    """Queue ``unknown`` or ``failed`` rows again, all or none; returns id → the status each had, committed.

    A row whose gift code went back when it failed gets one again in the same
    transaction (``campaigns``: the configured ones), or is deferred if its pool is empty.

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
    gifts.bind_due(session, campaigns, now)
    session.commit()
    return found
