"""Scaling benchmark: several ``mailer retry`` workers and connections on PostgreSQL, one sink.

    python -m bench.workers --customers 100000 --messages 5000 --workers 1 2 4 --connections 1 2

Makes a throw-away database on the local PostgreSQL server (dropped at the
end; the admin URL's own database is only used to create and drop it),
copies in the customers of ``--messages`` due occasions from the generated
SQLite store and queues those occasions. Then, for every combination, it
puts the queue back to ``queued``, starts the workers at once (separate
processes, each with ``[transport] connections``) against one aiosmtpd sink
in its own process, and times them until the last one exits. The numbers
go into docs/scaling.md; no test depends on them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, insert, select, text, update
from sqlmodel import Session, col

from bench.send import BENCH_DAY, generated_store, make_project, sink
from mailer import store
from mailer.config import load_settings
from mailer.outbox import decisions
from mailer.planning import plan as planning
from mailer.planning.clock import PassClock
from mailer.planning.policy import Verdict
from mailer.store.tables import Customer, PassRun, SendLog, SendStatus

PG_ADMIN = os.environ.get("MAILER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def queue_on_postgres(sqlite_store: Path, pg_url: str, day: date, messages: int, config: Path) -> int:
    """Plan ``day`` on the SQLite store; copy the first ``messages`` sends' customers to PostgreSQL and queue them."""
    settings = load_settings(config)
    source = store.make_engine(f"sqlite:///{sqlite_store}")
    campaigns = [settings.campaign("customer-anniversary")]
    clock = PassClock.on(day)
    with Session(source) as session:
        planned = [p for p in planning.plan(session, settings, clock, campaigns) if p.decision.verdict is Verdict.SEND]
        planned = planned[:messages]
        ids = [p.customer.id for p in planned]
        table = Customer.__table__  # type: ignore[attr-defined]
        rows = [
            dict(r._mapping)
            for start in range(0, len(ids), 900)
            for r in session.execute(select(table).where(table.c.id.in_(ids[start : start + 900])))
        ]
    source.dispose()
    target = store.make_engine(pg_url)
    store.create_schema(target)
    with Session(target) as session:
        session.execute(insert(table), rows)
        decisions.record(session, planned, {c.name: c for c in campaigns}, clock.now)
    target.dispose()
    return len(planned)


def requeue_all(engine: Engine) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    with Session(engine) as session:
        session.execute(
            update(SendLog).values(
                status=SendStatus.QUEUED,
                attempts=0,
                first_attempt_at=None,
                claimed_by=None,
                claimed_at=None,
                sent_at=None,
                next_attempt_at=past,
                subject="",
                message_id="",
                last_reply="",
                reason="",
            )
        )
        session.execute(update(Customer).values(last_emailed_at=None))
        session.execute(PassRun.__table__.delete())  # type: ignore[attr-defined]
        session.commit()


def set_connections(config: Path, connections: int) -> None:
    text_ = config.read_text(encoding="utf-8")
    lines = [line for line in text_.splitlines() if not line.startswith("connections =")]
    at = lines.index("[transport]") + 1
    lines.insert(at, f"connections = {connections}")
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_workers(config: Path, workers: int, engine: Engine) -> tuple[int, float]:
    mailer = str(Path(sys.executable).with_name("mailer"))
    started = time.perf_counter()
    processes = [
        subprocess.Popen([mailer, "--config", str(config), "retry"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(workers)
    ]
    for process in processes:
        out, err = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"worker failed: {err.decode().strip() or out.decode().strip()}")
    seconds = time.perf_counter() - started
    with Session(engine) as session:
        sent = session.scalar(select(func.count()).where(col(SendLog.status) == SendStatus.SENT)) or 0
        twice = session.scalar(select(func.count()).where(col(SendLog.attempts) > 1)) or 0
    if twice:
        raise RuntimeError(f"{twice} rows were attempted more than once")
    return sent, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=20_000)
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--connections", type=int, nargs="+", default=[1])
    parser.add_argument("--inliner", default="css-inline")
    parser.add_argument("--date", type=date.fromisoformat, default=BENCH_DAY)
    parser.add_argument("--store", type=Path, help="a generated SQLite store to take the customers from")
    args = parser.parse_args(argv)

    sqlite_store = args.store or generated_store(args.customers, args.due, args.date)
    name = f"mailer_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    pg_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    workdir = Path(tempfile.mkdtemp(prefix="mailer-workers-"))
    print("| workers | connections each | messages | seconds | emails/s |")
    print("|---:|---:|---:|---:|---:|")
    try:
        with sink(workdir) as port:
            config = make_project(workdir, Path("unused.db"), port, args.inliner)
            config.write_text(config.read_text().replace('url = "sqlite:///unused.db"', f'url = "{pg_url}"'))
            queued = queue_on_postgres(sqlite_store, pg_url, args.date, args.messages, config)
            print(f"  {queued} messages queued on {name}", file=sys.stderr)
            engine = store.make_engine(pg_url)
            for connections in args.connections:
                set_connections(config, connections)
                for workers in args.workers:
                    requeue_all(engine)
                    sent, seconds = run_workers(config, workers, engine)
                    print(
                        f"| {workers} | {connections} | {sent:,} | {seconds:.1f} | {sent / seconds:,.0f} |", flush=True
                    )
            engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
