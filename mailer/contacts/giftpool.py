"""``mailer gifts import NAME FILE.csv``: the shop's codes into a gift's pool, all of them or none.

The file has a header row with a ``code`` column and, optionally, ``expires``
(``YYYY-MM-DD``, the last day the shop honours the code); other columns are
ignored (a shop's export often carries its own). Every problem is listed as
``FILE:LINE: column: problem``: an empty or oddly written code, a code twice
in the file or already in the pool, an expiry that is no date or already
past. Then nothing is imported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from mailer.contacts.csvfile import ImportFailed, RowError, read_rows
from mailer.contacts.fields import RowProblem
from mailer.contacts.mapping import Layout
from mailer.store.tables import GiftCode, GiftState

EXPIRY_COLUMNS = ("expires", "expires_on", "expiry")
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/+=-]{0,99}")
_CHUNK = 900  # SQLite caps bound parameters


@dataclass(frozen=True, slots=True)
class PoolRecord:
    code: str
    expires_on: date | None


@dataclass(frozen=True, slots=True)
class PoolImport:
    gift: str
    added: int
    earliest_expiry: date | None

    def summary(self) -> str:
        until = f"; the first expires on {self.earliest_expiry}" if self.earliest_expiry else ""
        return f"gift {self.gift!r}: {self.added} code{'' if self.added == 1 else 's'} added to the pool{until}"


def import_codes(engine: Engine, gift: str, path: Path, today: date, now: datetime) -> PoolImport:
    """Add every code of ``path`` to ``gift``'s pool in one transaction; raises ImportFailed listing every bad row."""

    def parse(raw: dict[str, str]) -> PoolRecord:
        return _record(raw, today)

    name = str(path)
    errors: list[RowError] = []
    records: list[tuple[int, PoolRecord]] = []
    first_line: dict[str, int] = {}
    for row in read_rows(path, Layout("gift codes", needs=("code",)), parse, key=lambda _record: None):
        if row.error is not None:
            errors.append(row.error)
        elif row.record is not None:
            first = first_line.setdefault(row.record.code, row.line)
            if first != row.line:
                errors.append(RowError(name, row.line, "code", f"{row.record.code!r} is also on line {first}"))
            else:
                records.append((row.line, row.record))
    with Session(engine) as session:
        codes = [record.code for _line, record in records]
        held: set[str] = set()
        for start in range(0, len(codes), _CHUNK):
            held.update(
                session.execute(
                    select(col(GiftCode.code)).where(
                        col(GiftCode.gift) == gift, col(GiftCode.code).in_(codes[start : start + _CHUNK])
                    )
                ).scalars()
            )
        errors += [
            RowError(name, line, "code", f"{record.code!r} is already in the pool of {gift!r}")
            for line, record in records
            if record.code in held
        ]
        if errors:
            raise ImportFailed(sorted(errors, key=lambda e: e.line))
        if not records:
            raise ImportFailed([RowError(name, 1, "code", "no codes in the file")])
        session.add_all(
            GiftCode(
                gift=gift,
                code=record.code,
                expires_on=record.expires_on,
                state=GiftState.AVAILABLE,
                added_at=now,
                source=f"{path.name}:{line}"[:300],
            )
            for line, record in records
        )
        try:
            session.commit()
        except IntegrityError:  # another import of the same codes committed first
            session.rollback()
            meanwhile = RowError(name, 0, "code", f"codes of this file were added to {gift!r} meanwhile")
            raise ImportFailed([meanwhile]) from None
    expiries = [record.expires_on for _line, record in records if record.expires_on]
    return PoolImport(gift, len(records), min(expiries) if expiries else None)


def _record(raw: dict[str, str], today: date) -> PoolRecord:
    code = (raw.get("code") or "").strip()
    if not code:
        raise RowProblem("code", "is empty")
    if not _CODE.fullmatch(code):
        raise RowProblem("code", f"{code!r}: use letters, digits and - _ . : / + = (at most 100, no spaces)")
    column = next((c for c in EXPIRY_COLUMNS if c in raw), None)
    written = (raw.get(column) or "").strip() if column else ""
    if not written:
        return PoolRecord(code, None)
    assert column is not None
    try:
        expires = date.fromisoformat(written)
    except ValueError:
        raise RowProblem(column, f"not a date: {written!r} (write YYYY-MM-DD)") from None
    if expires <= today:
        raise RowProblem(column, f"{expires} is not after today ({today}): the code could never be given")
    return PoolRecord(code, expires)
