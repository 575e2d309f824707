"""Searches by many ids at once, written for the database at hand.

SQLite caps bound parameters, so a list of ids goes in chunks of 900 with one ``?`` each.
PostgreSQL takes a chunk of 10,000 as one array parameter (``id = ANY(%(ids)s)``): no
placeholder per id for SQLAlchemy to write and psycopg to parse again on every query (at 1M
customers those made ~1.5 s of a planning pass's 3.9 s of CPU), and one plan however long the list.

``in_select`` is ``column IN (SELECT ...)`` for a subquery that yields a few thousand ids of a
big table. PostgreSQL turns ``IN (SELECT ...)`` into a semi-join and may read the whole outer
table for it (a merge join along the primary key for a cursor, a hash join over a sequential
scan otherwise); written ``column = ANY (ARRAY(SELECT ...))`` the subquery runs once and the
outer table is searched by its index, as SQLite does with its list subquery.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import ARRAY, Boolean, ColumnElement, Integer, Select, any_, cast, func, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.sqltypes import NullType
from sqlalchemy.sql.visitors import InternalTraversal, _TraverseInternalsType
from sqlmodel import Session

SQLITE_CHUNK = 900  # under SQLite's cap on bound parameters (999 before 3.32)
POSTGRES_CHUNK = 10_000

T = TypeVar("T")


def postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def chunks(session: Session, ids: Sequence[T]) -> Iterator[Sequence[T]]:
    """``ids`` in slices as long as one search of this database takes (see :func:`among`)."""
    size = POSTGRES_CHUNK if postgres(session) else SQLITE_CHUNK
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def among(session: Session, column: Any, ids: Sequence[int]) -> ColumnElement[bool]:
    """``column IN (ids)``: one array parameter on PostgreSQL, one parameter per id on SQLite."""
    if postgres(session):
        # The array written here as one untyped parameter ('{1,2,3}'), which the server reads as the
        # cast's integer[] (psycopg's list dumper, in Python, took ~8 ms per 10,000 ids). Not a VARCHAR
        # parameter cast to an array: that cast is left to run time, and the array is then neither sorted
        # for the index nor hashed for a filter (3x slower searches, measured).
        array = "{" + ",".join(str(int(i)) for i in ids) + "}"
        return column == any_(cast(literal(array, NullType()), ARRAY(Integer)))  # type: ignore[no-any-return]
    return column.in_(ids)  # type: ignore[no-any-return]


class InSelect(ColumnElement[bool]):
    """``column IN (select)``, written ``column = ANY (ARRAY(select))`` for PostgreSQL (module docstring)."""

    __visit_name__ = "mailer_in_select"
    inherit_cache = True
    _traverse_internals: _TraverseInternalsType = [  # noqa: RUF012  # as SQLAlchemy declares it
        ("column", InternalTraversal.dp_clauseelement),
        ("select", InternalTraversal.dp_clauseelement),
    ]
    type = Boolean()

    def __init__(self, column: Any, select: Select[Any]) -> None:
        self.column = column
        self.select = select

    def self_group(self, against: Any = None) -> InSelect:
        # Already a predicate: not a Boolean-typed value that SQLite would be asked to compare with 1
        # (``(... IN (...)) = 1``, which no index serves).
        return self


def in_select(column: Any, select: Select[Any]) -> InSelect:
    return InSelect(column, select)


@compiles(InSelect)
def _in_select(element: InSelect, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column.in_(element.select), **kw)


@compiles(InSelect, "postgresql")
def _any_array(element: InSelect, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column == any_(func.array(element.select.scalar_subquery())), **kw)
