"""Gift codes under crashes and several workers: nobody gets two codes, no code goes to two people, none is lost.

The processes are real `mailer` commands, killed with SIGKILL; the SMTP sink runs in
a process of its own, so its log is the truth about what was delivered.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlmodel import Session

from mailer import store
from mailer.config import Settings, load_settings
from mailer.contacts.giftpool import import_codes
from mailer.outbox import gifts
from mailer.store.tables import Customer, GiftCode, SendLog, SendStatus, month_day, utcnow
from tests.conftest import Sink
from tests.support.crashkit import DAY, crash, mailer, sink_project

GUARD = 300.0  # seconds: a guard against hangs, never an expectation about speed
GIFT = "anniversary-5"
RUN = ("run", "--date", DAY.isoformat(), "--campaign", "fifth-anniversary")


def add_fifth_anniversaries(engine: Engine, count: int) -> None:
    since = DAY.replace(year=DAY.year - 5)
    with Session(engine) as session:
        session.add_all(
            Customer(external_id=f"F{n:05d}", email=f"f{n:05d}@example.com", customer_since=since,
                     since_md=month_day(since))
            for n in range(count)
        )
        session.commit()


def stock_pool(engine: Engine, tmp_path: Path, count: int) -> None:
    path = tmp_path / "pool.csv"
    path.write_text("code\n" + "".join(f"POOL-{n:06d}\n" for n in range(count)), encoding="utf-8")
    import_codes(engine, GIFT, path, DAY, utcnow())


def project_with_pool(tmp_path: Path, url: str, sink: Sink, customers: int, codes: int) -> tuple[Path, Engine]:
    config = sink_project(tmp_path / "proj", url, sink.port)
    settings = load_settings(config)
    engine = store.make_engine(settings.store.url)
    store.create_schema(engine)
    add_fifth_anniversaries(engine, customers)
    stock_pool(engine, tmp_path, codes)
    return config, engine


def bindings(engine: Engine) -> tuple[list[SendLog], list[GiftCode]]:
    with Session(engine) as session:
        return list(session.execute(select(SendLog)).scalars()), list(session.execute(select(GiftCode)).scalars())


def assert_each_code_once(logged: list[SendLog], codes: list[GiftCode]) -> None:
    """Every row that may have gone out holds one code, the store binds that code to it alone, and none is lost."""
    given = {c.send_log_id: c.code for c in codes if c.state == "given"}
    out = [r for r in logged if r.status in (SendStatus.SENT, SendStatus.UNKNOWN, SendStatus.QUEUED)]
    assert all(r.gift is not None and given.get(r.id) == r.gift["code"] for r in out)
    assert len(set(given.values())) == len(given)  # no code bound to two rows
    assert set(given) == {r.id for r in logged if r.gift is not None}  # and none bound to a row that lost it


def wait_until(condition: object, process: object, timeout: float = GUARD) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and process.poll() is None:  # type: ignore[attr-defined, operator]
        if time.monotonic() > deadline:
            raise TimeoutError("neither the condition nor the process ended within the guard")
        time.sleep(0.005)


@pytest.mark.slow
def test_a_pass_killed_midway_and_restarted_gives_nobody_two_codes_and_loses_none(
    tmp_path: Path, smtp_sink: Sink
) -> None:
    config, engine = project_with_pool(tmp_path, "sqlite:///mailer.db", smtp_sink, 300, 400)
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for kill in range(8):
        before = len(smtp_sink.deliveries())
        process = mailer(config, *RUN)
        if kill < 2:  # early: start-up, planning, binding the codes
            deadline = time.monotonic() + rng.uniform(0, 1.5)
            wait_until(lambda: time.monotonic() >= deadline, process)  # noqa: B023
        else:  # among the deliveries
            wanted = before + rng.randint(1, 25)
            wait_until(lambda: len(smtp_sink.deliveries()) >= wanted, process)  # noqa: B023
        assert process.poll() is None, f"the pass ended before kill {kill + 1} (seed {seed})"
        crash(process)
    final = mailer(config, *RUN)
    _, err = final.communicate(timeout=GUARD)
    assert final.returncode in (0, 1), err.decode()  # 1: the kills left rows `unknown` for a human

    logged, codes = bindings(engine)
    assert len(logged) == 300 and {r.status for r in logged} <= {"sent", "unknown"}, f"seed {seed}"
    assert_each_code_once(logged, codes)
    row_of = {r.message_id: r.id for r in logged}
    delivered = Counter(row_of[d.message_id] for d in smtp_sink.deliveries())
    assert max(delivered.values()) == 1  # nobody got a second email, so nobody a second code
    states = Counter(c.state for c in codes)
    assert states == {"given": 300, "available": 100}  # every code is somewhere: given once or still in the pool
    engine.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_three_workers_on_postgresql_hand_out_each_pooled_code_at_most_once(
    tmp_path: Path, pg_url: str, smtp_sink: Sink
) -> None:
    config, engine = project_with_pool(tmp_path, pg_url, smtp_sink, 1500, 1200)
    with engine.begin() as connection:  # a throw-away database: spare the fsyncs (see test_workers)
        connection.execute(text(f'ALTER DATABASE "{engine.url.database}" SET synchronous_commit = off'))
    engine.dispose()

    workers = [mailer(config, *RUN) for _ in range(3)]
    results = [w.communicate(timeout=GUARD) for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], [err.decode() for _, err in results]

    logged, codes = bindings(engine)
    statuses = Counter(r.status for r in logged)
    assert statuses == {"sent": 1200, "deferred": 300}  # the pool ran dry: the rest wait, none went without
    assert {r.reason for r in logged if r.status == "deferred"} == {"gift pool 'anniversary-5' is empty"}
    assert_each_code_once(logged, codes)
    accepted = Counter(d.message_id for d in smtp_sink.deliveries())
    assert len(accepted) == 1200 and set(accepted.values()) == {1}
    engine.dispose()


@pytest.mark.postgres
def test_three_binders_at_once_on_postgresql_never_take_the_same_code_or_give_a_row_two(
    tmp_path: Path, pg_url: str, smtp_sink: Sink
) -> None:
    config, engine = project_with_pool(tmp_path, pg_url, smtp_sink, 600, 400)
    settings: Settings = load_settings(config)
    with Session(engine) as session:  # queued rows of the gift campaign with no code yet
        customers = session.execute(select(Customer.id)).scalars().all()  # type: ignore[call-overload]
        session.add_all(
            SendLog(customer_id=c, campaign="fifth-anniversary", occasion_key="anniversary:2026",
                    occasion_kind="anniversary", due_date=DAY, occasion={"years": 5}, template="anniversary",
                    status=SendStatus.QUEUED, to_address="x@example.com", next_attempt_at=utcnow())
            for c in customers
        )
        session.commit()
    start = threading.Barrier(3)
    held: list[int] = []
    errors: list[BaseException] = []

    def binder() -> None:
        try:
            with Session(engine) as session:
                start.wait()
                held.append(sum(gifts.bind_due(session, settings.campaigns, utcnow()).values()))
                session.commit()
        except BaseException as exc:  # handed to the test's thread below
            errors.append(exc)

    threads = [threading.Thread(target=binder) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(GUARD)
    assert errors == []
    logged, codes = bindings(engine)
    assert_each_code_once(logged, codes)
    assert Counter(c.state for c in codes) == {"given": 400}
    assert Counter(r.status for r in logged) == {"queued": 400, "deferred": 200} and sum(held) == 200
    engine.dispose()
