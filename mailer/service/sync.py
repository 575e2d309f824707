"""Running the ``[[source]]``s: ``mailer sync`` and the daemon before a pass.

Each source is its own unit: a SQL source commits its customers, interactions
and high-water marks together or not at all; a folder commits file by file.
A source that fails is reported with its reason and the others still run; its
last attempt, last success and since when it has been failing are kept in
``source_state`` for ``mailer status``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from mailer.config.settings import ConfigError, Settings, SourceSettings
from mailer.contacts import dropfolder, sqlsource
from mailer.contacts.csvfile import ImportFailed, RowError
from mailer.contacts.importer import ImportReport
from mailer.store.tables import SourceState

# How many bad rows a report names before "… and N more" (the errors file of a folder has them all).
SHOWN_ERRORS = 20


@dataclass
class SourceOutcome:
    """One source's sync: what changed, or why nothing did."""

    name: str
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0  # bad rows (sql) or rejected files (folder)
    error: str = ""  # why the source failed; "" when it worked
    details: list[str] = field(default_factory=list)  # the bad rows, one line each
    waiting: int = 0  # folder files still being written

    @property
    def failed(self) -> bool:
        return bool(self.error)

    def add(self, report: ImportReport) -> None:
        self.new += report.inserted
        self.updated += report.updated
        self.unchanged += report.unchanged

    def counts(self) -> dict[str, int]:
        return {"new": self.new, "updated": self.updated, "unchanged": self.unchanged, "rejected": self.rejected}

    def summary(self) -> str:
        text = f"{self.name}: {self.new} new, {self.updated} updated, {self.unchanged} unchanged"
        text += f", {self.rejected} rejected"
        if self.waiting:
            text += f", {self.waiting} file(s) still being written"
        if self.error:
            text += f"; failed: {self.error}"
        return text


def sync(
    engine: Engine,
    settings: Settings,
    names: Sequence[str] = (),
    *,
    full: bool = False,
    dry_run: bool = False,
    now: datetime | None = None,
) -> list[SourceOutcome]:
    """Sync the named sources (all when none are named) once; never raises for a source's own failure.

    Raises ConfigError for a name no ``[[source]]`` has.
    """
    chosen = [settings.source(n) for n in names] if names else list(settings.sources)
    now = now or datetime.now(UTC)
    outcomes: list[SourceOutcome] = []
    for source in chosen:
        outcome = SourceOutcome(source.name)
        try:
            if source.kind == "sql":
                _sync_sql(engine, settings, source, outcome, full=full, dry_run=dry_run, now=now)
            else:
                _sync_folder(engine, settings, source, outcome, dry_run=dry_run, now=now)
        except ImportFailed as failed:
            outcome.rejected = len(failed.errors)
            outcome.error = f"{len(failed.errors)} bad row(s); nothing was changed"
            outcome.details = _lines(failed.errors)
        except (sqlsource.SourceFailed, ConfigError) as exc:
            outcome.error = f"{exc}; nothing was changed"
        except SQLAlchemyError as exc:
            outcome.error = f"{sqlsource.first_line(exc)}; nothing was changed"
        except OSError as exc:
            outcome.error = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
        if not dry_run:
            _record(engine, source.name, outcome, now)
        outcomes.append(outcome)
    return outcomes


def _sync_sql(
    engine: Engine, settings: Settings, source: SourceSettings, outcome: SourceOutcome, *,
    full: bool, dry_run: bool, now: datetime,
) -> None:
    with engine.connect() as connection, connection.begin() as transaction:
        with Session(connection) as session:
            state = session.get(SourceState, source.name)
            marks = {"customers": state.customers_mark, "interactions": state.interactions_mark} if state else {}
        report = sqlsource.sync(
            connection, source, marks, full=full, default_zone=settings.sender.timezone,
            date_columns=settings.date_columns, now=now,
        )
        for done in report.reports.values():
            outcome.add(done)
        if dry_run:
            transaction.rollback()
            return
        with Session(connection) as session:
            row = session.get(SourceState, source.name) or SourceState(name=source.name)
            if "customers" in report.marks:
                row.customers_mark = report.marks["customers"]
            if "interactions" in report.marks:
                row.interactions_mark = report.marks["interactions"]
            session.add(row)
            session.commit()  # joins the connection's transaction: committed below, with the rows


def _sync_folder(
    engine: Engine, settings: Settings, source: SourceSettings, outcome: SourceOutcome, *, dry_run: bool,
    now: datetime,
) -> None:
    report = dropfolder.sync(
        engine, source, dry_run=dry_run, default_zone=settings.sender.timezone, date_columns=settings.date_columns,
        now=now,
    )
    for done in report.imported:
        outcome.add(done)
    outcome.waiting = len(report.waiting)
    outcome.rejected = len(report.rejected)
    for target, errors in report.rejected.items():
        outcome.details.append(f"rejected {target} ({len(errors)} problem(s); see {target.name}.errors.txt)")
        outcome.details.extend(_lines(errors, indent="  "))
    if report.rejected:
        outcome.error = f"{len(report.rejected)} file(s) rejected; the other files were imported"


def _lines(errors: list[RowError], indent: str = "") -> list[str]:
    lines = [f"{indent}{e}" for e in errors[:SHOWN_ERRORS]]
    if len(errors) > SHOWN_ERRORS:
        lines.append(f"{indent}… and {len(errors) - SHOWN_ERRORS} more")
    return lines


def _record(engine: Engine, name: str, outcome: SourceOutcome, now: datetime) -> None:
    """Keep how the sync went (in its own transaction: a failed sync's rows were rolled back, this is not)."""
    with Session(engine) as session:
        row = session.get(SourceState, name) or SourceState(name=name)
        row.last_attempt_at = now
        row.last_counts = outcome.counts()
        if outcome.failed:
            row.last_error = outcome.error
            row.failing_since = row.failing_since or now
        else:
            row.last_error = ""
            row.failing_since = None
            row.last_success_at = now
        session.add(row)
        session.commit()


def states(engine: Engine) -> dict[str, SourceState]:
    with Session(engine) as session:
        return {row.name: row for row in session.exec(select(SourceState)).all()}


def describe(state: SourceState | None) -> str:
    """One line for `mailer status`: when the source last worked, and what is wrong with it now."""
    if state is None or state.last_attempt_at is None:
        return "never synced"
    success = _when(state.last_success_at) if state.last_success_at else "never"
    if state.failing_since is None:
        counts = ", ".join(f"{k} {v}" for k, v in state.last_counts.items())
        return f"last sync {success}: {counts}"
    return f"failing since {_when(state.failing_since)} (last success {success}): {state.last_error}"


def problems(sources: Sequence[SourceSettings], states: dict[str, SourceState], now: datetime) -> list[str]:
    """The sources that have failed for longer than their ``alert_after``, one line each (pure)."""
    found: list[str] = []
    for source in sources:
        state = states.get(source.name)
        if state is not None and state.failing_since is not None and now - state.failing_since > source.alert_after:
            found.append(
                f"source {source.name} failing since {_when(state.failing_since)}: {state.last_error} "
                f"(`mailer sync {source.name}` shows why)"
            )
    return found


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
