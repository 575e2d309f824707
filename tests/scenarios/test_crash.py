"""Crash safety: `sending` before the SMTP transaction, the outcome after; a dead sender's rows become `unknown`.

The processes here are real: claimers and `mailer run` are subprocesses,
killed with SIGKILL, and the SMTP sink runs in a process of its own, so its
log is the truth about what was delivered.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from sqlmodel import Session

from mailer import store
from mailer.config import Settings, load_settings
from mailer.delivery import drain as delivery
from mailer.delivery.transport import SmtpTransport
from mailer.outbox import claims, recovery
from mailer.outbox.lease import lease_for
from mailer.outbox.recovery import INTERRUPTED
from mailer.store.tables import SendLog, SendStatus
from tests.conftest import REPO_ROOT, Sink
from tests.support.crashkit import add_anniversaries, add_queued, crash, mailer, sink_project
from tests.support.smtpserver import SmtpServer

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
GUARD = 120.0  # seconds: a guard against hangs, never an expectation about speed

CLAIMER = """
import sys, time
from sqlmodel import Session
from mailer import store
from mailer.outbox import claims
from mailer.outbox.lease import lease_for
from mailer.store.tables import utcnow

engine = store.make_engine(sys.argv[1])
with Session(engine) as session:
    row = claims.claim_next(session, utcnow(), lease_for(engine).key)
    session.commit()
print(row, flush=True)
time.sleep(600)
"""


class Claimer:
    """A process that claims the next due row as `sending`, then hangs (as if inside a long SMTP transaction)."""

    def __init__(self, url: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", CLAIMER, url], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.row = int(self.process.stdout.readline())

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    engine = store.make_engine(url)
    store.create_schema(engine)
    yield engine
    engine.dispose()


def statuses(engine: Engine) -> dict[int, tuple[str, str]]:
    with Session(engine) as session:
        return {r.id or 0: (r.status, r.reason) for r in session.execute(select(SendLog)).scalars()}


def recover_once_noticed(engine: Engine) -> list[int]:
    """Recover until something is recovered: PostgreSQL ends a dead client's session (and lease) a moment later."""
    deadline = time.monotonic() + GUARD
    while not (recovered := recovery.recover_interrupted(engine)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return recovered


def test_only_rows_whose_claiming_process_is_dead_become_unknown(any_store: Engine) -> None:
    engine = any_store
    url = engine.url.render_as_string(hide_password=False)
    add_queued(engine, 3)
    alive, dying = Claimer(url), Claimer(url)
    with Session(engine) as session:  # and one row of this very process, mid-send
        mine = claims.claim_next(session, NOW, lease_for(engine).key)
        session.commit()
    try:
        assert recovery.recover_interrupted(engine) == []  # everyone is alive: nothing is touched
        dying.kill()

        assert recover_once_noticed(engine) == [dying.row]
        rows = statuses(engine)
        assert rows[dying.row] == ("unknown", INTERRUPTED)
        assert rows[alive.row][0] == rows[mine or 0][0] == "sending"
        assert recovery.recover_interrupted(engine) == []  # once is enough
    finally:
        alive.kill()
    assert recover_once_noticed(engine) == [alive.row]
    assert statuses(engine)[mine or 0][0] == "sending"


def test_a_row_is_committed_sending_with_its_message_id_before_the_smtp_transaction_and_sent_after(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    [row_id] = add_queued(engine, 1)
    smtp_server.enqueue("k00000@example.com", "stall:3")  # holds the transaction open after DATA
    settings = replace(smtp_settings, transport=replace(smtp_settings.transport, timeout=30.0))
    worker = threading.Thread(target=delivery.drain, args=(engine, settings, lambda: SmtpTransport(settings.transport)))

    worker.start()
    smtp_server.wait_until(lambda: smtp_server.stalling == 1, timeout=GUARD, describe=lambda: str(statuses(engine)))
    with Session(engine) as session:  # another connection, as a second process would see it
        during = session.get(SendLog, row_id)
    worker.join(timeout=GUARD)
    with Session(engine) as session:
        after = session.get(SendLog, row_id)

    assert during is not None and after is not None
    assert (during.status, during.sent_at) == ("sending", None)
    assert during.message_id and during.message_id == after.message_id
    assert (after.status, after.message_id) == ("sent", smtp_server.messages[0].parsed()["Message-ID"])


def test_a_claimer_that_lost_its_lease_still_records_the_real_outcome_over_unknown(engine: Engine) -> None:
    [row_id] = add_queued(engine, 1)
    with Session(engine) as session:
        assert claims.claim_next(session, NOW, claimer=41) == row_id
        session.execute(update(SendLog).values(status=SendStatus.UNKNOWN))  # another process thought 41 dead
        session.commit()
        assert not claims.finish(session, row_id, claimer=42, values={"status": SendStatus.SENT})
        assert claims.finish(session, row_id, claimer=41, values={"status": SendStatus.SENT})
        session.commit()
    assert statuses(engine)[row_id][0] == "sent"


def wait_for(condition: object, process: subprocess.Popen[bytes], timeout: float = GUARD) -> None:
    """Poll ``condition()`` until true or the process exits; the timeout is a guard against hangs."""
    deadline = time.monotonic() + timeout
    while not condition() and process.poll() is None:  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("neither the condition nor the process ended within the guard")
        time.sleep(0.005)


@pytest.mark.slow
def test_a_pass_killed_at_20_random_moments_sends_every_occasion_at_most_once_and_loses_none(
    tmp_path: Path, smtp_sink: Sink
) -> None:
    config = sink_project(tmp_path / "proj", "sqlite:///mailer.db", smtp_sink.port)
    settings = load_settings(config)
    engine = store.make_engine(settings.store.url)
    store.create_schema(engine)
    add_anniversaries(engine, 500)
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    run = ("run", "--date", "2026-11-23", "--campaign", "customer-anniversary")
    started = time.monotonic()

    kills = 0
    while kills < 20:
        before = len(smtp_sink.deliveries())
        process = mailer(config, *run)
        if rng.random() < 0.25:  # anywhere: start-up, planning, recovery or sending
            deadline = time.monotonic() + rng.uniform(0, 1.5)
            wait_for(lambda: time.monotonic() >= deadline, process)  # noqa: B023
        else:  # among the deliveries, after a random number of them
            # At most a fair share of what is left, so the 20th kill still finds the pass sending.
            k = rng.randint(1, max(1, min(30, (500 - before) // (21 - kills))))
            wait_for(lambda: len(smtp_sink.deliveries()) >= before + k, process)  # noqa: B023
            time.sleep(rng.uniform(0, 0.01))
        assert process.poll() is None, f"the pass ended before kill {kills + 1} (seed {seed})"
        crash(process)
        kills += 1
    final = mailer(config, *run)
    _, err = final.communicate(timeout=GUARD * 2)
    # 1: rows the kills left in flight are now `unknown`, and cron should tell a human.
    assert final.returncode in (0, 1), err.decode()

    with Session(engine) as session:
        logged = list(session.execute(select(SendLog)).scalars())
    rows = {r.id or 0: r.status for r in logged}
    # Every attempt of a row carries the row's Message-ID: it names the occasion each delivery was for.
    row_of = {r.message_id: r.id or 0 for r in logged if r.message_id}
    accepted = Counter(row_of[d.message_id] for d in smtp_sink.deliveries() if d.message_id)
    assert sum(accepted.values()) == len(smtp_sink.deliveries())
    unknown = {i for i, s in rows.items() if s == "unknown"}
    sent = {i for i, s in rows.items() if s == "sent"}
    print(
        f"\nkill test (seed {seed}): {kills} kills, {len(rows)} occasions, {len(accepted)} delivered per the sink,"
        f" {len(sent)} sent, {len(unknown)} unknown ({len(unknown & set(accepted))} of them delivered),"
        f" duplicates {sum(n - 1 for n in accepted.values())}, {time.monotonic() - started:.1f}s"
    )
    assert len(rows) == 500  # every occasion is in the log
    assert max(accepted.values()) == 1  # the sink's own log: nothing delivered twice
    assert set(rows.values()) <= {"sent", "unknown"}
    assert sent <= set(accepted)  # `sent` only after the server's 250
    assert set(rows) - set(accepted) <= unknown  # anything not delivered is `unknown`, never silently lost
    assert len(unknown) <= kills  # one connection: at most one row in flight per kill
    engine.dispose()
