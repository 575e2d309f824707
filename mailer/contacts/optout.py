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
from typing import Any

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
    engine: Engine,
    customer_id: int,
    source: Source,
    now: datetime | None = None,
    send_log_id: int | None = None,
) -> Change:
    """Mark the customer unsubscribed; the first unsubscribe's time and source are kept.

    ``send_log_id`` is the message whose link was used, so ``mailer stats`` can say which
    campaign people leave from.
    """
    return _change(
        engine,
        customer_id,
        col(Customer.unsubscribed_at).is_(None),
        {"unsubscribed_at": now or utcnow(), "unsubscribe_source": str(source), "unsubscribe_send_log_id": send_log_id},
        f"unsubscribed ({source})",
    )


def resubscribe(engine: Engine, customer_id: int, now: datetime | None = None) -> Change:
    """Undo an unsubscribe (the customer's own choice, from the confirmation page)."""
    return _change(
        engine,
        customer_id,
        col(Customer.unsubscribed_at).is_not(None),
        {"unsubscribed_at": None, "unsubscribe_source": None, "unsubscribe_send_log_id": None},
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


def for_address(engine: Engine, email: str, change_one: Callable[[int], Change]) -> dict[Change, int]:
    """Apply ``change_one`` to every customer with this address; how many changed and how many already were."""
    counts = dict.fromkeys(Change, 0)
    for customer_id in customer_ids_for(engine, email):
        counts[change_one(customer_id)] += 1
    return counts


def unsubscribe_address(engine: Engine, email: str, source: Source) -> dict[Change, int]:
    """Unsubscribe every customer with this address; counts of changed and already-unsubscribed."""
    return for_address(engine, email, lambda customer_id: unsubscribe(engine, customer_id, source))


def suppress_address(
    engine: Engine, email: str, reason: str, now: datetime | None = None
) -> dict[Change, int]:
    """Suppress every customer with this address (an earlier suppression keeps its reason)."""
    values: dict[str, object] = {"suppressed_at": now or utcnow(), "suppressed_reason": reason}
    return for_address(
        engine,
        email,
        lambda customer_id: _change(
            engine, customer_id, col(Customer.suppressed_at).is_(None), values, f"suppressed ({reason})"
        ),
    )


def unsuppress_address(engine: Engine, email: str) -> dict[Change, int]:
    """Lift the suppression of every customer with this address (an unsubscribe stays)."""
    values: dict[str, object] = {"suppressed_at": None, "suppressed_reason": None}
    return for_address(
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


# An import's opt-out is a suppression whose reason starts so: "import: FILE:LINE: no marketing consent".
IMPORT_REASON = "import"


class ImportChoice(StrEnum):
    """What an import's consent column did to one customer."""

    OPTED_OUT = "opted out"  # the file says no: suppressed with the reason import: FILE:LINE
    OPTED_IN = "opted in again"  # the file says yes and only an earlier import had opted them out
    KEPT_OUT = "kept unsubscribed"  # the file says yes, but they unsubscribed through mailer
    NONE = "unchanged"


def record_import_choice(
    session: Session, customer_id: int, subscribed: bool, where: str, now: datetime
) -> ImportChoice:
    """Apply a consent cell (at ``where``, "FILE:LINE") inside the import's transaction.

    The most recent explicit choice wins, but an export cannot tell when its "yes"
    was given: so "no" suppresses the customer with the reason ``import: FILE:LINE:
    no marketing consent`` (an earlier suppression keeps its own), and "yes" lifts
    only a suppression that an import recorded. An unsubscribe made in mailer
    (one-click, page, mailto, an admin) is never touched: only the customer's own
    resubscribe or an admin lifts it.
    """
    from_import = col(Customer.suppressed_reason).startswith(f"{IMPORT_REASON}:")
    if not subscribed:
        values = {"suppressed_at": now, "suppressed_reason": f"{IMPORT_REASON}: {where}: no marketing consent"}
        if _update_in(session, customer_id, col(Customer.suppressed_at).is_(None), values, now):
            return ImportChoice.OPTED_OUT
        return ImportChoice.NONE
    lifted = _update_in(session, customer_id, from_import, {"suppressed_at": None, "suppressed_reason": None}, now)
    still_out = session.execute(
        select(col(Customer.id)).where(col(Customer.id) == customer_id, col(Customer.unsubscribed_at).is_not(None))
    ).first()
    if still_out:
        return ImportChoice.KEPT_OUT
    return ImportChoice.OPTED_IN if lifted else ImportChoice.NONE


def _update_in(session: Session, customer_id: int, condition: Any, values: dict[str, object], now: datetime) -> bool:
    """One conditional UPDATE of one customer in the caller's transaction; whether it changed the row."""
    # No ORM synchronisation: the import's session holds a batch of customers, and matching each
    # UPDATE against all of them in Python made an import quadratic.
    result = session.execute(
        update(Customer)
        .where(col(Customer.id) == customer_id, condition)
        .values(**values, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
