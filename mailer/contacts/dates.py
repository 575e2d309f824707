"""Customer attributes that hold dates (``renewal_date``), kept in an indexed table for date occasions.

The JSON ``attributes`` column cannot be searched by month/day on every database,
so each attribute whose value is an ISO date (``YYYY-MM-DD``) also gets a
``customer_date`` row. Attributes that a date campaign names must be dates (or
blank): anything else is a row error at import, never a silently missed reminder.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from datetime import date

from sqlalchemy import delete, tuple_
from sqlmodel import Session

from mailer.contacts.fields import parse_date
from mailer.store.tables import CustomerDate, month_day

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def date_attributes(attributes: Mapping[str, str], required: Collection[str]) -> dict[str, date | None]:
    """Each attribute's date, or None when it holds none; raises RowProblem when a ``required`` one is not a date."""
    found: dict[str, date | None] = {}
    for name, value in attributes.items():
        if name in required:
            found[name] = parse_date(name, value)
        elif _ISO_DATE.fullmatch(value.strip()):
            try:
                found[name] = date.fromisoformat(value.strip())
            except ValueError:
                found[name] = None  # looks like a date but is not one (2026-02-30): kept as text only
        else:
            found[name] = None
    return found


def sync_dates(session: Session, customer_id: int, dates: Mapping[str, date | None]) -> None:
    """Make the customer's indexed dates match ``dates`` (attributes the file has; others keep theirs)."""
    sync_many(session, [(customer_id, dates)])


def sync_many(session: Session, changes: Iterable[tuple[int, Mapping[str, date | None]]]) -> None:
    """:func:`sync_dates` for a batch of customers in two statements plus the inserts."""
    changes = [(customer_id, dates) for customer_id, dates in changes if dates]
    keys = [(customer_id, name) for customer_id, dates in changes for name in dates]
    if not keys:
        return
    table = CustomerDate.__table__  # type: ignore[attr-defined]
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        session.execute(delete(table).where(tuple_(table.c.customer_id, table.c.attribute).in_(chunk)))
    rows = [
        {"customer_id": customer_id, "attribute": name, "value": value, "md": month_day(value)}
        for customer_id, dates in changes
        for name, value in dates.items()
        if value is not None
    ]
    if rows:
        session.execute(table.insert(), rows)
