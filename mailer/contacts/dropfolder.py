"""A ``kind = "folder"`` source: CSV files dropped by another job (SFTP, a shop export), imported in name order.

A file's name says what it holds: it starts with ``customers`` or ``interactions``
(``customers-2026-12-04.csv``), so in name order a day's customers come before its
interactions. Each file is one ``mailer import``: the same rules, all or nothing.
A good file moves to ``done/``; a bad one to ``rejected/`` next to
``<file>.errors.txt``, which lists every bad row.

A file still being written is left alone: one named ``*.part`` (write to
``x.csv.part``, then rename to ``x.csv``: the rename is atomic), a hidden one
(``.x.csv``, as rsync and many SFTP servers write), and one modified less than
``settle`` ago (a writer that does neither).
"""

from __future__ import annotations

import shutil
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from mailer.config.settings import SourceSettings
from mailer.contacts import importer
from mailer.contacts.csvfile import ImportFailed, RowError

DONE = "done"
REJECTED = "rejected"
KINDS = ("customers", "interactions")


@dataclass
class FolderReport:
    imported: list[importer.ImportReport] = field(default_factory=list)
    rejected: dict[Path, list[RowError]] = field(default_factory=dict)  # where the file went → its bad rows
    waiting: list[Path] = field(default_factory=list)  # still being written (or named for no kind)


def ready_files(folder: Path, now: datetime, settle: timedelta) -> tuple[list[Path], list[Path]]:
    """The CSV files ready to import, in name order; and those still being written."""
    ready: list[Path] = []
    waiting: list[Path] = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.name.endswith(".part"):
            continue
        if path.suffix.lower() != ".csv":
            continue
        changed = datetime.fromtimestamp(path.stat().st_mtime, tz=now.tzinfo)
        (ready if now - changed >= settle else waiting).append(path)
    return ready, waiting


def kind_of(path: Path) -> str | None:
    name = path.name.lower()
    return next((kind for kind in KINDS if name.startswith(kind)), None)


def sync(
    engine: Engine, source: SourceSettings, *, dry_run: bool = False, default_zone: str = "UTC",
    date_columns: Collection[str] = (), now: datetime,
) -> FolderReport:
    """Import every ready file, each in its own transaction; raises OSError when the folder cannot be read."""
    assert source.path is not None
    folder = source.path
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    report = FolderReport()
    ready, report.waiting = ready_files(folder, now, source.settle)
    for path in ready:
        kind = kind_of(path)
        try:
            if kind is None:
                problem = "the name must start with 'customers' or 'interactions'"
                raise ImportFailed([RowError(str(path), 0, "file", problem)])
            if kind == "customers":
                done = importer.import_customers(
                    engine, path, dry_run=dry_run, default_zone=default_zone, date_columns=date_columns, now=now
                )
            else:
                done = importer.import_interactions(engine, path, dry_run=dry_run, now=now)
        except ImportFailed as failed:
            report.rejected[path if dry_run else _reject(folder, path, failed.errors)] = failed.errors
            continue
        report.imported.append(done)
        if not dry_run:
            _move(path, folder / DONE)
    return report


def _reject(folder: Path, path: Path, errors: list[RowError]) -> Path:
    target = _move(path, folder / REJECTED)
    lines = [f"{e.file.replace(str(path), target.name)}:{e.line}: {e.column}: {e.problem}" for e in errors]
    target.with_name(target.name + ".errors.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def _move(path: Path, into: Path) -> Path:
    """Move a file into a folder without replacing a file of the same name there (a second drop of it)."""
    into.mkdir(exist_ok=True)
    target = into / path.name
    number = 1
    while target.exists():
        target = into / f"{path.stem}.{number}{path.suffix}"
        number += 1
    return Path(shutil.move(path, target))
