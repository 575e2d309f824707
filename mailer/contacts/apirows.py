"""The HTTP API's JSON objects put through the CSV import: the same field rules, upserts and counts.

A JSON object is one row whose keys are the CSV headers (``email``, ``first_name``,
``tags`` ...; any other key becomes an attribute, as a custom CSV column does). Its values
are turned into the text a CSV cell would hold, then :mod:`mailer.contacts.importer` does
the rest, so a customer put by the API and the same customer imported from a file end up
the same in the store. Row numbers in the importer's errors are the object's position
(1 for a single object).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine

from mailer.contacts import importer
from mailer.contacts.csvfile import ImportFailed, ParsedRow, Progress, RowError, parse_rows
from mailer.contacts.fields import RowProblem
from mailer.contacts.mapping import Layout

R = TypeVar("R")

CUSTOMER_LABEL = "customer"
INTERACTIONS_LABEL = "interactions"


def as_cell(field: str, value: Any) -> str:
    """A JSON value as the CSV cell holding it; raises RowProblem for a value no cell could hold."""
    if value is None:
        return ""
    if isinstance(value, bool):  # before int: True is an int too
        return "yes" if value else "no"
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list) and field == "tags" and all(isinstance(t, str) for t in value):
        return ";".join(value)
    wanted = "a list of strings" if field == "tags" else "a string, a number, true/false or null"
    raise RowProblem(field, f"must be {wanted}")


def as_row(item: Any) -> dict[str, str]:
    if not isinstance(item, dict):
        raise RowProblem("body", "must be a JSON object")
    return {str(name): as_cell(str(name), value) for name, value in item.items()}


def _reader(label: str, rows: list[dict[str, str]], require: tuple[str, ...] = ()) -> Any:
    """A ``reader=`` for the importer: ``rows`` as numbered rows, mapped and checked like a file's."""

    def read(
        layout: Layout, parse: Callable[[dict[str, str]], R], key: Callable[[R], object], _progress: Progress | None
    ) -> Iterator[ParsedRow[R]]:
        columns = sorted({name for row in rows for name in row})
        problems = layout.bind(columns)
        missing = [c for c in require if c not in columns]
        if problems or missing:
            errors = [RowError(label, 1, p.column, p.problem) for p in problems]
            raise ImportFailed([*errors, *(RowError(label, 1, c, "missing column") for c in missing)])
        # Every row gets every column (as a CSV row has every header): "" for one an object left out.
        filled = [{name: row.get(name, "") for name in columns} for row in rows]
        checked = _requiring(parse, require)
        yield from parse_rows(label, enumerate(filled, start=1), layout, checked, key)

    return read


def _requiring(parse: Callable[[dict[str, str]], R], fields: tuple[str, ...]) -> Callable[[dict[str, str]], R]:
    def check(raw: dict[str, str]) -> R:
        for name in fields:
            if not (raw.get(name) or "").strip():
                raise RowProblem(name, "is required (a call repeated after a timeout must not count twice)")
        return parse(raw)

    return check


def put_customer(
    engine: Engine,
    external_id: str,
    item: dict[str, Any],
    *,
    default_zone: str,
    date_columns: Collection[str] = (),
    now: datetime | None = None,
) -> importer.ImportReport:
    """Create or update one customer; raises RowProblem or ImportFailed (nothing written) for a bad field.

    Only the fields the object names are changed: an update need not repeat them all, but
    ``email`` is required, as in a file.
    """
    row = as_row(item)
    given = row.get("external_id")
    if given is not None and given != external_id:
        raise RowProblem("external_id", f"is {given!r} in the body but {external_id!r} in the URL")
    row["external_id"] = external_id
    reader = _reader(CUSTOMER_LABEL, [row])
    return importer.import_customers(
        engine, Path(CUSTOMER_LABEL), reader=reader, default_zone=default_zone, date_columns=date_columns, now=now
    )


def post_interactions(
    engine: Engine, items: list[Any], *, default_zone: str, now: datetime | None = None
) -> importer.ImportReport:
    """Add interactions; one already present (same customer and ``reference``) is counted unchanged.

    All or nothing: one bad object and none is added. ``reference`` is required, so a client
    that repeats a call after a timeout does not add an order twice.
    """
    rows: list[dict[str, str]] = []
    errors: list[RowError] = []
    for number, item in enumerate(items, start=1):
        try:
            rows.append(as_row(item))
        except RowProblem as problem:
            errors.append(RowError(INTERACTIONS_LABEL, number, problem.column, problem.problem))
    if errors:
        raise ImportFailed(errors)
    reader = _reader(INTERACTIONS_LABEL, rows, require=("reference",))
    return importer.import_interactions(
        engine, Path(INTERACTIONS_LABEL), reader=reader, default_zone=default_zone, now=now
    )
