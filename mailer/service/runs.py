"""A pass or a retry sweep the way the unattended service runs it.

Two things wrap the outbox here: on SQLite one process sends at a time (a
lock file beside the database; on PostgreSQL the database arbitrates between
any number of workers), and every run is recorded in ``pass_run`` so ``mailer
status`` can say when the last one ran and what came of it. Rows a dead
process left ``sending`` become ``unknown`` first (recovery.recover_interrupted).
"""

from __future__ import annotations

import fcntl
import functools
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from sqlalchemy import Engine, make_url
from sqlmodel import Session

from mailer.compose import dkim
from mailer.config import Settings
from mailer.delivery import drain as delivery
from mailer.delivery.report import PassReport
from mailer.delivery.transport import Transport, make_transport
from mailer.errors import MailerError
from mailer.outbox import claims, recovery
from mailer.planning.clock import PassClock
from mailer.service import passes
from mailer.store.tables import PassRun, utcnow


class Busy(MailerError):
    """Another mailer process holds the SQLite store's lock."""


def lock_path(store_url: str) -> Path | None:
    """``<database>.lock`` for a SQLite file store; None where the database arbitrates (PostgreSQL)."""
    url = make_url(store_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database + ".lock")


@contextmanager
def exclusive(store_url: str, role: str) -> Iterator[bool]:
    """Hold the store's lock for the block; yields True when this process is then the only sender.

    On SQLite the lock is ``flock`` on ``<database>.lock``: the kernel drops it
    when the process dies however it dies, so a crash never leaves a stale lock.
    Raises Busy, naming the holder, when another process has it. On other
    databases nothing is locked (several workers are allowed) and it yields False.
    """
    path = lock_path(store_url)
    if path is None:
        yield False
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    except OSError as exc:
        raise Busy(f"{path}: cannot open the lock file: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise Busy(f"{path}: the store is in use by {holder}; not starting a second sender") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"mailer {role} (pid {os.getpid()} on {socket.gethostname()})\n".encode(), 0)
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


class StopFlag:
    """Set by SIGTERM/SIGINT: the work in progress finishes its message in flight, commits and stops."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None

    def __call__(self) -> bool:
        return self._event.is_set()

    def set(self, signal_name: str = "request") -> None:
        self.signal_name = self.signal_name or signal_name
        self._event.set()

    @contextmanager
    def on_signals(self, then: Callable[[str], None] = lambda _name: None) -> Iterator[StopFlag]:
        """Route SIGTERM and SIGINT to this flag (and ``then``) for the block; the old handlers come back after."""

        def handle(signum: int, _frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            first = not self()
            self.set(name)
            if first:
                then(name)

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def transports(settings: Settings) -> Callable[[], Transport]:
    """A new configured transport per connection, DKIM-signing when configured (read once, here)."""
    return functools.partial(make_transport, settings.transport, sign=dkim.signer_for(settings.sender))


@dataclass
class Run:
    """What one recorded pass or sweep did."""

    record_id: int
    report: PassReport
    seconds: float = 0.0

    def summary(self) -> str:
        text = self.report.summary()
        unknown = self.report.counts.get("unknown", 0)
        return text + (f"; {unknown} interrupted row(s) marked unknown" if unknown else "")


def scheduled_pass(
    engine: Engine,
    settings: Settings,
    clock: PassClock,
    *,
    campaign_names: Iterable[str] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Run:
    """Plan, record and deliver one pass (recovering interrupted rows first), recorded in pass_run."""
    with _recorded(engine, "pass") as run:
        run.report = passes.run_pass(
            engine, settings, clock, transports(settings),
            campaign_names=campaign_names, should_stop=should_stop,
        )
    return run


def retry_sweep(engine: Engine, settings: Settings, *, should_stop: Callable[[], bool] = lambda: False) -> Run | None:
    """Recover interrupted rows, then deliver every queued row that is due (retries, requeued rows).

    Plans nothing. Returns None, recording nothing, when there was nothing to do (most sweeps).
    """
    recovered = recovery.recover_interrupted(engine)
    with Session(engine) as session:
        if not recovered and not claims.has_due(session, utcnow()):
            return None
    with _recorded(engine, "retry") as run:
        run.report = delivery.drain(
            engine, settings, transports(settings), should_stop=should_stop
        )
        run.report.counts["unknown"] += len(recovered)
    return run


@contextmanager
def _recorded(engine: Engine, kind: str) -> Iterator[Run]:
    """A pass_run row for the block: ``running``, then ``done`` with the counts, or ``failed`` with the error.

    A run that could not use the relay at all is ``stopped``, with what the relay said.
    """
    started = utcnow()
    with Session(engine, expire_on_commit=False) as session:
        record = PassRun(kind=kind, started_at=started, host=socket.gethostname(), pid=os.getpid())
        session.add(record)
        session.commit()
        assert record.id is not None
        run = Run(record_id=record.id, report=PassReport())
        try:
            yield run
        except Exception as exc:  # recorded for `mailer status`, then re-raised to the caller
            session.rollback()
            _finish(session, record, "failed", run, error=f"{type(exc).__name__}: {exc}".splitlines()[0][:1000])
            raise
        if run.report.relay_down:
            _finish(session, record, "stopped", run, error=f"relay unusable: {run.report.relay_down}"[:1000])
        else:
            _finish(session, record, "done", run)


def _finish(session: Session, record: PassRun, status: str, run: Run, error: str = "") -> None:
    finished = utcnow()
    run.seconds = (finished - record.started_at).total_seconds()
    record.status = status
    record.finished_at = finished
    record.counts = {name: count for name, count in run.report.counts.items() if count}
    record.error = error
    session.add(record)
    session.commit()
