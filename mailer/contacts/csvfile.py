"""Reading an import file: streamed in batches, every row with its real line number, bad rows written aside."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Generic, Protocol, TypeVar

from mailer.contacts.fields import InteractionRecord, RowProblem
from mailer.contacts.mapping import Layout, NoAddress
from mailer.errors import MailerError

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


@dataclass(frozen=True, slots=True)
class ParsedRow(Generic[R]):
    line: int
    raw: dict[str, str]
    record: R | None
    error: RowError | None
    mapped: dict[str, str] | None = None  # the row in mailer's columns (a mapped file's differ from ``raw``)
    more: tuple[tuple[int, dict[str, str]], ...] = ()  # the other lines of a grouped row (an order's items)
    no_address: bool = False  # left out: no email address, and the profile skips such rows


def read_rows(
    path: Path,
    layout: Layout,
    parse: Callable[[dict[str, str]], R],
    key: Callable[[R], object],
    progress: Progress | None = None,
) -> Iterator[ParsedRow[R]]:
    """Stream the file's rows, mapped by ``layout`` and validated; a file-level problem raises ImportFailed at once.

    ``key`` identifies a row; a second row with the same key is an error (it
    would silently overwrite the first). With a layout that groups lines, the
    consecutive lines of one order are one row (the first line's number), and
    an order whose lines are not together is an error on the stray line.
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
        lines.take_start()  # the header's line
        header = [h.strip() for h in header]
        reader.fieldnames = header
        duplicated = sorted({h for h in header if header.count(h) > 1})
        if duplicated:
            raise ImportFailed([RowError(name, 1, c, "column appears twice") for c in duplicated])
        problems = layout.bind(header)
        if problems:
            raise ImportFailed([RowError(name, 1, p.column, p.problem) for p in problems])

        def physical() -> Iterator[_Line]:
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
                yield _shape(name, lines.take_start() or reader.line_num, raw, layout)
            if progress:
                progress(handle.tell())

        seen: dict[object, int] = {}
        for unit in _grouped(name, physical(), layout) if layout.group_lines else physical():
            yield _parse_one(name, unit, parse, key, seen, layout)


@dataclass(frozen=True, slots=True)
class _Line:
    """One physical line (or an order's lines, merged), mapped to mailer's columns or failed."""

    line: int
    raw: dict[str, str]
    mapped: dict[str, str] | None
    error: RowError | None
    more: tuple[tuple[int, dict[str, str]], ...] = ()
    no_address: bool = False


def _shape(name: str, line: int, raw: dict[str, Any], layout: Layout) -> _Line:
    if None in raw:
        return _Line(line, raw, None, RowError(name, line, "row", "more fields than the header has"))
    absent = [k for k, v in raw.items() if v is None]
    if absent:
        return _Line(line, raw, None, RowError(name, line, absent[0], "missing: the row has too few fields"))
    try:
        return _Line(line, raw, layout.row(raw), None)
    except NoAddress:
        return _Line(line, raw, None, None, no_address=True)
    except RowProblem as problem:
        return _Line(line, raw, None, RowError(name, line, layout.label(problem.column), problem.problem))


def _grouped(name: str, lines: Iterator[_Line], layout: Layout) -> Iterator[_Line]:
    """Consecutive lines with one group key become one; memory holds one order's lines and the keys seen."""
    ended: dict[object, int] = {}  # key → the first line of its (finished) group
    group: list[_Line] = []
    group_key: object = None

    def finish() -> Iterator[_Line]:
        if not group:
            return
        ended[group_key] = group[0].line
        bad = next((g for g in group if g.error), None)
        if bad is not None:
            # One bad line spoils its order: the rest of it would import with a wrong total.
            for g in group:
                problem = RowError(name, g.line, "order", f"line {bad.line} of this order is bad")
                yield _Line(g.line, g.raw, None, g.error or problem)
            return
        if any(g.no_address for g in group):
            yield _Line(group[0].line, group[0].raw, None, None, tuple((g.line, g.raw) for g in group[1:]), True)
            return
        try:
            merged = layout.merge([g.mapped for g in group if g.mapped is not None])
        except RowProblem as problem:
            first = group[0]
            error = RowError(name, first.line, layout.label(problem.column), problem.problem)
            yield _Line(first.line, first.raw, None, error, tuple((g.line, g.raw) for g in group[1:]))
            return
        yield _Line(group[0].line, group[0].raw, merged, None, tuple((g.line, g.raw) for g in group[1:]))

    for line in lines:
        key = layout.group_key(line.raw) if None not in line.raw else None
        if group and key is not None and key == group_key:
            group.append(line)
            continue
        yield from finish()
        group, group_key = [], None
        if key is None:
            yield line
        elif key in ended:
            where = f"its other lines end before line {line.line}, from line {ended[key]}"
            problem = f"order {key[1]!r} continues here but {where}: keep an order's lines together"
            yield _Line(line.line, line.raw, None, RowError(name, line.line, layout.label("reference"), problem))
        else:
            group, group_key = [line], key
    yield from finish()


class _Lines:
    """The file's lines as text, strictly UTF-8 (a BOM is allowed), naming the line that is not.

    ``number`` is the physical line last handed to the CSV reader: where the
    reader was when it raised (its own ``line_num`` counts only the lines of
    rows it finished, so it points one row early). ``take_start`` gives the
    line a row began on, which is where a person looks for a row whose quoted
    cell spans lines.
    """

    def __init__(self, handle: BinaryIO, name: str) -> None:
        self.handle = handle
        self.name = name
        self.number = 0
        self.start: int | None = None

    def take_start(self) -> int | None:
        start, self.start = self.start, None
        return start

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
        if self.start is None and line.strip():
            self.start = self.number
        return line.removeprefix("\ufeff") if self.number == 1 else line


def _csv_problem(exc: csv.Error) -> str:
    if str(exc).startswith("field larger than field limit"):
        return f"a field is larger than the limit of {csv.field_size_limit()} characters"
    return f"broken CSV: {exc}"


def _parse_one(
    name: str,
    unit: _Line,
    parse: Callable[[dict[str, str]], R],
    key: Callable[[R], object],
    seen: dict[object, int],
    layout: Layout,
) -> ParsedRow[R]:
    line = unit.line
    if unit.error is not None or unit.mapped is None:
        return ParsedRow(line, unit.raw, None, unit.error, unit.mapped, unit.more, unit.no_address)
    try:
        record = parse(unit.mapped)
    except RowProblem as problem:
        error = RowError(name, line, layout.label(problem.column), problem.problem)
        return ParsedRow(line, unit.raw, None, error, unit.mapped, unit.more)
    identity = key(record)
    if identity is not None:
        first = seen.setdefault(identity, line)
        if first != line:
            column = layout.label("reference" if isinstance(record, InteractionRecord) else "external_id")
            return ParsedRow(line, unit.raw, None, RowError(name, line, column, f"duplicate of line {first}"),
                             unit.mapped, unit.more)
    return ParsedRow(line, unit.raw, record, None, unit.mapped, unit.more)


class RowReader(Protocol):
    """Where an import's rows come from when not from its file: called once per read (the importer reads twice)."""

    def __call__(
        self,
        layout: Layout,
        parse: Callable[[dict[str, str]], R],
        key: Callable[[R], object],
        progress: Progress | None,
    ) -> Iterator[ParsedRow[R]]: ...


def parse_rows(
    name: str,
    rows: Iterable[tuple[int, dict[str, str]]],
    layout: Layout,
    parse: Callable[[dict[str, str]], R],
    key: Callable[[R], object],
) -> Iterator[ParsedRow[R]]:
    """Numbered rows from elsewhere (a database source), mapped and checked exactly as a file's rows are.

    ``layout`` must be bound to the rows' columns already (:meth:`Layout.bind`).
    """
    seen: dict[object, int] = {}
    for line, raw in rows:
        yield _parse_one(name, _shape(name, line, raw, layout), parse, key, seen, layout)


def batches(rows: Iterator[ParsedRow[R]], size: int) -> Iterator[list[ParsedRow[R]]]:
    batch: list[ParsedRow[R]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_rejected(path: Path, header: Sequence[str], rejected: Sequence[tuple[ParsedRow[Any], RowError]]) -> Path:
    target = path.with_name(path.name + ".rejected.csv")
    with open(target, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([*header, "line", "reason"])
        for row, error in rejected:
            for line, raw in ((row.line, row.raw), *row.more):
                writer.writerow([*(raw.get(h) or "" for h in header), line, f"{error.column}: {error.problem}"])
    return target


def header_row(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return [h.strip() for h in next(csv.reader(handle))]
