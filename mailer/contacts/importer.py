"""CSV → validated rows → upserts, streaming, all or nothing.

An import reads the file twice: once to validate every row (collecting every
problem as ``FILE:LINE: column: problem``), once to write. By default a file
with any bad row writes nothing; with ``skip_invalid`` the good rows are
written and the bad ones go, with their reason, to ``FILE.rejected.csv``.
Writing happens in one transaction, so a crash mid-import leaves the store
as it was. Memory stays flat: rows are handled in batches, only the set of
keys seen (to catch duplicates inside the file) grows with the file.

Dates are checked against the clock: a customer cannot have joined after
today (in their own time zone), and an interaction cannot have happened
after now. Negative amounts are refunds: they lower lifetime spend.
Addresses are stored as given, with only the domain's case normalised; two
customers whose addresses are one mailbox (the same up to the domain's case
or its Unicode/IDNA spelling), in the file or one in the file and one in the
store, are a bad row.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Engine, select, tuple_
from sqlmodel import Session, col

from mailer.errors import MailerError
from mailer.store.tables import Customer, Interaction, month_day, utcnow

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
)
CUSTOMER_REQUIRED = ("external_id", "email", "customer_since")
INTERACTION_COLUMNS = ("external_id", "kind", "occurred_at", "amount", "reference")
INTERACTION_REQUIRED = ("external_id", "kind", "occurred_at")
BATCH = 1000

Progress = Callable[[int], None]
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class RowError:
    file: str
    line: int
    column: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.column}: {self.problem}"


class ImportFailed(MailerError):
    """The file has bad rows (or cannot be read); nothing was imported."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class RowProblem(ValueError):
    def __init__(self, column: str, problem: str) -> None:
        super().__init__(problem)
        self.column = column
        self.problem = problem


@dataclass
class ImportReport:
    file: Path
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[RowError] = field(default_factory=list)
    rejected_file: Path | None = None
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would import" if self.dry_run else "imported"
        text = f"{self.file.name}: {self.rows} rows, {verb} {self.inserted} new, {self.updated} updated"
        if self.unchanged:
            text += f", {self.unchanged} already present"
        if self.rejected:
            text += f", rejected {len(self.rejected)}"
            if self.rejected_file:
                text += f" (see {self.rejected_file})"
        return text


# ---- field parsers: each returns a clean value or raises RowProblem ----------------------------

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
    mailbox = f"{valid.local_part}@{valid.ascii_domain.lower()}"
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


def parse_tags(column: str, value: str) -> list[str]:
    tags = [t.strip() for t in value.split(";") if t.strip()]
    for tag in tags:
        _text(column, tag, max_length=100)
    return sorted(set(tags))


# ---- records -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    external_id: str
    fields: dict[str, Any]  # only the columns the file has, so absent columns keep their values
    attributes: dict[str, str]
    address: Address | None = None  # the email, stored and compared (None only in records built by hand)


def customer_record(row: dict[str, str], *, now: datetime, default_zone: str) -> CustomerRecord:
    """Validate one customer row; raises RowProblem for the first bad column.

    ``customer_since`` may not be after the date ``now`` has in the customer's
    zone (the row's ``timezone``, else ``default_zone``).
    """
    fields: dict[str, Any] = {}
    external_id = _required("external_id", _text("external_id", row.get("external_id", "")))
    address = parse_address("email", row.get("email", ""))
    if address is None:
        raise RowProblem("email", "is required")
    fields["email"] = address.stored
    since = parse_date("customer_since", row.get("customer_since", ""))
    if since is None:
        raise RowProblem("customer_since", "is required")
    fields["customer_since"] = since
    fields["since_md"] = month_day(since)
    for name in ("first_name", "last_name", "owner_name"):
        if name in row:
            fields[name] = _text(name, row[name])
    if "owner_email" in row:
        fields["owner_email"] = parse_email("owner_email", row["owner_email"])
    zone = default_zone
    if "timezone" in row:
        fields["timezone"] = parse_zone("timezone", row["timezone"])
        zone = fields["timezone"] or default_zone
    if since > now.astimezone(ZoneInfo(zone)).date():
        raise _in_the_future("customer_since", row["customer_since"])
    if "tags" in row:
        fields["tags"] = parse_tags("tags", row["tags"])
    if "birthday" in row:
        birthday = parse_birthday("birthday", row["birthday"])
        year, month, day = birthday if birthday else (None, None, None)
        fields.update(
            birthday_year=year,
            birthday_month=month,
            birthday_day=day,
            birthday_md=month * 100 + day if month and day else None,
        )
    attributes = {k: v.strip() for k, v in row.items() if k not in CUSTOMER_COLUMNS and k}
    for name, value in attributes.items():
        _text(name, value, max_length=2000)
    return CustomerRecord(external_id, fields, attributes, address)


@dataclass(frozen=True, slots=True)
class InteractionRecord:
    external_id: str
    kind: str
    occurred_at: datetime
    amount: Decimal | None  # negative for a refund
    reference: str | None


def interaction_record(row: dict[str, str], *, now: datetime) -> InteractionRecord:
    """Validate one interaction row; raises RowProblem for the first bad column.

    ``occurred_at`` may not be after ``now``.
    """
    external_id = _required("external_id", _text("external_id", row.get("external_id", "")))
    kind = _required("kind", _text("kind", row.get("kind", ""), max_length=50)).lower()
    if not re.fullmatch(r"[a-z0-9_-]+", kind):
        raise RowProblem("kind", f"use letters, digits, '-' or '_', got {kind!r}")
    occurred = parse_instant("occurred_at", row.get("occurred_at", ""))
    if occurred is None:
        raise RowProblem("occurred_at", "is required")
    if occurred > now:
        raise _in_the_future("occurred_at", row["occurred_at"])
    return InteractionRecord(
        external_id=external_id,
        kind=kind,
        occurred_at=occurred,
        amount=parse_amount("amount", row.get("amount", "")),
        reference=_text("reference", row.get("reference", "")),
    )


# ---- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParsedRow(Generic[R]):
    line: int
    raw: dict[str, str]
    record: R | None
    error: RowError | None


def read_rows(
    path: Path,
    required: Sequence[str],
    parse: Callable[[dict[str, str]], R],
    key: Callable[[R], object],
    progress: Progress | None = None,
) -> Iterator[ParsedRow[R]]:
    """Stream the file's rows, validated; a file-level problem raises ImportFailed at once.

    ``key`` identifies a row; a second row with the same key is an error (it
    would silently overwrite the first).
    """
    name = str(path)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the `with` below, after a clean error on failure
    except OSError as exc:
        raise ImportFailed([RowError(name, 0, "file", exc.strerror or "cannot open")]) from None
    with handle:
        lines = _Lines(handle, name)
        reader = csv.DictReader(lines, restval=None)
        try:
            header = reader.fieldnames
        except csv.Error as exc:
            raise ImportFailed([RowError(name, lines.number, "file", _csv_problem(exc))]) from None
        if not header:
            raise ImportFailed([RowError(name, 1, "header", "the file is empty: expected a header row")])
        header = [h.strip() for h in header]
        reader.fieldnames = header
        missing = [c for c in required if c not in header]
        if missing:
            raise ImportFailed([RowError(name, 1, c, "missing column") for c in missing])
        duplicated = sorted({h for h in header if header.count(h) > 1})
        if duplicated:
            raise ImportFailed([RowError(name, 1, c, "column appears twice") for c in duplicated])
        seen: dict[object, int] = {}
        rows = 0
        while True:
            try:
                raw = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise ImportFailed([RowError(name, lines.number, "file", _csv_problem(exc))]) from None
            rows += 1
            if progress and rows % 1000 == 0:
                progress(handle.tell())
            yield _parse_one(name, reader.line_num, raw, parse, key, seen)
        if progress:
            progress(handle.tell())


class _Lines:
    """The file's lines as text, strictly UTF-8 (a BOM is allowed), naming the line that is not.

    ``number`` is the physical line last handed to the CSV reader: where the
    reader was when it raised (its own ``line_num`` counts only the lines of
    rows it finished, so it points one row early).
    """

    def __init__(self, handle: BinaryIO, name: str) -> None:
        self.handle = handle
        self.name = name
        self.number = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        raw = self.handle.readline()
        if not raw:
            raise StopIteration
        self.number += 1
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
            raise ImportFailed([RowError(self.name, self.number, "file", problem)]) from None
        return line.removeprefix("\ufeff") if self.number == 1 else line


def _csv_problem(exc: csv.Error) -> str:
    if str(exc).startswith("field larger than field limit"):
        return f"a field is larger than the limit of {csv.field_size_limit()} characters"
    return f"broken CSV: {exc}"


def _parse_one(
    name: str,
    line: int,
    raw: dict[str, Any],
    parse: Callable[[dict[str, str]], R],
    key: Callable[[R], object],
    seen: dict[object, int],
) -> ParsedRow[R]:
    if None in raw:
        return ParsedRow(line, raw, None, RowError(name, line, "row", "more fields than the header has"))
    absent = [k for k, v in raw.items() if v is None]
    if absent:
        return ParsedRow(line, raw, None, RowError(name, line, absent[0], "missing: the row has too few fields"))
    try:
        record = parse(raw)
    except RowProblem as problem:
        return ParsedRow(line, raw, None, RowError(name, line, problem.column, problem.problem))
    identity = key(record)
    if identity is not None:
        first = seen.setdefault(identity, line)
        if first != line:
            column = "reference" if isinstance(record, InteractionRecord) else "external_id"
            return ParsedRow(line, raw, None, RowError(name, line, column, f"duplicate of line {first}"))
    return ParsedRow(line, raw, record, None)


def _batches(rows: Iterator[ParsedRow[R]], size: int) -> Iterator[list[ParsedRow[R]]]:
    batch: list[ParsedRow[R]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_rejected(path: Path, header: Sequence[str], rejected: Sequence[tuple[ParsedRow[Any], RowError]]) -> Path:
    target = path.with_name(path.name + ".rejected.csv")
    with open(target, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([*header, "line", "reason"])
        for row, error in rejected:
            writer.writerow([*(row.raw.get(h) or "" for h in header), row.line, f"{error.column}: {error.problem}"])
    return target


def _header(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return [h.strip() for h in next(csv.reader(handle))]


# ---- customers ---------------------------------------------------------------------------------


def import_customers(
    engine: Engine,
    path: Path,
    *,
    skip_invalid: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    default_zone: str = "UTC",
    now: datetime | None = None,
) -> ImportReport:
    """Upsert customers by external_id; raises ImportFailed (nothing written) on bad rows unless skipping.

    ``default_zone`` is the zone of customers without one of their own (the
    ``[sender] timezone``); ``now`` (aware, default the current instant) is
    what "in the future" is measured from.
    """
    parse = partial(customer_record, now=now or utcnow(), default_zone=default_zone)

    def rows(progress: Progress | None = None) -> Iterator[ParsedRow[CustomerRecord]]:
        parsed = read_rows(path, CUSTOMER_REQUIRED, parse, lambda r: r.external_id, progress)
        return _one_customer_per_mailbox(parsed, str(path))

    with Session(engine) as session:
        stored = _StoredMailboxes(session, str(path))
        report = _validate(path, stored.check(rows(progress)), skip_invalid, dry_run, stored.conflicts)

    def good() -> Iterator[ParsedRow[CustomerRecord]]:
        return (r for r in rows() if r.record and r.line not in stored.bad_lines)

    if dry_run:
        with Session(engine) as session:
            for batch in _batches(good(), BATCH):
                ids = [r.record.external_id for r in batch if r.record]
                query = select(col(Customer.external_id)).where(col(Customer.external_id).in_(ids))
                existing = set(session.execute(query).scalars())
                report.updated += len(existing)
                report.inserted += len(ids) - len(existing)
        return report
    with Session(engine) as session:
        for batch in _batches(good(), BATCH):
            _upsert_customers(session, [r.record for r in batch if r.record], report)
        session.commit()
    return report


def _one_customer_per_mailbox(
    rows: Iterator[ParsedRow[CustomerRecord]], file: str
) -> Iterator[ParsedRow[CustomerRecord]]:
    """Rows, with a second customer whose address reaches an earlier row's mailbox made a bad row.

    Two customers sharing a mailbox would each get their own occasions and
    frequency cap there, and the same address in an A-label and a Unicode
    spelling would not even look alike in the store.
    """
    first: dict[str, tuple[int, str]] = {}  # mailbox → (line, address as that line gave it)
    for row in rows:
        record = row.record
        if record is not None and record.address is not None:
            line, address = first.setdefault(record.address.mailbox, (row.line, record.address.stored))
            if line != row.line:
                problem = f"same mailbox as line {line} ({address!r})"
                row = ParsedRow(row.line, row.raw, None, RowError(file, row.line, "email", problem))
        yield row


class _StoredMailboxes:
    """Finds rows whose mailbox a customer in the store already has under another external_id.

    Such a row is bad unless the file gives that other customer an address of
    its own, which is known only once the whole file is read: :meth:`check`
    notes the candidates as the rows go by, :meth:`conflicts` judges them.
    """

    def __init__(self, session: Session, file: str) -> None:
        self.session = session
        self.file = file
        self.in_file: set[str] = set()  # every external_id the file holds
        self.candidates: list[tuple[ParsedRow[CustomerRecord], str, str]] = []  # row, other external_id, its email
        self.bad_lines: set[int] = set()

    def check(self, rows: Iterator[ParsedRow[CustomerRecord]]) -> Iterator[ParsedRow[CustomerRecord]]:
        for batch in _batches(rows, BATCH):
            by_spelling: dict[str, list[ParsedRow[CustomerRecord]]] = {}
            for row in batch:
                if row.record is not None and row.record.address is not None:
                    self.in_file.add(row.record.external_id)
                    for spelling in row.record.address.spellings:
                        by_spelling.setdefault(spelling, []).append(row)
            if by_spelling:
                found = self.session.execute(
                    select(col(Customer.external_id), col(Customer.email)).where(
                        col(Customer.email).in_(list(by_spelling))
                    )
                ).all()
                for external_id, email in found:
                    for row in by_spelling[email]:
                        if row.record is not None and row.record.external_id != external_id:
                            self.candidates.append((row, external_id, email))
            yield from batch

    def conflicts(self) -> list[tuple[ParsedRow[Any], RowError]]:
        """The noted rows whose other customer keeps the mailbox (no good row of the file moves it)."""
        bad: dict[int, tuple[ParsedRow[Any], RowError]] = {}
        while True:
            # A row found bad here is not written either, so its customer keeps the stored address too.
            moved = self.in_file - {row.record.external_id for row, _ in bad.values() if row.record}
            found = False
            for row, external_id, email in self.candidates:
                if external_id not in moved and row.line not in bad:
                    problem = f"same mailbox as customer {external_id!r} in the store ({email!r})"
                    bad[row.line] = (row, RowError(self.file, row.line, "email", problem))
                    found = True
            if not found:
                break
        self.bad_lines = set(bad)
        return list(bad.values())


def _validate(
    path: Path,
    rows: Iterator[ParsedRow[Any]],
    skip_invalid: bool,
    dry_run: bool,
    more: Callable[[], list[tuple[ParsedRow[Any], RowError]]] | None = None,
) -> ImportReport:
    """First read: count rows, collect every error; raise unless bad rows may be skipped.

    ``more`` gives, after the read, the bad rows that only the whole file reveals.
    """
    report = ImportReport(file=path, dry_run=dry_run)
    rejected: list[tuple[ParsedRow[Any], RowError]] = []
    for row in rows:
        report.rows += 1
        if row.error:
            rejected.append((row, row.error))
    if more is not None:
        rejected = sorted([*rejected, *more()], key=lambda pair: pair[0].line)
    report.rejected = [error for _, error in rejected]
    if rejected and not skip_invalid:
        raise ImportFailed(report.rejected)
    if rejected and not dry_run:
        report.rejected_file = _write_rejected(path, _header(path), rejected)
    return report


def _upsert_customers(session: Session, records: list[CustomerRecord], report: ImportReport) -> None:
    ids = [r.external_id for r in records]
    existing = {
        c.external_id: c
        for c in session.execute(select(Customer).where(Customer.external_id.in_(ids))).scalars()  # type: ignore[attr-defined]
    }
    now = utcnow()
    for record in records:
        customer = existing.get(record.external_id)
        if customer is None:
            customer = Customer(external_id=record.external_id, attributes=record.attributes, **record.fields)
            report.inserted += 1
        else:
            for name, value in record.fields.items():
                setattr(customer, name, value)
            customer.attributes = {**(customer.attributes or {}), **record.attributes}
            customer.updated_at = now
            report.updated += 1
        session.add(customer)
    session.flush()


# ---- interactions ------------------------------------------------------------------------------


def import_interactions(
    engine: Engine,
    path: Path,
    *,
    skip_invalid: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> ImportReport:
    """Add interactions (a reference already present for the customer is not added twice).

    Customer aggregates (order count, lifetime spend, interaction count, last
    interaction) are updated in the same transaction; a refund (an order with
    a negative amount) lowers lifetime spend and is not counted as an order.
    An interaction after ``now`` (aware, default the current instant) is a
    bad row.
    """
    parse = partial(interaction_record, now=now or utcnow())
    with Session(engine) as session:
        known = _CustomerIds(session, path)

        def rows(progress: Progress | None = None) -> Iterator[ParsedRow[InteractionRecord]]:
            parsed = read_rows(
                path,
                INTERACTION_REQUIRED,
                parse,
                lambda r: (r.external_id, r.reference) if r.reference else None,
                progress,
            )
            return known.check(parsed)

        report = _validate(path, rows(progress), skip_invalid, dry_run)
        for batch in _batches((r for r in rows() if r.record), BATCH):
            _add_interactions(session, [r.record for r in batch if r.record], known, report)
        if dry_run:
            session.rollback()
        else:
            session.commit()
    return report


class _CustomerIds:
    """external_id → customer id, looked up a batch at a time and remembered."""

    def __init__(self, session: Session, file: Path) -> None:
        self.session = session
        self.file = str(file)
        self.ids: dict[str, int] = {}

    def check(self, rows: Iterator[ParsedRow[InteractionRecord]]) -> Iterator[ParsedRow[InteractionRecord]]:
        for batch in _batches(rows, BATCH):
            wanted = {r.record.external_id for r in batch if r.record and r.record.external_id not in self.ids}
            if wanted:
                found = self.session.execute(
                    select(col(Customer.external_id), col(Customer.id)).where(col(Customer.external_id).in_(wanted))
                ).all()
                self.ids.update({external_id: cid for external_id, cid in found})
            for row in batch:
                if row.record and row.record.external_id not in self.ids:
                    problem = f"no customer with external_id {row.record.external_id!r}"
                    yield ParsedRow(row.line, row.raw, None, RowError(self.file, row.line, "external_id", problem))
                else:
                    yield row


def _add_interactions(
    session: Session, records: list[InteractionRecord], known: _CustomerIds, report: ImportReport
) -> None:
    pairs = {(known.ids[r.external_id], r.reference) for r in records if r.reference}
    present: set[tuple[int, str]] = set()
    if pairs:
        present = {
            (cid, ref)
            for cid, ref in session.execute(
                select(col(Interaction.customer_id), col(Interaction.reference)).where(
                    tuple_(col(Interaction.customer_id), col(Interaction.reference)).in_(list(pairs))
                )
            ).all()
        }
    fresh = [r for r in records if not (r.reference and (known.ids[r.external_id], r.reference) in present)]
    report.unchanged += len(records) - len(fresh)
    touched = {known.ids[r.external_id] for r in fresh}
    customers = {
        c.id: c
        for c in session.execute(select(Customer).where(Customer.id.in_(touched))).scalars()  # type: ignore[union-attr]
    }
    for record in fresh:
        cid = known.ids[record.external_id]
        session.add(
            Interaction(
                customer_id=cid,
                kind=record.kind,
                occurred_at=record.occurred_at,
                amount=record.amount,
                reference=record.reference,
            )
        )
        customer = customers[cid]
        customer.interaction_count += 1
        if record.kind == "order":
            # A refund (negative amount) lowers the spend but is no order: occasions.is_refund agrees.
            if record.amount is None or record.amount >= 0:
                customer.order_count += 1
            customer.lifetime_spend = (customer.lifetime_spend or Decimal(0)) + (record.amount or Decimal(0))
        if customer.last_interaction_at is None or record.occurred_at > customer.last_interaction_at:
            customer.last_interaction_at = record.occurred_at
        session.add(customer)
        report.inserted += 1
    session.flush()
