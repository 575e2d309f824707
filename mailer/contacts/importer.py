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
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, tuple_
from sqlmodel import Session, col

from mailer.contacts.csvfile import (
    BATCH,
    ImportFailed,
    ParsedRow,
    Progress,
    RowError,
    batches,
    header_row,
    read_rows,
    write_rejected,
)
from mailer.contacts.dates import date_attributes, sync_many
from mailer.contacts.fields import (
    CUSTOMER_REQUIRED,
    INTERACTION_REQUIRED,
    CustomerRecord,
    InteractionRecord,
    customer_record,
    interaction_record,
)
from mailer.store.tables import Customer, Interaction, utcnow


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


def import_customers(
    engine: Engine,
    path: Path,
    *,
    skip_invalid: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    default_zone: str = "UTC",
    now: datetime | None = None,
    date_columns: Collection[str] = (),
) -> ImportReport:
    """Upsert customers by external_id; raises ImportFailed (nothing written) on bad rows unless skipping.

    ``default_zone`` is the zone of customers without one of their own (the
    ``[sender] timezone``); ``now`` (aware, default the current instant) is
    what "in the future" is measured from. ``date_columns`` (the attributes
    date campaigns name) must hold dates or be blank.
    """
    checked = partial(customer_record, now=now or utcnow(), default_zone=default_zone)

    def parse(row: dict[str, str]) -> CustomerRecord:
        record = checked(row)
        return replace(record, dates=date_attributes(record.attributes, date_columns))

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
            for batch in batches(good(), BATCH):
                ids = [r.record.external_id for r in batch if r.record]
                query = select(col(Customer.external_id)).where(col(Customer.external_id).in_(ids))
                existing = set(session.execute(query).scalars())
                report.updated += len(existing)
                report.inserted += len(ids) - len(existing)
        return report
    with Session(engine) as session:
        for batch in batches(good(), BATCH):
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
        report.rejected_file = write_rejected(path, header_row(path), rejected)
    return report


def _upsert_customers(session: Session, records: list[CustomerRecord], report: ImportReport) -> None:
    ids = [r.external_id for r in records]
    existing = {
        c.external_id: c
        for c in session.execute(select(Customer).where(Customer.external_id.in_(ids))).scalars()  # type: ignore[attr-defined]
    }
    now = utcnow()
    written: list[tuple[Customer, CustomerRecord]] = []
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
        written.append((customer, record))
    session.flush()
    sync_many(session, [(customer.id or 0, record.dates) for customer, record in written])


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
        for batch in batches((r for r in rows() if r.record), BATCH):
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
        for batch in batches(rows, BATCH):
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
