"""Claiming a send-log row on PostgreSQL: a row another worker holds is skipped at once, never waited for."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from mailer import store
from mailer.outbox import claims
from mailer.store.tables import SendLog, SendStatus
from tests.support.factories import add_customer

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _queued_row(engine, customer_id: int) -> int:  # type: ignore[no-untyped-def]
    row = SendLog(
        customer_id=customer_id, campaign="c", occasion_key="anniversary:2026", occasion_kind="anniversary",
        due_date=date(2026, 11, 23), template="anniversary", status=SendStatus.QUEUED, next_attempt_at=NOW,
    )
    with Session(engine) as session:
        session.add(row)
        session.commit()
        assert row.id is not None
        return row.id


@pytest.mark.postgres
def test_a_row_locked_by_another_worker_is_skipped_not_waited_for_then_claimed_once_free(pg_url: str) -> None:
    engine = store.make_engine(pg_url)
    store.create_schema(engine)
    try:
        row_id = _queued_row(engine, add_customer(engine, "C1", since=date(2020, 11, 23)))
        with Session(engine) as holder, Session(engine) as worker:
            holder.execute(select(SendLog).where(SendLog.id == row_id).with_for_update())  # another worker mid-claim
            # Without SKIP LOCKED this UPDATE would block on the lock; lock_timeout turns a wait into an error.
            worker.execute(text("SET LOCAL lock_timeout = '5s'"))
            assert claims.claim(worker, row_id, NOW, claimer=2) is False
            worker.rollback()
            holder.rollback()  # the other worker let go without claiming
            assert claims.claim(worker, row_id, NOW, claimer=2) is True
            worker.commit()
            assert claims.claim(worker, row_id, NOW, claimer=3) is False  # already sending: nobody claims it twice
        with Session(engine) as session:
            row = session.get(SendLog, row_id)
            assert row is not None and (row.status, row.claimed_by, row.attempts) == ("sending", 2, 1)
    finally:
        engine.dispose()


def test_the_moment_a_customer_was_emailed_never_moves_backwards(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = store.make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    store.create_schema(engine)
    customer_id = add_customer(engine, "ANN", since=date(2020, 1, 1), timezone="Europe/Berlin")
    with Session(engine) as session:
        claims.mark_emailed(session, customer_id, NOW)
        # A `--date` pass for an earlier day delivers a retry queued by a real pass: the cap keeps NOW.
        claims.mark_emailed(session, customer_id, NOW, day=date(2026, 11, 16))
        session.commit()
        assert session.execute(text("select last_emailed_at from customer")).scalar_one().startswith("2026-11-23")
        claims.mark_emailed(session, customer_id, NOW, day=date(2026, 11, 30))
        session.commit()
        assert session.execute(text("select last_emailed_at from customer")).scalar_one().startswith("2026-11-30 11:00")
