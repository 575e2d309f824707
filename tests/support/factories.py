"""Small builders for test data in a real store."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from mailer.config import Settings
from mailer.store.tables import Customer, month_day
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
