"""Reading an import file: streamed in batches, every row with its real line number, bad rows written aside."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Generic, Protocol, TypeVar

from mailer.contacts.fields import InteractionRecord, RowProblem
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


class RowReader(Protocol):
    """Where an import's rows come from when not from its file: called once per read (the importer reads twice)."""

    def __call__(
        self,
        required: Sequence[str],
        parse: Callable[[dict[str, str]], R],
        key: Callable[[R], object],
        progress: Progress | None,
    ) -> Iterator[ParsedRow[R]]: ...


def parse_rows(
    name: str,
    rows: Iterable[tuple[int, dict[str, str]]],
    parse: Callable[[dict[str, str]], R],
    key: Callable[[R], object],
) -> Iterator[ParsedRow[R]]:
    """Numbered rows from elsewhere (a database source), checked exactly as a file's rows are."""
    seen: dict[object, int] = {}
    for line, raw in rows:
        yield _parse_one(name, line, raw, parse, key, seen)


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
            writer.writerow([*(row.raw.get(h) or "" for h in header), row.line, f"{error.column}: {error.problem}"])
    return target


def header_row(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return [h.strip() for h in next(csv.reader(handle))]
