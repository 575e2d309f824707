"""Sending benchmark: mailer against the bare wire, side by side, in one run.

    python -m bench.send --customers 1000000 --due 20000      # store from bench.generate, made if missing
    python -m bench.send --store path/to/store.db --date 2026-11-23

Three measurements against one aiosmtpd sink in a separate process on loopback:

1. **ceiling**: the same messages, rendered and serialised to wire bytes (CRLF)
   in memory beforehand, sent with plain ``smtplib.SMTP.sendmail`` over one
   reused connection: what the wire and the sink allow on this machine;
2. ``mailer run --date D`` end to end (plan, record, claim, render, inline,
   send, log) with the premailer inliner;
3. the same with ``[render] inliner = "css-inline"``.

Each mailer run starts from a fresh copy of the store (nothing in the send
log), in its own process; its wall time is from spawn to exit and its peak RSS
comes from ``wait4``. The table goes to stdout (markdown) and, with
``--json``, to a file. This is a benchmark: no test depends on its numbers.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Self

from sqlalchemy import func, select
from sqlmodel import Session

from mailer import store
from mailer.compose.message import to_wire
from mailer.config import CONFIG_NAME, load_settings
from mailer.delivery.transport import Outcome, SendResult
from mailer.planning import plan as planning
from mailer.planning.clock import PassClock
from mailer.service import passes
from mailer.service.project import init_project
from mailer.store.tables import SendLog, SendStatus

REPO = Path(__file__).resolve().parent.parent
INLINERS = ("premailer", "css-inline")
BENCH_DAY = date(2026, 11, 23)  # bench.generate's default day
# mailer's SMTP connections: the sink answers each command of a transaction in turn, so while one
# connection waits for a reply, others send (the ceiling is one connection, as the issue defines it).
CONNECTIONS = 4


@dataclass(frozen=True)
class Measurement:
    name: str
    messages: int
    seconds: float
    peak_rss_mb: float | None = None  # the sending process alone (its VmHWM)
    tree_rss_mb: float | None = None  # all of the run's processes together (sampled)
    tree_pss_mb: float | None = None  # the same as proportional set sizes (shared pages counted once)
    cpu_seconds: float | None = None  # user + system of the run and all its descendants (composers included)
    sink_per_second: float | None = None  # the sink's first to last accepted message (latency runs)
    sink_cpu: float | None = None  # CPU seconds the sink spent on the run
    composer_cpu: float | None = None  # of cpu_seconds, what the composer processes spent
    round: int = 1  # which of --runs rounds

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


SINK_PIDS: dict[int, int] = {}  # port → pid of the sink serving it, for its CPU time


def process_cpu(pid: int) -> float:
    """User + system CPU seconds a running process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def sink(workdir: Path, delay_ms: float = 0.0, log_file: Path | None = None, pipelining: bool = True) -> Iterator[int]:
    """An aiosmtpd sink (accepts, counts, drops) in its own process; yields its port.

    ``delay_ms`` holds each reply to the final dot like a real relay; ``log_file`` gets one JSON
    line per accepted message (Message-ID, time), for exactly-once checks and rates at the sink.
    It offers PIPELINING, as Postfix does, unless ``pipelining`` is False.
    """
    ready = workdir / "sink.port"
    ready.unlink(missing_ok=True)
    command = [sys.executable, "-m", "tests.support.smtpserver", "--sink", "--port", "0", "--ready-file", str(ready)]
    command += ["--delay-ms", str(delay_ms)] if delay_ms else []
    command += ["--log-file", str(log_file)] if log_file else []
    command += [] if pipelining else ["--no-pipelining"]
    process = subprocess.Popen(command, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the SMTP sink did not start")
            time.sleep(0.05)
        port = int(ready.read_text())
        SINK_PIDS[port] = process.pid
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def generated_store(customers: int, due: int, day: date) -> Path:
    """The deterministic store of :mod:`bench.generate`, made on first use."""
    from bench import generate  # the planning benchmark's generator: one generator for both benchmarks

    path = generate.store_path(customers, due)
    if not path.exists():
        print(f"  generating {path} ...", file=sys.stderr)
        generate.generate(customers, day, due)
    return path


def make_project(workdir: Path, store_copy: Path, port: int, inliner: str, connections: int = 1) -> Path:
    """A `mailer init` project pointed at ``store_copy`` and the sink, with ``inliner`` and ``connections``."""
    project = workdir / f"project-{inliner}"
    if not (project / CONFIG_NAME).exists():
        init_project(project, date.today(), customers=1)
    config = project / CONFIG_NAME
    text = config.read_text(encoding="utf-8")
    head, _, rest = text.partition("[store]")
    _, _, rest = rest.partition("\n[sender]")
    transport_start = rest.index("[transport]")
    schedule_start = rest.index("[schedule]")
    rest = (
        rest[:transport_start]
        + f'[transport]\nkind = "smtp"\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\ntimeout = 60\n'
        + f"connections = {connections}\n\n"
        + rest[schedule_start:]
    )
    rest = rest.replace('inliner = "premailer"', f'inliner = "{inliner}"')
    config.write_text(f'{head}[store]\nurl = "sqlite:///{store_copy}"\n\n[sender]{rest}', encoding="utf-8")
    return config


def fresh_copy(pristine: Path, target: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(pristine, target)
    return target


class Collector:
    """A transport that keeps each message's wire bytes (CRLF), for the ceiling."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, bytes]] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def send(self, envelope_from: str, to_address: str, msg: EmailMessage) -> SendResult:
        return self.send_wire(envelope_from, to_address, to_wire(msg))

    def send_wire(self, envelope_from: str, to_address: str, data: bytes) -> SendResult:
        self.messages.append((envelope_from, to_address, data))
        return SendResult(Outcome.DELIVERED, "250 kept", 250)


def prerender(config: Path, day: date) -> list[tuple[str, str, bytes]]:
    """Every message the pass on ``day`` would send, as wire bytes (the store is only read)."""
    settings = load_settings(config)
    engine = store.make_engine(settings.store.url)
    clock = PassClock.on(day)
    with Session(engine) as session:
        planned = planning.plan(session, settings, clock, settings.campaigns)
    collector = Collector()
    passes.render_planned(engine, settings, planned, collector)
    engine.dispose()
    return collector.messages


def ceiling(port: int, messages: list[tuple[str, str, bytes]]) -> Measurement:
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=60)
    smtp.ehlo()
    started = time.perf_counter()
    for envelope_from, to_address, data in messages:
        smtp.sendmail(envelope_from, [to_address], data)
    seconds = time.perf_counter() - started
    smtp.quit()
    return Measurement("ceiling: pre-rendered bytes, smtplib.sendmail", len(messages), seconds)


def _children(pid: int) -> list[int]:
    """The direct children of a process (of all its threads), from /proc; [] once it is gone."""
    try:
        return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []


def _pss_kb(pid: int) -> int:
    """The process's proportional set size: its private pages plus its share of pages shared with others.

    Composers are forked from a fork server that has the composing code imported, so they share
    much of its memory copy-on-write; a sum of RSS counts those pages once per process.
    """
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    return _status_kb(rollup, "Pss:")


def _status_kb(status: str, field: str) -> int:
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith(field)), 0)


class TreeSampler:
    """Samples a process tree every 50 ms: the root's peak RSS, the tree's summed RSS, and every descendant's CPU.

    CPU: ``wait4`` gives the root's own time and that of the children it reaped, but not the
    composer processes, which are children of multiprocessing's fork server (a grandchild the
    root never waits for). Each descendant's user + system time is read from /proc at every
    sample, so all but its last 50 ms are counted.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.own = 0
        self.tree = 0
        self.tree_pss = 0  # the same, each shared page split between the processes that share it
        self.descendant_cpu: dict[tuple[int, int], float] = {}  # (pid, start time) → CPU seconds seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            total = proportional = 0
            pending = [(self.pid, 0)]
            while pending:
                pid, depth = pending.pop()
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                    stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                except (FileNotFoundError, ProcessLookupError, PermissionError):
                    continue
                total += _status_kb(status, "VmRSS:") * 1024
                proportional += _pss_kb(pid) * 1024
                if depth == 0:
                    self.own = max(self.own, _status_kb(status, "VmHWM:") * 1024)
                elif depth > 1:  # the root's own children it reaps itself: wait4 counts them
                    self.descendant_cpu[(pid, int(stat[19]))] = (int(stat[11]) + int(stat[12])) / CLOCK_TICKS
                pending.extend((child, depth + 1) for child in _children(pid))
            self.tree = max(self.tree, total)
            self.tree_pss = max(self.tree_pss, proportional)

    def stop(self) -> tuple[int, int, float]:
        """(root's peak RSS, tree's peak summed RSS, CPU seconds of the descendants the root did not reap)."""
        self._stop.set()
        self._thread.join()
        return self.own, self.tree, sum(self.descendant_cpu.values())


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def mailer_run(config: Path, day: date, label: str, extra: list[str]) -> Measurement:
    """``mailer run --date`` in its own process: wall time from spawn to exit; peak RSS of its process tree."""
    command = [str(Path(sys.executable).with_name("mailer")), "--config", str(config), "run", "--date", day.isoformat()]
    started = time.perf_counter()
    process = subprocess.Popen([*extra, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sampler = TreeSampler(process.pid)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    own_peak, tree_peak, composers_cpu = sampler.stop()
    tree_pss = sampler.tree_pss
    process.returncode = os.waitstatus_to_exitcode(status)
    out = process.stdout.read().decode() if process.stdout else ""
    err = process.stderr.read().decode() if process.stderr else ""
    if process.returncode != 0:
        raise RuntimeError(f"mailer run failed ({process.returncode}): {err.strip() or out.strip()}")
    print(f"  {label}: {out.strip()}", file=sys.stderr)
    settings = load_settings(config)
    engine = store.make_engine(settings.store.url)
    with Session(engine) as session:
        sent = session.scalar(select(func.count()).where(SendLog.status == SendStatus.SENT)) or 0  # type: ignore[arg-type]
    engine.dispose()
    # The sender's own peak, and the sum over it and its composer processes (sampled).
    cpu = usage.ru_utime + usage.ru_stime + composers_cpu
    return Measurement(
        label, sent, seconds, peak_rss_mb=own_peak / 2**20, tree_rss_mb=tree_peak / 2**20,
        tree_pss_mb=tree_pss / 2**20, cpu_seconds=cpu, composer_cpu=composers_cpu,
    )


def with_sink_cpu(port: int, measure: Callable[[], Measurement]) -> Measurement:
    """``measure()``, with the CPU time the sink spent meanwhile."""
    before = process_cpu(SINK_PIDS[port])
    measured = measure()
    return replace(measured, sink_cpu=process_cpu(SINK_PIDS[port]) - before)


def latency_runs(
    pristine: Path, day: date, workdir: Path, delay_ms: float, connection_counts: list[int], inliner: str,
    pipelining: bool = True,
) -> list[tuple[int, Measurement]]:
    """``mailer run`` against a sink that waits ``delay_ms`` after each final dot, per connection count.

    The rate that counts is the sink's, from its first to its last accepted message: start-up and
    planning take the same seconds whatever the relay's latency, and would hide it in a short run.
    """
    from tests.support.smtpserver import read_delivery_log

    results = []
    sink_log = workdir / "latency-sink.jsonl"
    sink_log.unlink(missing_ok=True)
    with sink(workdir, delay_ms, sink_log, pipelining) as port:
        for connections in connection_counts:
            already = len(read_delivery_log(sink_log))
            config = make_project(workdir, fresh_copy(pristine, workdir / "store.db"), port, inliner, connections)
            label = f"mailer run, {inliner}, {connections} connections, {delay_ms:g} ms"
            m = with_sink_cpu(port, functools.partial(mailer_run, config, day, label, []))
            times = [d.at for d in read_delivery_log(sink_log)[already:]]
            rate = (len(times) - 1) / (max(times) - min(times)) if len(times) > 1 else 0.0
            results.append((connections, replace(m, sink_per_second=rate)))
    return results


def latency_table(results: list[tuple[int, Measurement]], delay_ms: float, store_label: str) -> str:
    lines = [
        f"| store | connections | messages | seconds | at the sink/s | ceiling: connections / {delay_ms:g} ms "
        "| ratio | CPU s (sender + composers) | CPU ms per message | sink CPU ms per message |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for connections, m in results:
        ceiling = connections / (delay_ms / 1000)
        rate = m.sink_per_second or 0.0
        cpu = m.cpu_seconds or 0.0
        cells = [
            store_label, str(connections), f"{m.messages:,}", f"{m.seconds:.1f}", f"{rate:,.0f}", f"{ceiling:,.0f}",
            f"{rate / ceiling:.2f}", f"{cpu:.1f}", f"{1000 * cpu / m.messages:.2f}" if m.messages else "-",
            f"{1000 * (m.sink_cpu or 0.0) / m.messages:.2f}" if m.messages else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(results: list[Measurement], store_label: str) -> str:
    """Every run of every round, each ratio against its own round's ceiling; then the medians over the rounds."""
    lines = [
        "| round | store | run | messages | seconds | emails/s | ratio to ceiling | peak RSS, sender (MB) "
        "| peak RSS, all processes (MB) | peak PSS, all processes (MB) "
        "| CPU ms per message: sender | composers | sink |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ceilings = {m.round: m.per_second for m in results if m.name.startswith("ceiling")}
    ratios: dict[str, list[float]] = {}
    for m in results:
        base = ceilings.get(m.round, 0.0)
        ratio = m.per_second / base if base else 0.0
        ratios.setdefault(m.name, []).append(ratio)
        rss = f"{m.peak_rss_mb:.0f}" if m.peak_rss_mb is not None else "-"
        tree = f"{m.tree_rss_mb:.0f}" if m.tree_rss_mb is not None else "-"
        pss = f"{m.tree_pss_mb:.0f}" if m.tree_pss_mb is not None else "-"
        cells = [str(m.round), store_label, m.name, f"{m.messages:,}", f"{m.seconds:.1f}", f"{m.per_second:,.0f}",
                 f"{ratio:.2f}", rss, tree, pss]
        composers = m.composer_cpu or 0.0
        for seconds in (None if m.cpu_seconds is None else m.cpu_seconds - composers,
                        None if m.cpu_seconds is None else composers, m.sink_cpu):
            cells.append(f"{1000 * seconds / m.messages:.2f}" if seconds is not None and m.messages else "-")
        lines.append("| " + " | ".join(cells) + " |")
    rounds = len(ceilings)
    if rounds > 1:
        lines.append("")
        for name, values in ratios.items():
            if not name.startswith("ceiling"):
                runs = ", ".join(f"{v:.2f}" for v in values)
                lines.append(f"- {name}: median ratio {statistics.median(values):.2f} over {rounds} rounds ({runs})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.send", description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000, help="size of the generated store")
    parser.add_argument("--due", type=int, default=20_000, help="extra anniversaries due on --date")
    parser.add_argument("--store", type=Path, help="a pristine SQLite store instead (never written to)")
    parser.add_argument("--date", type=date.fromisoformat, default=BENCH_DAY, help="the benchmark day")
    parser.add_argument("--label", default="", help="how the table names this store (e.g. 1M customers)")
    parser.add_argument("--inliner", action="append", choices=INLINERS, help="only these mailer runs")
    parser.add_argument(
        "--connections", type=int, nargs="+", default=[CONNECTIONS],
        help="[transport] connections of the mailer runs (with --delay-ms: one run per count)",
    )
    parser.add_argument(
        "--delay-ms", type=float, default=0.0,
        help="latency mode: the sink waits this long after each final dot; rates against connections / delay",
    )
    parser.add_argument(
        "--no-pipelining", action="store_true", help="the sink does not offer PIPELINING (it does by default)"
    )
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--profile", type=Path, help="folder for py-spy profiles of the mailer runs")
    parser.add_argument("--runs", type=int, default=1, help="rounds of ceiling + mailer runs; prints each and medians")
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mailer-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.store is None:
        args.store = generated_store(args.customers, args.due, args.date)
    label = args.label or args.store.name
    if args.delay_ms:
        inliner = (args.inliner or ["css-inline"])[0]
        latency = latency_runs(
            args.store, args.date, workdir, args.delay_ms, args.connections, inliner, not args.no_pipelining
        )
        print(latency_table(latency, args.delay_ms, label))
        return 0
    [connections] = args.connections[:1]
    results: list[Measurement] = []
    with sink(workdir, pipelining=not args.no_pipelining) as port:
        copy = fresh_copy(args.store, workdir / "store.db")
        messages = prerender(make_project(workdir, copy, port, "css-inline"), args.date)
        print(f"  ceiling: {len(messages)} messages pre-rendered", file=sys.stderr)
        for round_ in range(1, args.runs + 1):
            # Each round measures its own ceiling: the machine's speed drifts between rounds.
            results.append(replace(with_sink_cpu(port, functools.partial(ceiling, port, messages)), round=round_))
            for inliner in args.inliner or INLINERS:
                copy = fresh_copy(args.store, workdir / "store.db")
                config = make_project(workdir, copy, port, inliner, connections)
                extra: list[str] = []
                if args.profile:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    out = args.profile / f"{inliner}-{round_}.txt"
                    spy = str(Path(sys.executable).with_name("py-spy"))
                    extra = [spy, "record", "--subprocesses", "-r", "250", "-f", "raw", "-o", str(out), "--"]
                run_name = f"mailer run, {inliner}, {connections} connection" + ("s" if connections > 1 else "")
                measured = with_sink_cpu(port, functools.partial(mailer_run, config, args.date, run_name, extra))
                results.append(replace(measured, round=round_))
            print(table(results, label), file=sys.stderr, flush=True)  # so far: a long series can be read as it goes
    print(table(results, label))
    if args.json:
        rows = [{**asdict(m), "per_second": m.per_second, "store": label} for m in results]
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
