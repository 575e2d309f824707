"""``mailer simulate``: the real passes for a run of days, on a throw-away copy of the store.

Each day runs :func:`mailer.service.passes.run_pass` for that day (what ``mailer run
--date`` does) against a copy, delivering to a maildir folder, so an admin
can watch a whole year before switching on while the real store is never
written. The copy lives in simulated time: what it records happens at noon
UTC of the simulated day (``PassClock.replayed``), so the daily cap counts
each day's messages as the relay would.

A SQLite store is copied with SQLite's backup API (a consistent snapshot,
even while a daemon writes); any other store (PostgreSQL) is copied row by
row into a temporary SQLite file, which runs the same code.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import Engine, insert, make_url, select
from sqlmodel import Session, SQLModel, col

from mailer import store
from mailer.config import Settings
from mailer.delivery.report import PassReport
from mailer.delivery.transport import MaildirTransport
from mailer.planning.clock import PassClock
from mailer.planning.policy import Verdict
from mailer.service import passes
from mailer.store.tables import SendLog

# In foreign-key order; the pass records (pass_run) and worker leases are not needed. Feedback holds
# customers whose notes wait for a person; campaign opt-outs and pauses are the customers' own wishes;
# gift codes are bound to rows as the simulated passes record them.
COPIED_TABLES = tuple(
    SQLModel.metadata.tables[name]
    for name in (
        "customer", "interaction", "send_log", "plan_mark", "feedback", "campaign_opt_out", "mail_pause", "gift_code"
    )
)
COPY_BATCH = 5000


@dataclass
class SimulatedDay:
    """What one simulated pass did, per campaign."""

    day: date
    sent: Counter[str] = field(default_factory=Counter)
    queued: Counter[str] = field(default_factory=Counter)  # decided "send" (sent, or waiting for the daily cap)
    deferred: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # includes deferrals the pass logged expired
    held: int = 0  # due messages the daily cap kept for the next day


@contextmanager
def throwaway_store(settings: Settings) -> Iterator[Engine]:
    """A copy of the store in a temporary SQLite file, removed afterwards; the real store is only read."""
    with tempfile.TemporaryDirectory(prefix="mailer-simulate-") as folder:
        target = Path(folder) / "store.db"
        url = make_url(settings.store.url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            source_path = Path(url.database)
            if not source_path.exists():
                raise store.StoreError(f"cannot open the store: {source_path} does not exist")
            checked = store.make_engine(settings.store.url)
            try:
                store.check_schema(checked)
            finally:
                checked.dispose()
            source, copy = sqlite3.connect(source_path), sqlite3.connect(target)
            try:
                source.backup(copy)
            finally:
                source.close()
                copy.close()
            engine = store.make_engine(f"sqlite:///{target}")
        else:
            engine = _copy_rows(settings.store.url, target)
        try:
            yield engine
        finally:
            engine.dispose()


def _copy_rows(url: str, target: Path) -> Engine:
    """Every row the passes read, from the store at ``url`` into a new SQLite store at ``target``."""
    source = store.make_engine(url)
    store.check_schema(source)
    engine = store.make_engine(f"sqlite:///{target}")
    store.create_schema(engine)
    try:
        with source.connect() as reading, engine.begin() as writing:
            for table in COPIED_TABLES:
                result = reading.execution_options(yield_per=COPY_BATCH).execute(select(table))
                for rows in result.mappings().partitions():
                    writing.execute(insert(table), [dict(row) for row in rows])
    finally:
        source.dispose()
    return engine


def simulate(
    settings: Settings, start: date, days: int, out: Path, campaign_names: Iterable[str] | None = None
) -> list[SimulatedDay]:
    """Run the real pass for each of ``days`` days from ``start`` on a throw-away copy; messages go to ``out``.

    The copy delivers through a maildir folder (``out/new/``) with no rate
    limit (nothing real is sent); the daily cap is kept, as the relay's.
    """
    names = list(campaign_names) if campaign_names else None
    transport = replace(settings.transport, kind="maildir", path=out, rate_per_second=0.0, connections=1)
    found: list[SimulatedDay] = []
    with throwaway_store(settings) as engine:
        copy = replace(settings, store=replace(settings.store, url=engine.url.render_as_string()), transport=transport)
        for offset in range(days):
            day = start + timedelta(days=offset)
            report = passes.run_pass(engine, copy, PassClock.replayed(day), MaildirTransport(out),
                                     campaign_names=names)
            found.append(_summarise(engine, day, report))
    return found


def _summarise(engine: Engine, day: date, report: PassReport) -> SimulatedDay:
    result = SimulatedDay(day, held=report.counts.get("held", 0))
    for item in report.planned:
        campaign = item.decision.occasion.campaign
        {Verdict.SEND: result.queued, Verdict.DEFER: result.deferred, Verdict.SKIP: result.skipped}[
            item.decision.verdict
        ][campaign] += 1
    result.skipped.update(report.expired)
    ids = [row_id for row_id, _reply in report.deliveries]
    with Session(engine) as session:
        for start in range(0, len(ids), 900):  # SQLite caps bound parameters
            chunk = ids[start : start + 900]
            result.sent.update(session.execute(select(col(SendLog.campaign)).where(col(SendLog.id).in_(chunk))).scalars())
    return result
