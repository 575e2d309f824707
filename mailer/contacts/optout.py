"""Opting out: unsubscribe, resubscribe, suppress, unsuppress, and the list of who is out.

Every change is one conditional UPDATE, so two requests racing (a mailbox
provider's one-click POST and the customer clicking the button) record one
unsubscribe with the first time and source, and a repeat changes nothing.
The pass honours these columns twice: the policy skips opted-out customers
when planning, and the Deliverer re-reads the customer just before sending.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Engine, func, or_, select, update
from sqlmodel import Session, col

from mailer.contacts.fields import RowProblem, parse_address
from mailer.errors import MailerError
from mailer.store import events
from mailer.store.tables import Customer, utcnow

log = logging.getLogger(__name__)


class Source(StrEnum):
    """Where an unsubscribe came from, as recorded in ``customer.unsubscribe_source``."""

    ONE_CLICK = "one-click"  # RFC 8058 POST from the mailbox provider
    PAGE = "page"  # the button on the unsubscribe page
    CLI = "cli"  # an admin ran `mailer unsubscribe`
    MAILTO = "mailto"  # a request that arrived at the List-Unsubscribe mailto address
    WEBHOOK_SES = "webhook:ses"  # Amazon SES list management, reported over SNS
    WEBHOOK_MAILGUN = "webhook:mailgun"  # Mailgun's unsubscribed event


class Change(StrEnum):
    CHANGED = "changed"
    UNCHANGED = "unchanged"  # already in the requested state: harmless
    UNKNOWN = "unknown"  # no such customer


class UnknownAddress(MailerError):
    """No customer has the address."""


def unsubscribe(
    engine: Engine, customer_id: int, source: Source, now: datetime | None = None
) -> Change:
    """Mark the customer unsubscribed; the first unsubscribe's time and source are kept."""
    return _change(
        engine,
        customer_id,
        col(Customer.unsubscribed_at).is_(None),
        {"unsubscribed_at": now or utcnow(), "unsubscribe_source": str(source)},
        f"unsubscribed ({source})",
    )


def resubscribe(engine: Engine, customer_id: int, now: datetime | None = None) -> Change:
    """Undo an unsubscribe (the customer's own choice, from the confirmation page)."""
    return _change(
        engine,
        customer_id,
        col(Customer.unsubscribed_at).is_not(None),
        {"unsubscribed_at": None, "unsubscribe_source": None},
        "resubscribed",
        now,
    )


def _change(
    engine: Engine,
    customer_id: int,
    condition: object,
    values: dict[str, object],
    what: str,
    now: datetime | None = None,
) -> Change:
    values = {**values, "updated_at": now or utcnow()}
    with Session(engine) as session:
        result = session.execute(
            update(Customer).where(col(Customer.id) == customer_id, condition).values(**values)  # type: ignore[arg-type]
        )
        for kind, column, detail in (("unsubscribed", "unsubscribed_at", "unsubscribe_source"),
                                     ("suppressed", "suppressed_at", "suppressed_reason")):
            if values.get(column) and result.rowcount == 1:  # type: ignore[attr-defined]  # for [[webhook]]s
                events.record(session, kind, customer_id=customer_id, data={"reason": values.get(detail)},
                              now=values["updated_at"])  # type: ignore[arg-type]
        session.commit()
        if result.rowcount == 1:  # type: ignore[attr-defined]
            log.info("customer %s %s", customer_id, what)
            return Change.CHANGED
        exists = session.execute(
            select(col(Customer.id)).where(col(Customer.id) == customer_id)
        ).first()
    return Change.UNCHANGED if exists else Change.UNKNOWN


def customer_ids_for(engine: Engine, email: str) -> list[int]:
    """Every customer with this mailbox; raises UnknownAddress when none.

    The address matches case-insensitively and in either spelling of its domain
    (``bücher.example`` or ``xn--bcher-kva.example``), as the import compares them.
    """
    given = email.strip()
    try:
        address = parse_address("email", given)
    except RowProblem:
        address = None
    forms = {given.lower(), *(form.lower() for form in (address.spellings if address else ()))}
    with Session(engine) as session:
        ids = list(
            session.execute(
                select(col(Customer.id))
                .where(func.lower(col(Customer.email)).in_(sorted(forms)))
                .order_by(col(Customer.id))
            ).scalars()
        )
    if not ids:
        raise UnknownAddress(f"no customer has the address {email}")
    return [i for i in ids if i is not None]


def _for_address(engine: Engine, email: str, change_one: Callable[[int], Change]) -> dict[Change, int]:
    """Apply ``change_one`` to every customer with this address; how many changed and how many already were."""
    counts = dict.fromkeys(Change, 0)
    for customer_id in customer_ids_for(engine, email):
        counts[change_one(customer_id)] += 1
    return counts


def unsubscribe_address(engine: Engine, email: str, source: Source) -> dict[Change, int]:
    """Unsubscribe every customer with this address; counts of changed and already-unsubscribed."""
    return _for_address(engine, email, lambda customer_id: unsubscribe(engine, customer_id, source))


def suppress_address(
    engine: Engine, email: str, reason: str, now: datetime | None = None
) -> dict[Change, int]:
    """Suppress every customer with this address (an earlier suppression keeps its reason)."""
    values: dict[str, object] = {"suppressed_at": now or utcnow(), "suppressed_reason": reason}
    return _for_address(
        engine,
        email,
        lambda customer_id: _change(
            engine, customer_id, col(Customer.suppressed_at).is_(None), values, f"suppressed ({reason})"
        ),
    )


def unsuppress_address(engine: Engine, email: str) -> dict[Change, int]:
    """Lift the suppression of every customer with this address (an unsubscribe stays)."""
    values: dict[str, object] = {"suppressed_at": None, "suppressed_reason": None}
    return _for_address(
        engine,
        email,
        lambda customer_id: _change(
            engine, customer_id, col(Customer.suppressed_at).is_not(None), values, "unsuppressed"
        ),
    )


@dataclass(frozen=True, slots=True)
class OptedOut:
    external_id: str
    email: str
    state: str  # "unsubscribed" or "suppressed"
    since: datetime
    why: str  # the unsubscribe source or the suppression reason


def opted_out(engine: Engine, limit: int | None = None) -> Sequence[OptedOut]:
    """Everyone who gets no mail, newest first; unsubscribed and suppressed: listed twice."""
    query = (
        select(
            col(Customer.external_id),
            col(Customer.email),
            col(Customer.unsubscribed_at),
            col(Customer.unsubscribe_source),
            col(Customer.suppressed_at),
            col(Customer.suppressed_reason),
        )
        .where(
            or_(
                col(Customer.unsubscribed_at).is_not(None), col(Customer.suppressed_at).is_not(None)
            )
        )
        .order_by(col(Customer.id))
    )
    rows: list[OptedOut] = []
    with Session(engine) as session:
        for external_id, email, unsub_at, source, supp_at, reason in session.execute(query):
            if unsub_at is not None:
                rows.append(OptedOut(external_id, email, "unsubscribed", unsub_at, source or ""))
            if supp_at is not None:
                rows.append(OptedOut(external_id, email, "suppressed", supp_at, reason or ""))
    rows.sort(key=lambda r: r.since, reverse=True)
    return rows[:limit] if limit is not None else rows
