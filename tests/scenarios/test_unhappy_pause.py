"""An unhappy answer holds the customer's next automated note until a person has looked; a happy one does not."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer import store
from mailer.cli import cli
from mailer.config import Settings, load_settings
from mailer.delivery.transport import MaildirTransport
from mailer.outbox import feedback
from mailer.planning.clock import PassClock
from mailer.service import passes
from mailer.service.project import init_project
from mailer.store.tables import SendLog
from tests.support.factories import add_customer, add_sent_question

ANSWERED = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
ANNIVERSARY = date(2026, 11, 25)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Path, Settings, Engine]]:
    config = init_project(tmp_path / "proj", date(2026, 11, 23), customers=3)
    settings = load_settings(config)
    engine = store.make_engine(settings.store.url)
    store.create_schema(engine)
    yield config, settings, engine
    engine.dispose()


def answer(settings: Settings, engine: Engine, value: int) -> tuple[int, int]:
    """Customer U1 (anniversary on 2026-11-25) answers the follow-up they got; returns (customer, feedback id)."""
    customer = add_customer(engine, "U1", since=date(2019, 11, 25), owner_name="Hannah",
                            owner_email="hannah@northwind.example")
    row = add_sent_question(engine, customer, sent_at=datetime(2026, 11, 21, 10, tzinfo=UTC))
    question = feedback.asked(engine, row)
    assert question is not None
    done = feedback.record_answer(engine, question, settings.campaign("how-did-we-do"), value, "", feedback.Source.PAGE,
                                  ANSWERED, settings.feedback, settings.sender)
    return customer, done.feedback_id


def anniversary(engine: Engine, customer: int) -> tuple[str, str] | None:
    with Session(engine) as session:
        found = session.execute(
            select(SendLog.status, SendLog.reason).where(
                SendLog.customer_id == customer, SendLog.campaign == "customer-anniversary"  # type: ignore[arg-type]
            )
        ).first()
    return None if found is None else (found[0], found[1])


def run(settings: Settings, engine: Engine, day: date, folder: Path) -> None:
    passes.run_pass(engine, settings, PassClock.on(day), MaildirTransport(folder))


def test_a_low_answer_defers_the_next_anniversary_until_a_person_resolves_it(
    project: tuple[Path, Settings, Engine], tmp_path: Path
) -> None:
    config, settings, engine = project
    customer, feedback_id = answer(settings, engine, 1)
    run(settings, engine, ANNIVERSARY, tmp_path / "out")
    assert anniversary(engine, customer) == ("deferred", "unhappy feedback on 2026-11-24, waiting for a person")

    shown = CliRunner().invoke(cli, ["--config", str(config), "plan", "--from", "2026-11-26", "--days", "1"])
    assert shown.exit_code == 0, shown.output
    assert "deferred: U1: unhappy feedback on 2026-11-24 (1/5), waiting for a person until 2026-12-24" in shown.output
    assert f"mailer feedback resolve {feedback_id}" in shown.output

    run(settings, engine, date(2026, 11, 26), tmp_path / "out")
    assert anniversary(engine, customer) == ("deferred", "unhappy feedback on 2026-11-24, waiting for a person")

    resolved = CliRunner().invoke(cli, ["--config", str(config), "feedback", "resolve", str(feedback_id)])
    assert resolved.exit_code == 0 and resolved.output == f"{feedback_id}: resolved\n"
    run(settings, engine, date(2026, 11, 27), tmp_path / "out")
    assert anniversary(engine, customer) == ("sent", "delivered")

    again = CliRunner().invoke(cli, ["--config", str(config), "feedback", "resolve", str(feedback_id), "999"])
    assert again.exit_code == 2
    assert again.output == f"{feedback_id}: already handled\nerror: no feedback with id 999 (see `mailer feedback`)\n"


def test_a_high_answer_holds_nothing_back(project: tuple[Path, Settings, Engine], tmp_path: Path) -> None:
    _config, settings, engine = project
    customer, _ = answer(settings, engine, 5)
    run(settings, engine, ANNIVERSARY, tmp_path / "out")
    assert anniversary(engine, customer) == ("sent", "delivered")
    with Session(engine) as session:
        assert session.execute(
            select(SendLog.id).where(SendLog.campaign == feedback.NOTICE_CAMPAIGN)  # type: ignore[arg-type]
        ).first() is None
