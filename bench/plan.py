"""Time planning one day (``outbox.plan``: every campaign's candidates, pickers, policy) on a generated store.

    python -m bench.plan --customers 1000000 [--date 2026-11-23] [--explain]

Generates bench/data/store-N.db first when it is missing. Runs the real
``outbox.plan`` on the ``mailer init`` demo campaigns (every occasion kind)
for one instant (noon UTC on --date, windows applied), writing nothing, and
reports wall time and the process's peak RSS. ``--explain`` prints SQLite's
query plan for every campaign's candidate query.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

from sqlmodel import Session

from bench.generate import store_path
from mailer import outbox, store
from mailer.config import StoreSettings, load_settings
from mailer.project import init_project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=0)
    parser.add_argument("--date", type=date.fromisoformat, default=date(2026, 11, 23))
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    path = store_path(args.customers, args.due)
    if not path.exists():
        # A separate process, so its memory does not count in this one's peak.
        subprocess.run([sys.executable, "-m", "bench.generate", "--customers", str(args.customers),
                        "--due", str(args.due), "--date", args.date.isoformat()], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(init_project(Path(tmp) / "p", args.date, customers=1))
    settings = replace(settings, store=StoreSettings(url=f"sqlite:///{path}"))
    engine = store.make_engine(settings.store.url)
    clock = outbox.PassClock.at(datetime.combine(args.date, datetime.min.time(), UTC).replace(hour=12))
    if args.explain:
        explain(engine, settings, clock)
    start = time.perf_counter()
    with Session(engine) as session:
        planned = outbox.plan(session, settings, clock, settings.campaigns)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    counts = Counter((p.decision.occasion.campaign, p.decision.verdict.value) for p in planned)
    print(f"customers {args.customers:,}  decisions {len(planned):,}  plan {wall:.2f} s  peak RSS {peak:.0f} MB")
    for (campaign, verdict), n in sorted(counts.items()):
        print(f"  {campaign:24} {verdict:6} {n:7,}")


def explain(engine, settings, clock) -> None:  # type: ignore[no-untyped-def]
    """SQLite's plan for each campaign's candidate query."""
    lookback = settings.policy.catch_up_days + outbox.EXPIRED_LOOKBACK_DAYS
    dates = clock.local_dates(lookback)
    with engine.connect() as connection:
        for campaign in settings.campaigns:
            query, _since, _kind = store._candidate_query(campaign, dates, min(dates), max(dates))
            compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
            print(f"{campaign.name} ({campaign.occasion}):")
            for row in rows:
                print(f"    {row[-1]}")


if __name__ == "__main__":
    main()
