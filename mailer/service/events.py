"""Events out: every recorded event POSTed to each ``[[webhook]]`` that wants its kind, signed, until it lands.

The queue is in the store. Each webhook takes new events into ``event_delivery`` rows as far as
its cursor (``event_cursor``), then delivers them oldest first: a row is claimed with a
conditional update (``sending`` until a deadline, so a worker killed mid-POST leaves it to be
tried again), POSTed, and marked ``delivered``; a refusal schedules the next try with backoff,
and an event older than the webhook's ``max_age`` is given up (``failed``). Delivery is at least
once: a receiver that answered but whose answer was lost gets the event again, with the same
``id`` to de-duplicate by.

The body is JSON ``{"id", "type", "occurred_at", "data"}``; ``X-Mailer-Signature: t=<unix time>,
v1=<hex HMAC-SHA256 of "<t>.<body>" with the webhook's secret>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, insert, or_, select, update
from sqlmodel import Session, col

from mailer.config import EventHookSettings, Settings
from mailer.service.posting import PostFailed, post_json
from mailer.store.tables import Customer, Event, EventCursor, EventDelivery, SendLog, utcnow

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Mailer-Signature"
ID_HEADER = "X-Mailer-Event-Id"
FAN_OUT_BATCH = 500
FIRST_RETRY = timedelta(seconds=30)
LONGEST_WAIT = timedelta(hours=1)


def retry_delay(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min … doubling after each failed attempt, at most an hour."""
    return min(FIRST_RETRY * int(2 ** max(attempts - 1, 0)), LONGEST_WAIT)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value: ``t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def deliver(
    engine: Engine, settings: Settings, *, now: datetime | None = None, should_stop: Callable[[], bool] = lambda: False
) -> dict[str, int]:
    """Take new events in and deliver what is due, for every webhook; how many each one delivered."""
    moment = now or utcnow()
    delivered: dict[str, int] = {}
    for hook in settings.watch.webhooks:
        take_in(engine, hook, moment)
        delivered[hook.name] = _deliver_due(engine, hook, moment, should_stop)
    return delivered


def take_in(engine: Engine, hook: EventHookSettings, now: datetime) -> int:
    """Add deliveries for the events after the hook's cursor (its kinds, within max_age); how many."""
    added = 0
    while True:
        with Session(engine) as session:
            cursor = session.get(EventCursor, hook.name)
            if cursor is None:
                session.add(EventCursor(webhook=hook.name, last_event_id=0))
                session.commit()
                continue
            start = cursor.last_event_id
            batch = session.execute(
                select(col(Event.id), col(Event.kind), col(Event.occurred_at))
                .where(col(Event.id) > start).order_by(col(Event.id)).limit(FAN_OUT_BATCH)
            ).all()
            if not batch:
                return added
            wanted = [(i,) for i, kind, at in batch if kind in hook.events and at >= now - hook.max_age]
            moved = session.execute(
                update(EventCursor)
                .where(col(EventCursor.webhook) == hook.name, col(EventCursor.last_event_id) == start)
                .values(last_event_id=batch[-1][0])
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]  # another worker took this batch
                session.rollback()
                continue
            if wanted:
                session.execute(insert(EventDelivery), [
                    {"event_id": i, "webhook": hook.name, "status": "pending", "attempts": 0, "next_attempt_at": now,
                     "last_error": ""} for (i,) in wanted
                ])
            session.commit()
            added += len(wanted)


def _deliver_due(engine: Engine, hook: EventHookSettings, now: datetime, should_stop: Callable[[], bool]) -> int:
    url, secret = hook.url.reveal(), hook.secret.reveal()
    done = 0
    while not should_stop():
        claimed = _claim(engine, hook, now)
        if claimed is None:
            return done
        delivery_id, event_id, attempts = claimed
        event, body = _body(engine, event_id)
        headers = {SIGNATURE_HEADER: sign(secret, int(now.timestamp()), body), ID_HEADER: event.uid}
        try:
            post_json(url, body, headers=headers, timeout=hook.timeout, ca_file=hook.ca_file)
        except PostFailed as exc:
            _refused(engine, hook, delivery_id, event, attempts + 1, str(exc), now)
            return done  # the receiver is unwell: the rest wait for the next round, in order
        _finish(engine, delivery_id, status="delivered", attempts=attempts + 1, delivered_at=now, last_error="")
        done += 1
    return done


def _claim(engine: Engine, hook: EventHookSettings, now: datetime) -> tuple[int, int, int] | None:
    """The oldest due delivery of this hook, moved to ``sending`` for exactly one worker; None when none is due."""
    due = or_(
        (col(EventDelivery.status) == "pending") & (col(EventDelivery.next_attempt_at) <= now),
        # Claimed by a worker that died (or hung) mid-POST: its deadline passed.
        (col(EventDelivery.status) == "sending") & (col(EventDelivery.claimed_until) < now),
    )
    with Session(engine) as session:
        found = session.execute(
            select(col(EventDelivery.id)).where(col(EventDelivery.webhook) == hook.name, due)
            .order_by(col(EventDelivery.id)).limit(1)
        ).scalar_one_or_none()
        if found is None:
            return None
        row = session.execute(
            update(EventDelivery)
            .where(col(EventDelivery.id) == found, due)
            .values(status="sending", claimed_until=now + timedelta(seconds=hook.timeout) + FIRST_RETRY)
            .returning(col(EventDelivery.id), col(EventDelivery.event_id), col(EventDelivery.attempts))
        ).first()
        session.commit()
    return None if row is None else (row[0], row[1], row[2])


def _refused(
    engine: Engine, hook: EventHookSettings, delivery_id: int, event: Event, attempts: int, error: str, now: datetime
) -> None:
    if now - event.occurred_at >= hook.max_age:
        log.error("webhook %s: event %s given up after %d attempts: %s", hook.name, event.uid, attempts, error)
        _finish(engine, delivery_id, status="failed", attempts=attempts, last_error=error[:1000])
        return
    log.warning("webhook %s: event %s not delivered (attempt %d), tried again later: %s",
                hook.name, event.uid, attempts, error)
    _finish(engine, delivery_id, status="pending", attempts=attempts, next_attempt_at=now + retry_delay(attempts),
            last_error=error[:1000])


def _finish(engine: Engine, delivery_id: int, **values: Any) -> None:
    with Session(engine) as session:
        session.execute(
            update(EventDelivery).where(col(EventDelivery.id) == delivery_id).values(claimed_until=None, **values)
        )
        session.commit()


def _body(engine: Engine, event_id: int) -> tuple[Event, bytes]:
    """The event as its receiver reads it: what happened, to whom, for which message."""
    with Session(engine, expire_on_commit=False) as session:
        event = session.get(Event, event_id)
        assert event is not None
        data: dict[str, Any] = dict(event.data)
        customer_id = event.customer_id
        if event.send_log_id is not None:
            row = session.get(SendLog, event.send_log_id)
            if row is not None:
                customer_id = row.customer_id
                data |= {"send_log_id": row.id, "campaign": row.campaign, "occasion": row.occasion_key,
                         "to": row.to_address, "message_id": row.message_id, "subject": row.subject}
        if customer_id is not None:
            customer = session.get(Customer, customer_id)
            if customer is not None:
                data |= {"customer": customer.external_id, "email": data.get("to") or customer.email}
    payload = {"id": event.uid, "type": event.kind, "occurred_at": event.occurred_at.isoformat(), "data": data}
    return event, json.dumps(payload, sort_keys=True).encode()


def backlog(engine: Engine) -> dict[str, dict[str, int]]:
    """Per webhook, how many deliveries are in each status (``mailer status``)."""
    found: dict[str, dict[str, int]] = {}
    with Session(engine) as session:
        query = select(col(EventDelivery.webhook), col(EventDelivery.status), func.count()).group_by(
            col(EventDelivery.webhook), col(EventDelivery.status)
        )
        for webhook, status, count in session.execute(query).all():
            found.setdefault(webhook, {})[status] = count
    return found
