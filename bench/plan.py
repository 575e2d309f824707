"""Time planning one day (``planning.plan``: every campaign's candidates, pickers, policy) on a generated store.

    python -m bench.plan --customers 1000000 [--date 2026-11-23] [--steady] [--explain] [--runs 3]
    python -m bench.plan --customers 1000000 --postgres [--reload] [--steady] [--explain [--analyze]] [--runs 3]

Generates bench/data/store-N.db first when it is missing. Runs the real
``planning.plan`` on the ``mailer init`` demo campaigns (every occasion kind)
for one instant (noon UTC on --date, windows applied), writing nothing, and
reports wall time, CPU time (user + system: steadier than wall time on a busy
machine) and the process's peak RSS.

Without ``--steady`` this is the first pass ever: an empty send log and no
plan mark. ``--steady`` times the pass of a daemon that ran every day before:
it plans a copy of the store (bench/data/store-N-steady.db, made once) for the
``--warm`` days before --date through the real plan → record → settle, marks
what was queued as delivered (as a drain would), and then times --date.
``--explain`` prints SQLite's query plan for every campaign's candidate query.
``--runs`` repeats the timed plan in fresh processes and reports the median.

``--postgres`` plans on a PostgreSQL copy of the store (or of its steady copy) instead:
``bench.pgstore`` loads it once into ``mailer_bench_plan_N`` (``_steady``) under the admin URL
``MAILER_TEST_PG`` and later runs reuse it (``--reload`` loads it again). The report adds the
CPU time of the PostgreSQL backend that served the pass (from /proc: the server is local), and
``--explain`` prints PostgreSQL's ``EXPLAIN`` of each candidate query as it runs, a server-side
cursor (``DECLARE``: planned for a fast start); ``--analyze`` makes it ``EXPLAIN (ANALYZE, BUFFERS)``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session

from bench import pgstore
from bench.generate import store_path
from mailer import store
from mailer.config import Settings, StoreSettings, load_settings
from mailer.outbox import decisions
from mailer.planning import candidates
from mailer.planning import plan as planning
from mailer.planning.clock import PassClock
from mailer.service.project import init_project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=0)
    parser.add_argument("--date", type=date.fromisoformat, default=date(2026, 11, 23))
    parser.add_argument("--steady", action="store_true", help="time a pass after --warm days already planned")
    parser.add_argument("--warm", type=int, default=3, help="days planned before --date for --steady")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--analyze", action="store_true", help="--explain on PostgreSQL: EXPLAIN (ANALYZE, BUFFERS)")
    parser.add_argument("--postgres", action="store_true", help="plan on a PostgreSQL copy of the store")
    parser.add_argument("--reload", action="store_true", help="--postgres: load the copy again")
    parser.add_argument("--runs", type=int, default=1, help="timed runs, each in a fresh process; prints the median")
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)  # the --steady set-up, run alone
    parser.add_argument("--ready", action="store_true", help=argparse.SUPPRESS)  # stores made: only time
    args = parser.parse_args()
    path = store_path(args.customers, args.due)
    if args.ready:
        time_one(args, path.with_name(f"{path.stem}-steady.db") if args.steady else path)
        return
    if not path.exists():
        # A separate process, so its memory does not count in this one's peak.
        subprocess.run([sys.executable, "-m", "bench.generate", "--customers", str(args.customers),
                        "--due", str(args.due), "--date", args.date.isoformat()], check=True)
    if args.steady:
        path = path.with_name(f"{path.stem}-steady.db")
        if args.prepare:
            prepare_steady(path, settings_for(path, args.date), args.date, args.warm)
            return
        if not path.exists():
            subprocess.run([*_again(args, "--runs", "1", ready=False), "--prepare"], check=True)
    if args.postgres:  # a separate process, as the generator: its memory is not the pass's
        subprocess.run([sys.executable, "-m", "bench.pgstore", str(path), *(["--reload"] if args.reload else [])],
                       check=True)
    if args.runs > 1:
        times = [_one_run(_again(args, "--runs", "1")) for _ in range(args.runs)]
        backend = f"  backend CPU {statistics.median(t[3] for t in times):.2f} s" if args.postgres else ""
        print(f"median of {args.runs}: plan {statistics.median(t[0] for t in times):.2f} s"
              f"  cpu {statistics.median(t[1] for t in times):.2f} s  peak RSS {max(t[2] for t in times):.0f} MB"
              f"{backend}  (runs: {', '.join(f'{t[0]:.2f}' for t in times)})")
        return
    time_one(args, path)


def time_one(args: argparse.Namespace, path: Path) -> None:
    """Plan ``args.date`` once on the store at ``path`` (or its PostgreSQL copy) and print the times."""
    settings = settings_for(path, args.date, postgres=args.postgres)
    engine = store.make_engine(settings.store.url)
    clock = noon(args.date)
    if args.explain:
        explain(engine, settings, clock, analyze=args.analyze)
    with Session(engine) as session:
        backend = _Backend(session) if args.postgres else None
        start, cpu_start = time.perf_counter(), time.process_time()
        planned = planning.plan(session, settings, clock, settings.campaigns)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        served = f"  backend CPU {backend.cpu():.2f} s" if backend else ""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    counts = Counter((p.decision.occasion.campaign, p.decision.verdict.value) for p in planned)
    kind = "steady-state" if args.steady else "first"
    where = "  postgresql" if args.postgres else ""
    print(f"customers {args.customers:,}  {kind} pass{where}  decisions {len(planned):,}  plan {wall:.2f} s"
          f"  cpu {cpu:.2f} s  peak RSS {peak:.0f} MB{served}")
    for (campaign, verdict), n in sorted(counts.items()):
        print(f"  {campaign:24} {verdict:6} {n:7,}")


class _Backend:
    """CPU time of the PostgreSQL backend serving ``session`` (user + system, from /proc: a local server).

    Parallel workers the server may start for a query are separate processes and not counted.
    """

    def __init__(self, session: Session) -> None:
        self.pid = int(session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        self.start = self._ticks()

    def _ticks(self) -> int:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)

    def cpu(self) -> float:
        return (self._ticks() - self.start) / os.sysconf("SC_CLK_TCK")


def _again(args: argparse.Namespace, *overrides: str, ready: bool = True) -> list[str]:
    """This command line again for a child, with ``overrides`` (flag, value) replacing what was given.

    ``ready``: the stores are made and loaded, the child only times.
    """
    argv = [a for a in sys.argv[1:] if a != "--reload"]  # the parent loaded it
    for flag, value in zip(overrides[::2], overrides[1::2], strict=True):
        if flag in argv:
            del argv[argv.index(flag) : argv.index(flag) + 2]
        argv += [flag, value]
    return [sys.executable, "-m", "bench.plan", *argv, *(["--ready"] if ready else [])]


def _one_run(command: list[str]) -> tuple[float, ...]:
    """(wall s, CPU s, peak RSS MB, backend CPU s or 0) of one timed run in a fresh process."""
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    print(output.splitlines()[0], flush=True)
    words = output.split()
    backend = float(words[words.index("backend") + 2]) if "backend" in words else 0.0
    return (*(float(words[words.index(w) + 1]) for w in ("plan", "cpu", "RSS")), backend)


def settings_for(path: Path, day: date, postgres: bool = False) -> Settings:
    """The demo project's settings on the store at ``path``, or on its PostgreSQL copy."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(init_project(Path(tmp) / "p", day, customers=1))
    url = pgstore.database_url(pgstore.database_name(path)) if postgres else f"sqlite:///{path}"
    return replace(settings, store=StoreSettings(url=url))


def noon(day: date) -> PassClock:
    return PassClock.at(datetime.combine(day, datetime.min.time(), UTC).replace(hour=12))


def prepare_steady(path: Path, settings: Settings, day: date, warm: int) -> None:
    """Copy the store and run the daily passes of the ``warm`` days before ``day`` on it (planning only)."""
    source = path.with_name(path.name.replace("-steady", ""))
    partial = path.with_suffix(".partial")
    shutil.copyfile(source, partial)
    engine = store.make_engine(f"sqlite:///{partial}")
    campaigns = {c.name: c for c in settings.campaigns if c.enabled}
    for offset in range(warm, 0, -1):
        clock = noon(day - timedelta(days=offset))
        start = time.perf_counter()
        with Session(engine, expire_on_commit=False) as session:
            planned = planning.plan(session, settings, clock, settings.campaigns)
            decisions.record(session, planned, campaigns, clock.now)
            decisions.settle(session, settings, clock)
        # What a drain would leave behind: every queued message delivered, its customer emailed.
        stamp = clock.now.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "UPDATE customer SET last_emailed_at = ? WHERE id IN (SELECT customer_id FROM send_log"
                " WHERE status = 'queued')", (stamp,))
            connection.exec_driver_sql(
                "UPDATE send_log SET status = 'sent', sent_at = ?, next_attempt_at = NULL WHERE status = 'queued'",
                (stamp,))
        print(f"planned and recorded {clock.now.date()}: {len(planned):,} decisions"
              f" in {time.perf_counter() - start:.1f} s", flush=True)
    engine.dispose()
    connection = sqlite3.connect(partial)
    connection.execute("ANALYZE")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    partial.rename(path)


def explain(engine: Engine, settings: Settings, clock: PassClock, analyze: bool = False) -> None:
    """The database's plan for each campaign's candidate query.

    PostgreSQL: the plan of the server-side cursor the pass reads it through (``yield_per``), which
    the server plans for a fast start (``cursor_tuple_fraction``): not always a plain SELECT's plan.
    """
    with Session(engine) as session:
        lookback = planning.lookback_days(session, settings, clock)
    dates = clock.local_dates(lookback)
    print(f"look-back {lookback} days: local dates {min(dates)} .. {max(dates)}")
    postgres = engine.dialect.name == "postgresql"
    how = "EXPLAIN (ANALYZE, BUFFERS)" if analyze else "EXPLAIN"
    with engine.connect() as connection:
        for campaign in settings.campaigns:
            query, _since, _kind = candidates.candidate_query(campaign, dates, min(dates), max(dates))
            compiled = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
            if postgres:
                # The compiled literals already have psycopg's %% for a literal %.
                statement = f"{how} DECLARE plan_cursor CURSOR FOR {compiled}"
            else:
                statement = f"EXPLAIN QUERY PLAN {compiled}"
            rows = connection.exec_driver_sql(statement).all()
            print(f"{campaign.name} ({campaign.occasion}):")
            for row in rows:
                print(f"    {row[-1]}")


if __name__ == "__main__":
    main()
