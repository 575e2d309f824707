"""Time planning one day (``planning.plan``: every campaign's candidates, pickers, policy) on a generated store.

    python -m bench.plan --customers 1000000 [--date 2026-11-23] [--steady] [--explain] [--runs 3]

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
"""

from __future__ import annotations

import argparse
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

from sqlmodel import Session

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
    parser.add_argument("--runs", type=int, default=1, help="timed runs, each in a fresh process; prints the median")
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)  # the --steady set-up, run alone
    args = parser.parse_args()
    path = store_path(args.customers, args.due)
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
            subprocess.run([*_again(args, "--runs", "1"), "--prepare"], check=True)
    if args.runs > 1:
        times = [_one_run(_again(args, "--runs", "1")) for _ in range(args.runs)]
        print(f"median of {args.runs}: plan {statistics.median(t[0] for t in times):.2f} s"
              f"  cpu {statistics.median(t[1] for t in times):.2f} s  peak RSS {max(t[2] for t in times):.0f} MB"
              f"  (runs: {', '.join(f'{t[0]:.2f}' for t in times)})")
        return
    settings = settings_for(path, args.date)
    engine = store.make_engine(settings.store.url)
    clock = noon(args.date)
    if args.explain:
        explain(engine, settings, clock)
    start, cpu_start = time.perf_counter(), time.process_time()
    with Session(engine) as session:
        planned = planning.plan(session, settings, clock, settings.campaigns)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    counts = Counter((p.decision.occasion.campaign, p.decision.verdict.value) for p in planned)
    kind = "steady-state" if args.steady else "first"
    print(f"customers {args.customers:,}  {kind} pass  decisions {len(planned):,}  plan {wall:.2f} s"
          f"  cpu {cpu:.2f} s  peak RSS {peak:.0f} MB")
    for (campaign, verdict), n in sorted(counts.items()):
        print(f"  {campaign:24} {verdict:6} {n:7,}")


def _again(args: argparse.Namespace, *overrides: str) -> list[str]:
    """This command line again, with ``overrides`` (flag, value) replacing what was given."""
    argv = [a for a in sys.argv[1:]]
    for flag, value in zip(overrides[::2], overrides[1::2], strict=True):
        if flag in argv:
            del argv[argv.index(flag) : argv.index(flag) + 2]
        argv += [flag, value]
    return [sys.executable, "-m", "bench.plan", *argv]


def _one_run(command: list[str]) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MB) of one timed run in a fresh process."""
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    print(output.splitlines()[0], flush=True)
    words = output.split()
    return tuple(float(words[words.index(w) + 1]) for w in ("plan", "cpu", "RSS"))  # type: ignore[return-value]


def settings_for(path: Path, day: date) -> Settings:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(init_project(Path(tmp) / "p", day, customers=1))
    return replace(settings, store=StoreSettings(url=f"sqlite:///{path}"))


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


def explain(engine, settings, clock) -> None:  # type: ignore[no-untyped-def]
    """SQLite's plan for each campaign's candidate query."""
    with Session(engine) as session:
        lookback = planning.lookback_days(session, settings, clock)
    dates = clock.local_dates(lookback)
    print(f"look-back {lookback} days: local dates {min(dates)} .. {max(dates)}")
    with engine.connect() as connection:
        for campaign in settings.campaigns:
            query, _since, _kind = candidates.candidate_query(campaign, dates, min(dates), max(dates))
            compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
            print(f"{campaign.name} ({campaign.occasion}):")
            for row in rows:
                print(f"    {row[-1]}")


if __name__ == "__main__":
    main()
