"""Scaling benchmark: ``mailer run`` workers started at the same instant on PostgreSQL, one sink.

    python -m bench.workers --customers 100000 --messages 4000 --workers 1 2 3 4 --connections 4
    python -m bench.workers --messages 2000 --workers 1 2 3 --connections 4 --delay-ms 50   # a relay's latency

Makes a throw-away database on the local PostgreSQL server (dropped at the end; the admin URL's
own database is only used to create and drop it) and copies in the customers of ``--messages``
anniversaries due on ``--date`` from the generated SQLite store. Then, for every combination, it
empties the send log and starts N ``mailer run --date D`` processes at the same instant, as a
systemd timer or a CronJob on N hosts would: one plans, the others wait for its plan and deliver
alongside. Per round it prints each worker's share (its own "sent N"), the wall time from spawn
to the last exit, the aggregate rate over that time and over the sink's first-to-last accepted
message, and checks exactly-once at the sink (every Message-ID of the send log accepted once).
The numbers go into docs/scaling.md; no test depends on them.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy import Engine, create_engine, delete, insert, select, text, update
from sqlmodel import Session, col

from bench.send import BENCH_DAY, TreeSampler, generated_store, make_project, sink
from mailer import store
from mailer.config import load_settings
from mailer.planning import plan as planning
from mailer.planning.clock import PassClock
from mailer.planning.policy import Verdict
from mailer.store.tables import Customer, PassRun, PlanMark, SendLog, SendStatus
from tests.support.smtpserver import read_delivery_log

PG_ADMIN = os.environ.get("MAILER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CAMPAIGN = "customer-anniversary"


def copy_customers(sqlite_store: Path, pg_url: str, day: date, messages: int, config: Path) -> int:
    """Copy to PostgreSQL the customers of the first ``messages`` anniversaries the SQLite store has due on ``day``."""
    settings = load_settings(config)
    source = store.make_engine(f"sqlite:///{sqlite_store}")
    with Session(source) as session:
        planned = planning.plan(session, settings, PassClock.on(day), [settings.campaign(CAMPAIGN)])
        ids = [p.customer.id for p in planned if p.decision.verdict is Verdict.SEND][:messages]
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
        session.commit()
    target.dispose()
    return len(rows)


def forget_the_day(engine: Engine) -> None:
    """As if no pass had run yet: empty send log, no plan mark, nobody emailed."""
    with Session(engine) as session:
        session.execute(delete(SendLog))
        session.execute(delete(PassRun))
        session.execute(delete(PlanMark))
        session.execute(update(Customer).values(last_emailed_at=None))
        session.commit()


def set_connections(config: Path, connections: int) -> None:
    lines = [line for line in config.read_text(encoding="utf-8").splitlines() if not line.startswith("connections =")]
    lines.insert(lines.index("[transport]") + 1, f"connections = {connections}")
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Round:
    workers: int
    connections: int
    shares: list[int]  # each worker's own "sent N", in start order
    seconds: float  # spawn of the first worker to exit of the last
    sink_seconds: float  # the sink's first to last accepted message
    accepted: int  # messages the sink accepted (each Message-ID once: checked)
    cpu_seconds: float  # user + system of all the workers and their composer processes

    @property
    def sent(self) -> int:
        return sum(self.shares)


def run_round(config: Path, day: date, workers: int, engine: Engine, sink_log: Path, connections: int) -> Round:
    mailer = str(Path(sys.executable).with_name("mailer"))
    # -v: each worker's log says whether it planned or waited, and when; kept beside the sink's log.
    command = [mailer, "-v", "--config", str(config), "run", "--date", day.isoformat(), "--campaign", CAMPAIGN]
    already = len(read_delivery_log(sink_log))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    # Started back to back (a few ms apart): the plan lock decides who plans, not who came first.
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(workers)]
    samplers = [TreeSampler(p.pid) for p in processes]  # each worker's composer processes, which wait4 misses
    outputs = [p.communicate() for p in processes]
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    composers = sum(sampler.stop()[2] for sampler in samplers)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime) + composers
    shares = []
    for process, (out, err) in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise RuntimeError(f"worker failed ({process.returncode}): {err.decode().strip() or out.decode().strip()}")
        found = re.search(r"\bsent (\d+)", out.decode())
        shares.append(int(found.group(1)) if found else 0)
    for number, (_out, err) in enumerate(outputs, 1):
        log_file = sink_log.with_name(f"worker-{workers}x{connections}-{number}.log")
        log_file.write_bytes(err)
    if 0 in shares:
        print(f"  a worker sent nothing: its log is {sink_log.parent}/worker-{workers}x{connections}-N.log",
              file=sys.stderr)
    deliveries = read_delivery_log(sink_log)[already:]
    copies = Counter(d.message_id for d in deliveries)
    with Session(engine) as session:
        sent = select(col(SendLog.message_id)).where(col(SendLog.status) == SendStatus.SENT)
        logged = set(session.execute(sent).scalars())
    if max(copies.values(), default=1) > 1 or set(copies) != logged:
        twice = sum(1 for n in copies.values() if n > 1)
        lost = len(logged - set(copies))
        raise RuntimeError(f"not exactly once: {twice} accepted twice, {lost} logged sent but never accepted")
    times = [d.at for d in deliveries]
    sink_seconds = max(times) - min(times) if times else 0.0
    return Round(workers, connections, shares, seconds, sink_seconds, len(deliveries), cpu)


def row(result: Round, delay_ms: float) -> str:
    sink_rate = (result.accepted - 1) / result.sink_seconds if result.sink_seconds else 0.0
    cells = [
        str(result.workers),
        str(result.connections),
        " / ".join(f"{n:,}" for n in result.shares),
        f"{result.accepted:,}",
        f"{result.seconds:.1f}",
        f"{result.sent / result.seconds:,.0f}",
        f"{sink_rate:,.0f}",
        f"{1000 * result.cpu_seconds / result.sent:.2f}" if result.sent else "-",
    ]
    if delay_ms:
        ceiling = result.workers * result.connections / (delay_ms / 1000)
        cells += [f"{ceiling:,.0f}", f"{sink_rate / ceiling:.2f}"]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=20_000)
    parser.add_argument("--messages", type=int, default=4_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--connections", type=int, nargs="+", default=[4])
    parser.add_argument("--runs", type=int, default=1, help="rounds per combination (the table shows each)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="the sink's delay after each final dot")
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
    header = "| workers | connections each | sent per worker | accepted once | seconds | emails/s | at the sink/s "
    header += "| CPU ms per message |"
    rule = "|---:|---:|---|---:|---:|---:|---:|---:|"
    if args.delay_ms:
        header += " latency ceiling/s | ratio |"
        rule += "---:|---:|"
    print(header)
    print(rule)
    sink_log = workdir / "sink.jsonl"
    rates: dict[tuple[int, int], list[float]] = {}
    try:
        with sink(workdir, args.delay_ms, sink_log) as port:
            config = make_project(workdir, Path("unused.db"), port, args.inliner)
            config.write_text(config.read_text().replace('url = "sqlite:///unused.db"', f'url = "{pg_url}"'))
            copied = copy_customers(sqlite_store, pg_url, args.date, args.messages, config)
            print(f"  {copied} customers with an anniversary on {args.date} copied to {name}", file=sys.stderr)
            engine = store.make_engine(pg_url)
            for connections in args.connections:
                set_connections(config, connections)
                for workers in args.workers:
                    for _ in range(args.runs):
                        forget_the_day(engine)
                        result = run_round(config, args.date, workers, engine, sink_log, connections)
                        rates.setdefault((workers, connections), []).append(result.sent / result.seconds)
                        print(row(result, args.delay_ms), flush=True)
            engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    if args.runs > 1:
        for (workers, connections), values in rates.items():
            print(f"  median {workers} x {connections}: {statistics.median(values):,.0f} emails/s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
