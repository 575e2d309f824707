"""The field rules of an import: each CSV row checked and turned into a record, or a problem naming its column.

Dates are checked against the clock: a customer cannot have joined after today (in their
own time zone), and an interaction cannot have happened after now. Negative amounts are
refunds: they lower lifetime spend. Addresses are kept as given, the domain's case aside.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from mailer.addresses import wire_address
from mailer.config.locales import LocaleProblem, normalize_locale
from mailer.store.tables import encode_month_day, month_day

CUSTOMER_COLUMNS = (
    "external_id",
    "email",
    "first_name",
    "last_name",
    "customer_since",
    "birthday",
    "timezone",
    "tags",
    "owner_name",
    "owner_email",
    "locale",
)


# The optional marketing-consent column (yes/no): "no" opts the customer out at import.
CONSENT_COLUMN = "subscribed"


# customer_since may be absent: it is then taken from the customer's first order (see contacts/since.py).
CUSTOMER_REQUIRED = ("external_id", "email")


INTERACTION_COLUMNS = ("external_id", "kind", "occurred_at", "amount", "reference")


INTERACTION_REQUIRED = ("external_id", "kind", "occurred_at")


# When interactions find their customer by address (an orders export has no customer id).
INTERACTION_REQUIRED_BY_EMAIL = ("email", "kind", "occurred_at")


class RowProblem(ValueError):
    def __init__(self, column: str, problem: str) -> None:
        super().__init__(problem)
        self.column = column
        self.problem = problem


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _text(column: str, value: str, *, max_length: int = 200) -> str | None:
    value = value.strip()
    if not value:
        return None
    if _CONTROL.search(value):
        raise RowProblem(column, "contains a line break or control character")
    if len(value) > max_length:
        raise RowProblem(column, f"longer than {max_length} characters")
    return value


def _required(column: str, value: str | None) -> str:
    if value is None:
        raise RowProblem(column, "is required")
    return value


@dataclass(frozen=True, slots=True)
class Address:
    """An email address as it is stored, and the mailbox it names.

    ``stored`` keeps the spelling the file gave, with the domain in lower case:
    an ASCII (A-label, ``xn--…``) domain stays ASCII, so the address never needs
    SMTPUTF8 because of the import. ``mailbox`` is the same address with the
    domain in its IDNA (ASCII) form: two addresses with one ``mailbox`` reach
    the same person, whichever spelling each uses. ``spellings`` are the forms
    the store may hold that mailbox in (earlier imports kept the Unicode form).
    """

    stored: str
    mailbox: str
    spellings: tuple[str, ...] = ()


def parse_address(column: str, value: str) -> Address | None:
    """Validate an address (syntax only, no DNS); raises RowProblem if it is not one."""
    value = value.strip()
    if not value:
        return None
    try:
        valid = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise RowProblem(column, f"not a valid email address: {value!r} ({exc})") from None
    given_domain = value.rpartition("@")[2]
    # email-validator's `domain` turns an A-label into Unicode; keep an ASCII domain as given.
    # A Unicode domain is taken from it, since its case mapping is IDNA's, not str.lower's.
    domain = given_domain.lower() if given_domain.isascii() else valid.domain
    mailbox = wire_address(f"{valid.local_part}@{domain}")  # the form the wire carries: one per mailbox
    return Address(f"{valid.local_part}@{domain}", mailbox, (mailbox, f"{valid.local_part}@{valid.domain}"))


def parse_email(column: str, value: str) -> str | None:
    """An address as stored (see :class:`Address`), or None for an empty value."""
    address = parse_address(column, value)
    return address.stored if address else None


def parse_date(column: str, value: str) -> date | None:
    value = value.strip()
    if not value:
        return None
    try:
        if len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise RowProblem(column, f"expected a date YYYY-MM-DD, got {value!r}") from None


def parse_birthday(column: str, value: str) -> tuple[int | None, int, int] | None:
    """``YYYY-MM-DD`` or ``--MM-DD`` (year unknown) → (year, month, day)."""
    value = value.strip()
    if not value:
        return None
    match = re.fullmatch(r"(\d{4}|-)-(\d{2})-(\d{2})", value)
    if match:
        year = None if match.group(1) == "-" else int(match.group(1))
        month, day = int(match.group(2)), int(match.group(3))
        try:
            date(year or 2000, month, day)  # 2000 is a leap year, so --02-29 is valid
            return year, month, day
        except ValueError:
            pass
    raise RowProblem(column, f"expected YYYY-MM-DD or --MM-DD, got {value!r}")


def parse_zone(column: str, value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise RowProblem(column, f"unknown time zone {value!r}") from None
    return value


def parse_locale(column: str, value: str) -> str | None:
    """A BCP 47 locale Babel knows (``de``, ``de-AT``, ``pt-BR``), written ``de-AT``; None for an empty value."""
    if not value.strip():
        return None
    try:
        return normalize_locale(value)
    except LocaleProblem as exc:
        raise RowProblem(column, str(exc)) from None


def parse_instant(column: str, value: str) -> datetime | None:
    """An ISO date (midnight UTC) or date-time; naive times are taken as UTC."""
    value = value.strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RowProblem(column, f"expected an ISO date or date-time, got {value!r}") from None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


# A time without a zone is read as UTC, but a shop east of UTC may have written it in its own
# local time, up to 14 hours ahead; a time with a zone is only allowed the clocks' usual skew.
_NAIVE_SLACK = timedelta(hours=14)
_CLOCK_SLACK = timedelta(minutes=5)


def _slack(value: str) -> timedelta:
    try:
        naive = datetime.fromisoformat(value.strip()).tzinfo is None
    except ValueError:
        naive = False
    return _NAIVE_SLACK if naive else _CLOCK_SLACK


def _in_the_future(column: str, value: str) -> RowProblem:
    return RowProblem(column, f"in the future: {value.strip()!r}")


def parse_amount(column: str, value: str) -> Decimal | None:
    """A decimal amount to the cent; negative ones are refunds, so they are allowed."""
    value = value.strip()
    if not value:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise RowProblem(column, f"expected a decimal amount, got {value!r}") from None
    if not amount.is_finite() or abs(amount) >= Decimal("1e12"):
        raise RowProblem(column, f"not a usable amount: {value!r}")
    return amount.quantize(Decimal("0.01"))


_YES = frozenset({"yes", "y", "true", "1", "subscribed", "opted in", "opt-in", "accepted"})
_NO = frozenset({"no", "n", "false", "0", "unsubscribed", "not subscribed", "opted out", "opt-out", "declined"})


def parse_consent(column: str, value: str) -> bool | None:
    """A marketing-consent cell: True (yes), False (no) or None (empty: the file says nothing)."""
    value = " ".join(value.strip().lower().split())
    if not value:
        return None
    if value in _YES:
        return True
    if value in _NO:
        return False
    raise RowProblem(column, f"expected yes or no, got {value!r}")


def parse_tags(column: str, value: str) -> list[str]:
    tags = [t.strip() for t in value.split(";") if t.strip()]
    for tag in tags:
        _text(column, tag, max_length=100)
    return sorted(set(tags))


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    external_id: str
    fields: dict[str, Any]  # only the columns the file has, so absent columns keep their values
    attributes: dict[str, str]
    address: Address | None = None  # the email, stored and compared (None only in records built by hand)
    subscribed: bool | None = None  # the file's marketing consent: None when it says nothing
    joined_today: date | None = None  # no customer_since in the file: today in their zone, until an order says
    dates: dict[str, date | None] = field(default_factory=dict)  # attributes holding dates (contacts.dates)


def customer_record(row: dict[str, str], *, now: datetime, default_zone: str) -> CustomerRecord:
    """Validate one customer row; raises RowProblem for the first bad column.

    ``customer_since`` may not be after the date ``now`` has in the customer's
    zone (the row's ``timezone``, else ``default_zone``). Without one, the
    record carries that date as ``joined_today`` and leaves ``customer_since``
    to the store (a new customer's is then taken from their first order).
    """
    fields: dict[str, Any] = {}
    external_id = _required("external_id", _text("external_id", row.get("external_id", "")))
    address = parse_address("email", row.get("email", ""))
    if address is None:
        raise RowProblem("email", "is required")
    fields["email"] = address.stored
    since = parse_date("customer_since", row.get("customer_since", ""))
    if since is not None:
        fields.update(customer_since=since, since_md=month_day(since), customer_since_from=None)
    for name in ("first_name", "last_name", "owner_name"):
        if name in row:
            fields[name] = _text(name, row[name])
    if "owner_email" in row:
        fields["owner_email"] = parse_email("owner_email", row["owner_email"])
    zone = default_zone
    if "timezone" in row:
        fields["timezone"] = parse_zone("timezone", row["timezone"])
        zone = fields["timezone"] or default_zone
    today = now.astimezone(ZoneInfo(zone)).date()
    if since is not None and since > today:
        raise _in_the_future("customer_since", row["customer_since"])
    if "tags" in row:
        fields["tags"] = parse_tags("tags", row["tags"])
    if "locale" in row:
        fields["locale"] = parse_locale("locale", row["locale"])
    if "birthday" in row:
        birthday = parse_birthday("birthday", row["birthday"])
        year, month, day = birthday if birthday else (None, None, None)
        fields.update(
            birthday_year=year,
            birthday_month=month,
            birthday_day=day,
            birthday_md=encode_month_day(month, day) if month and day else None,
        )
    subscribed = parse_consent(CONSENT_COLUMN, row.get(CONSENT_COLUMN, ""))
    attributes = {k: v.strip() for k, v in row.items() if k not in (*CUSTOMER_COLUMNS, CONSENT_COLUMN) and k}
    for name, value in attributes.items():
        _text(name, value, max_length=2000)
    return CustomerRecord(external_id, fields, attributes, address, subscribed, None if since else today)


@dataclass(frozen=True, slots=True)
class InteractionRecord:
    external_id: str
    kind: str
    occurred_at: datetime
    amount: Decimal | None  # negative for a refund
    reference: str | None
    email: Address | None = None  # set when the customer is found by address; external_id is then ""

    @property
    def customer_key(self) -> str:
        """How the import finds the customer: their external_id, or ``email:<mailbox>``."""
        return f"email:{self.email.mailbox}" if self.email else self.external_id


def interaction_record(row: dict[str, str], *, now: datetime, by_email: bool = False) -> InteractionRecord:
    """Validate one interaction row; raises RowProblem for the first bad column.

    ``occurred_at`` may not be after ``now``. With ``by_email`` the customer is
    named by the ``email`` column instead of ``external_id``.
    """
    email = parse_address("email", row.get("email", "")) if by_email else None
    if by_email and email is None:
        raise RowProblem("email", "is required")
    external_id = "" if by_email else _required("external_id", _text("external_id", row.get("external_id", "")))
    kind = _required("kind", _text("kind", row.get("kind", ""), max_length=50)).lower()
    if not re.fullmatch(r"[a-z0-9_-]+", kind):
        raise RowProblem("kind", f"use letters, digits, '-' or '_', got {kind!r}")
    occurred = parse_instant("occurred_at", row.get("occurred_at", ""))
    if occurred is None:
        raise RowProblem("occurred_at", "is required")
    if occurred > now + _slack(row["occurred_at"]):
        raise _in_the_future("occurred_at", row["occurred_at"])
    return InteractionRecord(
        external_id=external_id,
        kind=kind,
        occurred_at=occurred,
        amount=parse_amount("amount", row.get("amount", "")),
        reference=_text("reference", row.get("reference", "")),
        email=email,
    )
