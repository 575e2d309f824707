"""CSV → validated rows → upserts, streaming, all or nothing.

An import reads the file twice: once to validate every row (collecting every
problem as ``FILE:LINE: column: problem``), once to write. By default a file
with any bad row writes nothing; with ``skip_invalid`` the good rows are
written and the bad ones go, with their reason, to ``FILE.rejected.csv``.
Writing happens in one transaction, so a crash mid-import leaves the store
as it was. Memory stays flat: rows are handled in batches, only the set of
keys seen (to catch duplicates inside the file) grows with the file. Two
customers whose addresses are one mailbox (the same up to the domain's case or
its Unicode/IDNA spelling), in the file or one in the file and one in the
store, are a bad row.

A shop's export is first mapped onto mailer's columns (``contacts.mapping``);
its consent column suppresses or lifts an import's suppression
(``optout.record_import_choice``), and orders give customer_since when the file
had none (``contacts.since``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, select, tuple_
from sqlmodel import Session, col

from mailer.contacts import erasure
from mailer.contacts.csvfile import (
    BATCH,
    ImportFailed,
    ParsedRow,
    Progress,
    RowError,
    RowReader,
    batches,
    header_row,
    read_rows,
    write_rejected,
)
from mailer.contacts.dates import date_attributes, sync_many
from mailer.contacts.fields import (
    CustomerRecord,
    InteractionRecord,
    customer_record,
    interaction_record,
)
from mailer.contacts.mapping import Layout
from mailer.contacts.optout import ImportChoice, record_import_choice
from mailer.contacts.since import FROM_FIRST_ORDER, FROM_IMPORT, counts_as_first_order, since_from_order
from mailer.store.tables import Customer, Interaction, month_day, utcnow

PREVIEW_ROWS = 5  # rows a dry run shows as mailer reads them


_CONSENT_WORDS = {
    ImportChoice.OPTED_OUT: "suppressed (the file says no)",
    ImportChoice.OPTED_IN: "opted in again (the file says yes after an import's no)",
    ImportChoice.KEPT_OUT: "kept unsubscribed (they unsubscribed through mailer)",
}


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
    lines: int = 0  # physical lines read; more than ``rows`` when an order's lines are grouped
    no_address: int = 0  # rows left out for want of an email address (a profile's without_email = "skip")
    since_pending: int = 0  # new customers without customer_since: the import day until an order says
    since_from_orders: int = 0  # customers whose customer_since an order set or moved earlier
    erased: int = 0  # customers suppressed because their address was erased before (contacts/erasure.py)
    consent: Counter[ImportChoice] = field(default_factory=Counter)
    layout: Layout | None = None
    preview: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # the first rows, as mailer reads them

    def summary(self) -> str:
        verb = "would import" if self.dry_run else "imported"
        grouped = self.layout is not None and self.layout.group_lines
        count = f"{self.lines} lines, {self.rows} orders" if grouped else f"{self.rows} rows"
        text = f"{self.file.name}: {count}, {verb} {self.inserted} new, {self.updated} updated"
        if self.unchanged:
            text += f", {self.unchanged} already present"
        if self.rejected:
            text += f", rejected {len(self.rejected)}"
            if self.rejected_file:
                text += f" (see {self.rejected_file})"
        if self.no_address:
            text += f", left out {self.no_address} without an email address"
        if self.since_pending:
            text += f"; customer_since pending first order: {self.since_pending}"
        if self.since_from_orders:
            text += f"; customer_since from first order: {self.since_from_orders}"
        if self.erased:
            text += f"; suppressed as erased before (mailer forget): {self.erased}"
        for choice, words in _CONSENT_WORDS.items():
            if self.consent[choice]:
                text += f"; {words}: {self.consent[choice]}"
        return text


def import_customers(
    engine: Engine | Connection,
    path: Path,
    *,
    skip_invalid: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    default_zone: str = "UTC",
    now: datetime | None = None,
    layout: Layout | None = None,
    reader: RowReader | None = None,
    date_columns: Collection[str] = (),
) -> ImportReport:
    """Upsert customers by external_id; raises ImportFailed (nothing written) on bad rows unless skipping.

    ``default_zone`` is the zone of customers without one of their own (the
    ``[sender] timezone``); ``now`` (aware, default the current instant) is
    what "in the future" is measured from. ``layout`` maps a shop's columns
    (default: the file uses mailer's). A consent column (``subscribed``) opts
    customers out or in again by the rule of ``optout.record_import_choice``.
    ``reader`` gives the rows from elsewhere than the file (a database source);
    ``path`` then only names them. Given a Connection inside a transaction, the
    import commits nothing: the caller's transaction decides. A dry run does all
    of it in a transaction it rolls back, so its counts are the real ones.
    ``date_columns`` (the attributes date campaigns name) must hold dates or be blank.
    """
    moment = now or utcnow()
    layout = layout or Layout("customers")
    checked = partial(customer_record, now=moment, default_zone=default_zone)
    read = reader or partial(read_rows, path)

    def parse(row: dict[str, str]) -> CustomerRecord:
        record = checked(row)
        return replace(record, dates=date_attributes(record.attributes, date_columns))

    def rows(progress: Progress | None = None) -> Iterator[ParsedRow[CustomerRecord]]:
        parsed = read(layout, parse, lambda r: r.external_id, progress)
        return _one_customer_per_mailbox(parsed, str(path))

    with Session(engine) as session:
        stored = _StoredMailboxes(session, str(path))
        report = _validate(path, stored.check(rows(progress)), skip_invalid, dry_run, stored.conflicts, layout)

    def good() -> Iterator[ParsedRow[CustomerRecord]]:
        return (r for r in rows() if r.record and r.line not in stored.bad_lines)

    with Session(engine) as session:
        for batch in batches(good(), BATCH):
            _upsert_customers(session, batch, report, path.name, moment)
        if dry_run:
            session.rollback()
        else:
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
        for batch in batches(rows, BATCH):
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
    layout: Layout | None = None,
) -> ImportReport:
    """First read: count rows, collect every error; raise unless bad rows may be skipped.

    ``more`` gives, after the read, the bad rows that only the whole file reveals.
    """
    report = ImportReport(file=path, dry_run=dry_run, layout=layout)
    rejected: list[tuple[ParsedRow[Any], RowError]] = []
    for row in rows:
        report.rows += 1
        report.lines += 1 + len(row.more)
        report.no_address += row.no_address
        if len(report.preview) < PREVIEW_ROWS:
            where = f"line {row.line}" if not row.more else f"lines {row.line}-{row.more[-1][0]}"
            report.preview.append((where, row.mapped if row.mapped is not None else row.raw))
        if row.error:
            rejected.append((row, row.error))
    if more is not None:
        rejected = sorted([*rejected, *more()], key=lambda pair: pair[0].line)
    report.rejected = [error for _, error in rejected]
    if rejected and not skip_invalid:
        raise ImportFailed(report.rejected)
    if rejected and not dry_run:
        report.rejected_file = write_rejected(path, header_row(path), rejected)
    return report


def _upsert_customers(
    session: Session, rows: list[ParsedRow[CustomerRecord]], report: ImportReport, file: str, now: datetime
) -> None:
    records = [(r.line, r.record) for r in rows if r.record]
    ids = [record.external_id for _, record in records]
    existing = {
        c.external_id: c
        for c in session.execute(select(Customer).where(Customer.external_id.in_(ids))).scalars()  # type: ignore[attr-defined]
    }
    written: list[tuple[int, CustomerRecord, Customer]] = []
    for line, record in records:
        customer = existing.get(record.external_id)
        if customer is None:
            fields = dict(record.fields)
            if record.joined_today is not None:
                # No date in the file: the import day stands in until the first order (contacts/since.py).
                fields.update(
                    customer_since=record.joined_today, since_md=month_day(record.joined_today),
                    customer_since_from=FROM_IMPORT,
                )
                report.since_pending += 1
            customer = Customer(external_id=record.external_id, attributes=record.attributes, **fields)
            session.add(customer)
            report.inserted += 1
        else:
            attributes = {**(customer.attributes or {}), **record.attributes}
            if attributes == customer.attributes and all(
                getattr(customer, name) == value for name, value in record.fields.items()
            ):
                report.unchanged += 1  # only a row whose values changed counts (and is stamped) as updated
            else:
                for name, value in record.fields.items():
                    setattr(customer, name, value)
                customer.attributes = attributes
                customer.updated_at = now
                session.add(customer)
                report.updated += 1
        written.append((line, record, customer))  # its consent is read even when nothing else changed
    session.flush()
    # An address someone had erased (mailer forget) comes back suppressed: they are never mailed again.
    report.erased += erasure.suppress_erased(session, [customer for _, _, customer in written], now)
    for line, record, customer in written:
        # A "yes" for someone who is not opted out has nothing to change: spare the statement.
        nothing_to_lift = record.subscribed and customer.suppressed_at is None and customer.unsubscribed_at is None
        if record.subscribed is not None and not nothing_to_lift and customer.id is not None:
            choice = record_import_choice(session, customer.id, record.subscribed, f"{file}:{line}", now)
            report.consent[choice] += 1
    sync_many(session, [(customer.id or 0, record.dates) for _line, record, customer in written])


def import_interactions(
    engine: Engine | Connection,
    path: Path,
    *,
    skip_invalid: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    now: datetime | None = None,
    default_zone: str = "UTC",
    layout: Layout | None = None,
    reader: RowReader | None = None,
) -> ImportReport:
    """Add interactions (a reference already present for the customer is not added twice).

    Customer aggregates (order count, lifetime spend, interaction count, last
    interaction) are updated in the same transaction; a refund (an order with
    a negative amount) lowers lifetime spend and is not counted as an order.
    An interaction after ``now`` (aware, default the current instant) is a
    bad row. An order sets customer_since when the customer's came from no
    file (its day in the customer's zone, else ``default_zone``). ``layout``
    maps a shop's columns, may find customers by email and may group an
    order's lines into one interaction.
    """
    layout = layout or Layout("interactions")
    parse = partial(interaction_record, now=now or utcnow(), by_email=layout.by_email)
    read = reader or partial(read_rows, path)
    with Session(engine) as session:
        known = _CustomerIds(session, path, layout)

        def rows(progress: Progress | None = None) -> Iterator[ParsedRow[InteractionRecord]]:
            parsed = read(
                layout,
                parse,
                lambda r: (r.customer_key, r.reference) if r.reference else None,
                progress,
            )
            return known.check(parsed)

        report = _validate(path, rows(progress), skip_invalid, dry_run, layout=layout)
        for batch in batches((r for r in rows() if r.record), BATCH):
            _add_interactions(session, [r.record for r in batch if r.record], known, report, default_zone)
        if dry_run:
            session.rollback()
        else:
            session.commit()
    return report


class _CustomerIds:
    """The customer a row names (external_id, or ``email:<mailbox>``) → customer id, looked up a batch at a time."""

    def __init__(self, session: Session, file: Path, layout: Layout) -> None:
        self.session = session
        self.file = str(file)
        self.layout = layout
        self.ids: dict[str, int] = {}
        self.shared: dict[str, list[str]] = {}  # a mailbox that several customers have → their external ids

    def check(self, rows: Iterator[ParsedRow[InteractionRecord]]) -> Iterator[ParsedRow[InteractionRecord]]:
        for batch in batches(rows, BATCH):
            wanted = [r.record for r in batch if r.record and r.record.customer_key not in self.ids]
            by_id = {r.external_id for r in wanted if r.email is None}
            if by_id:
                found = self.session.execute(
                    select(col(Customer.external_id), col(Customer.id)).where(col(Customer.external_id).in_(by_id))
                ).all()
                self.ids.update({external_id: cid for external_id, cid in found})
            self._by_email([r for r in wanted if r.email is not None])
            for row in batch:
                record = row.record
                if record is None or record.customer_key in self.ids:
                    yield row
                    continue
                if record.email is not None:
                    column = self.layout.label("email")
                    others = self.shared.get(record.email.mailbox)
                    problem = (
                        f"several customers have {record.email.stored!r} ({', '.join(others)}): match by external_id"
                        if others
                        else f"no customer with email {record.email.stored!r}"
                    )
                else:
                    column = self.layout.label("external_id")
                    problem = f"no customer with external_id {record.external_id!r}"
                yield ParsedRow(row.line, row.raw, None, RowError(self.file, row.line, column, problem), row.mapped,
                                row.more)

    def _by_email(self, records: list[InteractionRecord]) -> None:
        """Find customers by mailbox, in any spelling of the domain and any case, as `mailer unsubscribe` does."""
        spellings: dict[str, str] = {}  # a lower-cased spelling → the mailbox
        for record in records:
            assert record.email is not None
            for form in (record.email.stored, *record.email.spellings):
                spellings[form.lower()] = record.email.mailbox
        if not spellings:
            return
        found = self.session.execute(
            select(col(Customer.email), col(Customer.external_id), col(Customer.id)).where(
                func.lower(col(Customer.email)).in_(list(spellings))
            )
        ).all()
        owners: dict[str, dict[str, int]] = {}
        for email, external_id, cid in found:
            owners.setdefault(spellings[email.lower()], {})[external_id] = cid
        for mailbox, customers in owners.items():
            if len(customers) == 1:
                self.ids[f"email:{mailbox}"] = next(iter(customers.values()))
            else:
                self.shared[mailbox] = sorted(customers)


def _add_interactions(
    session: Session, records: list[InteractionRecord], known: _CustomerIds, report: ImportReport, default_zone: str
) -> None:
    pairs = {(known.ids[r.customer_key], r.reference) for r in records if r.reference}
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
    fresh = [r for r in records if not (r.reference and (known.ids[r.customer_key], r.reference) in present)]
    report.unchanged += len(records) - len(fresh)
    touched = {known.ids[r.customer_key] for r in fresh}
    customers = {
        c.id: c
        for c in session.execute(select(Customer).where(Customer.id.in_(touched))).scalars()  # type: ignore[union-attr]
    }
    moved: set[int] = set()
    for record in fresh:
        cid = known.ids[record.customer_key]
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
        if counts_as_first_order(record.kind, record.amount):
            zone = customer.timezone or default_zone
            day = since_from_order(customer.customer_since, customer.customer_since_from, record.occurred_at, zone)
            if day is not None:
                customer.customer_since, customer.since_md = day, month_day(day)
                customer.customer_since_from = FROM_FIRST_ORDER
                moved.add(cid)
        session.add(customer)
        report.inserted += 1
    report.since_from_orders += len(moved)
    session.flush()
