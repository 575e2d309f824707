"""A ``kind = "sql"`` source: the business's own database, only read, its rows put through the CSV import's rules.

Each query is wrapped as ``SELECT * FROM (<query>) AS mailer_source``, so only a
SELECT can run, and the connection is read-only as well (SQLite: opened
``mode=ro`` with ``query_only``; PostgreSQL: a READ ONLY transaction). Rows are
streamed (a server-side cursor where the driver has one), a batch at a time.

With ``updated_column`` a sync reads only rows newer than the source's
high-water mark. The window's upper end is fixed first (the largest value now
present), so the importer's two reads (validate, then write) see the same rows,
and the next sync starts exactly where this one ended. A row whose
``updated_column`` is NULL is read only by a full sync. Rows with an older value
committed late by a long transaction at the source are missed until ``--full``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from mailer.config.settings import SourceSettings
from mailer.contacts import importer
from mailer.contacts.csvfile import BATCH, ParsedRow, Progress, parse_rows
from mailer.contacts.fields import CUSTOMER_COLUMNS, INTERACTION_COLUMNS, RowProblem
from mailer.contacts.mapping import Layout
from mailer.errors import MailerError

R = TypeVar("R")

Mark = dict[str, str]  # {"type": "datetime" | "date" | "int" | "decimal" | "str", "value": ...}

QUERIES = ("customers", "interactions")


class SourceFailed(MailerError):
    """A source could not be read (unreachable, a bad query, a missing column); nothing was changed."""


def encode_mark(value: object) -> Mark:
    """A high-water mark as stored: its type kept, so it is bound back as the same type."""
    if isinstance(value, datetime):
        return {"type": "datetime", "value": value.isoformat()}
    if isinstance(value, date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, int):
        return {"type": "int", "value": str(int(value))}
    if isinstance(value, (Decimal, float)):
        return {"type": "decimal", "value": str(value)}
    return {"type": "str", "value": str(value)}


def decode_mark(mark: Mark) -> object:
    readers: dict[str, Callable[[str], object]] = {
        "datetime": datetime.fromisoformat, "date": date.fromisoformat, "int": int, "decimal": Decimal, "str": str,
    }
    return readers[mark["type"]](mark["value"])


@dataclass
class SqlReport:
    """What one sync of a SQL source read and changed, and the marks to keep if it is committed."""

    reports: dict[str, importer.ImportReport] = field(default_factory=dict)  # "customers", "interactions"
    marks: dict[str, Mark | None] = field(default_factory=dict)


def open_source(source: SourceSettings) -> Engine:
    """An engine on the source's database that cannot write; raises ConfigError if url_env/url_file is unset."""
    url = make_url(source.database_url())
    if url.drivername.startswith("sqlite"):
        database = url.database or ""
        if not Path(database).is_file():
            raise SourceFailed(f"no such SQLite database: {database}")
        url = url.set(database=f"file:{database}", query={**url.query, "mode": "ro", "uri": "true"})
        engine = create_engine(url)

        @event.listens_for(engine, "connect")
        def _read_only(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA query_only = ON")

        return engine
    if url.drivername.startswith("postgresql"):
        engine = create_engine(url, connect_args={"connect_timeout": 10})
        return engine.execution_options(postgresql_readonly=True)
    return create_engine(url)


def sync(
    store: Connection,
    source: SourceSettings,
    marks: dict[str, Mark | None],
    *,
    full: bool = False,
    default_zone: str = "UTC",
    date_columns: Collection[str] = (),
    now: datetime | None = None,
) -> SqlReport:
    """Import the source's customers, then its interactions, through ``store`` (whose transaction decides).

    ``marks`` are the marks of the last committed sync (ignored with ``full``).
    Raises SourceFailed for a database or query problem and ImportFailed for bad
    rows; either way the caller rolls back and nothing changes.
    """
    engine = open_source(source)
    report = SqlReport()
    try:
        for kind in QUERIES:
            query = getattr(source, kind)
            if not query:
                continue
            reader = _Reader(engine, source, kind, query, None if full else marks.get(kind))
            label = Path(reader.label)
            if not reader.has_rows():
                report.reports[kind] = importer.ImportReport(file=label)
            elif kind == "customers":
                report.reports[kind] = importer.import_customers(
                    store, label, reader=reader, now=now, default_zone=default_zone, date_columns=date_columns
                )
            else:
                report.reports[kind] = importer.import_interactions(store, label, reader=reader, now=now)
            report.marks[kind] = reader.new_mark
    except SQLAlchemyError as exc:
        raise SourceFailed(f"{kind} query: {first_line(exc)}") from None
    finally:
        engine.dispose()
    return report


class _Reader:
    """One query of a source as the importer's rows: a call per read, each over the same window."""

    def __init__(self, engine: Engine, source: SourceSettings, kind: str, query: str, mark: Mark | None) -> None:
        self.engine = engine
        self.kind = kind
        self.label = f"{source.name}/{kind}"
        self.inner = f"SELECT * FROM ({query}) AS mailer_source"
        self.updated = source.updated_column
        self.since = decode_mark(mark) if mark else None
        self.upto: object = None
        self.new_mark = mark
        known = CUSTOMER_COLUMNS if kind == "customers" else INTERACTION_COLUMNS
        # The mark's column steers the sync; it becomes no attribute unless it is an import column itself.
        self.skip = {self.updated} - set(known) if self.updated else set()

    def has_rows(self) -> bool:
        """Fix the window's upper end; False when an incremental sync finds nothing newer than the mark."""
        if not self.updated:
            return True
        column = self._column()
        where = f" WHERE {column} > :since" if self.since is not None else ""
        with self.engine.connect() as connection:
            upto = connection.execute(
                text(f"SELECT max({column}) FROM ({self.inner}) AS mailer_window{where}"),
                {"since": self.since} if where else {},
            ).scalar()
        if upto is None:
            return self.since is None  # nothing newer; or no row has a value yet (read everything)
        self.upto = upto
        self.new_mark = encode_mark(upto)
        return True

    def _column(self) -> str:
        return self.engine.dialect.identifier_preparer.quote(self.updated)

    def _statement(self) -> tuple[str, dict[str, object]]:
        if not self.updated or self.upto is None:
            return self.inner, {}
        column = self._column()
        if self.since is None:  # the first or a full sync: everything up to the window's end, and rows without a value
            return f"{self.inner} WHERE ({column} <= :upto OR {column} IS NULL)", {"upto": self.upto}
        return f"{self.inner} WHERE {column} > :since AND {column} <= :upto", {"since": self.since, "upto": self.upto}

    def __call__(
        self,
        layout: Layout,
        parse: Callable[[dict[str, str]], R],
        key: Callable[[R], object],
        progress: Progress | None,
    ) -> Iterator[ParsedRow[R]]:
        # A source's interactions are read again and again: only a reference keeps them from counting twice.
        required = (*layout.required, "reference") if self.kind == "interactions" else layout.required
        statement, params = self._statement()
        with self.engine.connect() as connection:
            result = connection.execution_options(stream_results=True, yield_per=BATCH).execute(
                text(statement), params
            )
            try:  # a server-side cursor must be closed, also when the importer stops reading early
                columns = [str(c) for c in result.keys()]  # noqa: SIM118 - iterating a Result gives rows
                self._check_columns(columns, required)
                layout.bind(columns)  # unmapped: the query's columns are named like the CSV import's headers
                numbered = ((n, self._raw(columns, row)) for n, row in enumerate(result, start=1))
                checked = _with_reference(parse) if self.kind == "interactions" else parse
                yield from parse_rows(self.label, numbered, layout, checked, key)
            finally:
                result.close()

    def _check_columns(self, columns: list[str], required: Sequence[str]) -> None:
        missing = [c for c in required if c not in columns]
        if missing:
            raise SourceFailed(f"{self.kind} query: no column {', '.join(repr(c) for c in missing)} in its result")
        twice = sorted({c for c in columns if columns.count(c) > 1})
        if twice:
            raise SourceFailed(f"{self.kind} query: column {', '.join(repr(c) for c in twice)} appears twice")
        if self.updated and self.updated not in columns:
            raise SourceFailed(f"{self.kind} query: no column {self.updated!r} (the updated_column) in its result")

    def _raw(self, columns: list[str], row: Sequence[object]) -> dict[str, str]:
        return {name: _as_text(value) for name, value in zip(columns, row, strict=True) if name not in self.skip}


def _with_reference(parse: Callable[[dict[str, str]], R]) -> Callable[[dict[str, str]], R]:
    def check(raw: dict[str, str]) -> R:
        if not (raw.get("reference") or "").strip():
            raise RowProblem("reference", "is required from a database source (a row read again must not count twice)")
        return parse(raw)

    return check


def _as_text(value: object) -> str:
    """A database value as the CSV import would have read it."""
    if value is None:
        return ""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def first_line(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__
