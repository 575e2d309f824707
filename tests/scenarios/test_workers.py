"""Several `mailer` workers on one PostgreSQL store share the work and send each message exactly once."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select, text
from sqlmodel import Session, col

from mailer import store
from mailer.config import load_settings
from mailer.outbox import decisions
from mailer.planning import candidates
from mailer.planning import plan as planning
from mailer.planning.clock import PassClock
from mailer.service.passes import PLAN_WAIT
from mailer.store.tables import SendLog
from tests.conftest import Sink
from tests.support.crashkit import DAY, add_anniversaries, mailer, sink_project

GUARD = 600.0  # seconds: a guard against hangs, never an expectation about speed


@pytest.mark.slow
@pytest.mark.postgres
def test_three_workers_on_postgresql_send_5000_due_messages_each_exactly_once_and_all_share_the_work(
    tmp_path: Path, pg_url: str, smtp_sink: Sink
) -> None:
    config = sink_project(tmp_path / "proj", pg_url, smtp_sink.port)
    settings = load_settings(config)
    engine = store.make_engine(pg_url)
    with engine.begin() as connection:
        # This throw-away database need not survive a crash of the PostgreSQL server itself (what
        # synchronous_commit protects against); every commit is still atomic and at once visible to the
        # other workers, which is what is under test. It spares 10,000 fsyncs.
        connection.execute(text(f'ALTER DATABASE "{engine.url.database}" SET synchronous_commit = off'))
    engine.dispose()
    store.create_schema(engine)
    add_anniversaries(engine, 5000)
    campaigns = [settings.campaign("customer-anniversary")]
    clock = PassClock.on(DAY)
    with Session(engine, expire_on_commit=False) as session:
        decisions.record(
            session, planning.plan(session, settings, clock, campaigns), {c.name: c for c in campaigns}, clock.now
        )
    started = time.monotonic()

    workers = [mailer(config, "retry") for _ in range(3)]  # the retry sweep: deliver what is due, plan nothing
    results = [w.communicate(timeout=GUARD) for w in workers]

    elapsed = time.monotonic() - started
    assert [w.returncode for w in workers] == [0, 0, 0], [err.decode() for _, err in results]
    accepted = Counter(d.message_id for d in smtp_sink.deliveries())  # one Message-ID per occasion
    with Session(engine) as session:
        statuses = dict(session.execute(select(SendLog.status, func.count()).group_by(SendLog.status)).all())
        shares = Counter(session.execute(select(col(SendLog.claimed_by))).scalars())
        ids = set(session.execute(select(col(SendLog.message_id))).scalars())
    print(
        f"\nworkers test: {len(accepted)} occasions delivered by the sink, max copies {max(accepted.values())},"
        f" statuses {statuses}, per worker {sorted(shares.values())}, {elapsed:.1f}s"
    )
    assert statuses == {"sent": 5000}
    assert set(accepted) == ids and set(accepted.values()) == {1}  # every occasion exactly once, per the sink
    assert len(shares) == 3 and min(shares.values()) > 0  # all three workers did some of the work
    engine.dispose()


@pytest.mark.postgres
def test_a_worker_that_finds_another_planning_waits_for_that_plan_and_delivers_alongside(
    tmp_path: Path, pg_url: str, smtp_sink: Sink
) -> None:
    config = sink_project(tmp_path / "proj", pg_url, smtp_sink.port)
    settings = load_settings(config)
    engine = store.make_engine(pg_url)
    store.create_schema(engine)
    add_anniversaries(engine, 20)
    campaigns = [settings.campaign("customer-anniversary")]

    with engine.connect() as planner:  # another worker, in the middle of planning this pass
        planner.execute(select(func.pg_advisory_lock(candidates.PLAN_LOCK)))
        worker = mailer(config, "-v", "run", "--date", DAY.isoformat())
        deadline = time.monotonic() + GUARD
        waiting = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        while not planner.execute(waiting).scalar():
            assert worker.poll() is None, worker.communicate()  # it must wait, not give up and exit
            assert time.monotonic() < deadline, "the worker never asked for the plan lock"
            time.sleep(0.05)
        # The planner's clock is read after the worker's, as when the planner started a moment
        # later: its rows fall due at its own instant, which the waiting worker must reach too.
        time.sleep(1)
        clock = PassClock.on(DAY)
        # Only now, with the worker waiting, does the plan reach the send log.
        with Session(engine, expire_on_commit=False) as session:
            decisions.record(
                session, planning.plan(session, settings, clock, campaigns), {c.name: c for c in campaigns}, clock.now
            )
        planner.execute(select(func.pg_advisory_unlock(candidates.PLAN_LOCK)))
        out, err = worker.communicate(timeout=GUARD)

    assert worker.returncode == 0, err.decode()
    assert "waiting for its plan" in err.decode()
    assert "sent 20" in out.decode(), out.decode()  # before, it found nothing queued and sent nothing
    assert len({d.message_id for d in smtp_sink.deliveries()}) == len(smtp_sink.deliveries()) == 20
    engine.dispose()


def _waiting_for_plan_lock(planner: Connection, worker: subprocess.Popen[bytes]) -> None:
    """Return once ``worker`` asks for the plan lock ``planner`` holds (it must wait, not exit)."""
    deadline = time.monotonic() + GUARD
    waiting = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
    while not planner.execute(waiting).scalar():
        assert worker.poll() is None, worker.communicate()
        assert time.monotonic() < deadline, "the worker never asked for the plan lock"
        time.sleep(0.05)


@pytest.mark.postgres
def test_a_daemon_on_another_host_waits_for_the_plan_delivers_it_and_stops_on_sigterm_while_waiting(
    tmp_path: Path, pg_url: str, smtp_sink: Sink
) -> None:
    config = sink_project(tmp_path / "proj", pg_url, smtp_sink.port)
    settings = load_settings(config)
    engine = store.make_engine(pg_url)
    store.create_schema(engine)
    add_anniversaries(engine, 20)
    campaigns = [settings.campaign("customer-anniversary")]
    clock = PassClock.on(DAY)

    with engine.connect() as planner:  # the daemon of another host, planning this hour's pass
        planner.execute(select(func.pg_advisory_lock(candidates.PLAN_LOCK)))
        daemon = mailer(config, "-v", "daemon")  # its catch-up pass at start-up meets the planner
        _waiting_for_plan_lock(planner, daemon)
        with Session(engine, expire_on_commit=False) as session:
            decisions.record(
                session, planning.plan(session, settings, clock, campaigns), {c.name: c for c in campaigns}, clock.now
            )
        planner.execute(select(func.pg_advisory_unlock(candidates.PLAN_LOCK)))
        deadline = time.monotonic() + GUARD
        while len(smtp_sink.deliveries()) < 20:
            assert daemon.poll() is None, daemon.communicate()
            assert time.monotonic() < deadline, "the daemon never delivered the plan"
            time.sleep(0.1)

        # The next pass of this daemon meets a planner again; SIGTERM ends its wait, not PLAN_WAIT.
        planner.execute(select(func.pg_advisory_lock(candidates.PLAN_LOCK)))
        second = mailer(config, "-v", "daemon")
        _waiting_for_plan_lock(planner, second)
        second.send_signal(signal.SIGTERM)
        # Far below PLAN_WAIT (10 minutes): the lock is still held, so only the stop flag can end the wait.
        _, second_err = second.communicate(timeout=PLAN_WAIT.total_seconds() / 4)
        planner.execute(select(func.pg_advisory_unlock(candidates.PLAN_LOCK)))
    daemon.send_signal(signal.SIGTERM)
    _, err = daemon.communicate(timeout=GUARD)

    assert daemon.returncode == 0, err.decode()
    assert "waiting for its plan" in err.decode() and "delivering alongside" in err.decode()
    assert len({d.message_id for d in smtp_sink.deliveries()}) == len(smtp_sink.deliveries()) == 20
    assert second.returncode == 0, second_err.decode()
    assert "stopped while waiting for the other process's plan" in second_err.decode()
    engine.dispose()
