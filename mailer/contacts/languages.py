"""How many customers read each language: what ``mailer templates check`` compares the template versions with."""

from __future__ import annotations

from sqlalchemy import Engine, func, select
from sqlmodel import Session, col

from mailer.store.tables import Customer


def locale_counts(engine: Engine, default_locale: str) -> dict[str, int]:
    """Customers per locale (those without one counted under ``default_locale``), unsubscribed and suppressed aside."""
    query = (
        select(col(Customer.locale), func.count())
        .where(col(Customer.unsubscribed_at).is_(None), col(Customer.suppressed_at).is_(None))
        .group_by(col(Customer.locale))
    )
    counts: dict[str, int] = {}
    with Session(engine) as session:
        for locale, count in session.execute(query).all():
            key = locale or default_locale
            counts[key] = counts.get(key, 0) + int(count)
    return counts
