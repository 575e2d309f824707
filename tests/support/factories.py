"""Small builders for test data in a real store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from mailer.config import Settings
from mailer.outbox import decisions
from mailer.planning import plan as planning
from mailer.planning.clock import PassClock
from mailer.store.tables import Customer, SendLog, SendStatus, month_day
from tests.support.smtpserver import SmtpServer


def add_customer(engine: Engine, external_id: str, *, since: date, email: str | None = None, **fields: Any) -> int:
    """Insert one customer; ``birthday=date(...)`` fills the month/day columns. Returns its id."""
    birthday: date | None = fields.pop("birthday", None)
    if birthday is not None:
        fields.update(
            birthday_year=birthday.year,
            birthday_month=birthday.month,
            birthday_day=birthday.day,
            birthday_md=month_day(birthday),
        )
    customer = Customer(
        external_id=external_id,
        email=email or f"{external_id.lower()}@example.com",
        customer_since=since,
        since_md=month_day(since),
        **fields,
    )
    with Session(engine) as session:
        session.add(customer)
        session.commit()
        assert customer.id is not None
        return customer.id


def deliver_to(settings: Settings, server: SmtpServer, **overrides: Any) -> Settings:
    """``settings`` with an SMTP transport pointed at ``server`` (its CA trusted when it has one)."""
    transport = replace(
        settings.transport,
        kind="smtp",
        host=server.host,
        port=server.port,
        security={"none": "none", "starttls": "starttls", "implicit": "tls"}[server.tls],
        ca_file=Path(server.ca_path) if server.ca_path else None,
        timeout=5.0,
    )
    return replace(settings, transport=replace(transport, **overrides))


def queue_anniversaries(
    engine: Engine,
    settings: Settings,
    addresses: Sequence[str],
    *,
    day: date = date(2026, 11, 23),
    now: datetime = datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
    **fields: Any,
) -> None:
    """One anniversary due on ``day`` per address, planned and queued in the send log at ``now``, in this order."""
    for n, address in enumerate(addresses):
        add_customer(engine, f"C{n:04d}", since=day.replace(year=day.year - 6), email=address, **fields)
    campaigns = [settings.campaign("customer-anniversary")]
    with Session(engine, expire_on_commit=False) as session:
        planned = planning.plan(session, settings, PassClock.on(day, now), campaigns)
        decisions.record(session, planned, {c.name: c for c in campaigns}, now)


def add_sent_question(
    engine: Engine,
    customer_id: int,
    *,
    campaign: str = "how-did-we-do",
    key: str = "follow_up:1",
    sent_at: datetime = datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
) -> int:
    """A follow-up that asked "how did we do?", logged as delivered at ``sent_at``. Returns its send-log row id."""
    row = SendLog(
        customer_id=customer_id, campaign=campaign, occasion_key=key, occasion_kind="follow_up",
        due_date=sent_at.date(), template="follow_up", status=SendStatus.SENT, reason="delivered",
        subject="How was your order?", sent_at=sent_at, created_at=sent_at, updated_at=sent_at,
    )
    with Session(engine) as session:
        session.add(row)
        session.commit()
        assert row.id is not None
        return row.id
