"""mailer status / stats / requeue: what whoever looks after the server sees, and the exit codes monitoring reads."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine
from sqlmodel import Session

from mailer.cli import cli
from mailer.config import Settings
from mailer.service.daemon import next_pass
from mailer.service.monitor import Facts, problems
from mailer.store.tables import PassRun, SendLog, SendStatus
from tests.support.factories import add_customer

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def a_pass(started: datetime, status: str = "done", error: str = "") -> PassRun:
    return PassRun(
        id=7,
        kind="pass",
        started_at=started,
        finished_at=started + timedelta(seconds=2),
        status=status,
        error=error,
        host="h",
        pid=1,
    )


def facts(**overrides: object) -> Facts:
    base = Facts(
        now=NOW,
        last_pass=a_pass(NOW - timedelta(minutes=55)),
        last_sweep=None,
        queue={"sent": 3},
        unknown_ids=[],
        failed_recently=0,
        bounced_recently=0,
        oldest_retry=None,
        overdue_queued=0,
        next_pass=NOW + timedelta(minutes=5),
        next_pass_after_last=NOW + timedelta(minutes=5),
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def test_a_healthy_service_needs_nobody() -> None:
    assert problems(facts()) == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"unknown_ids": [4, 9]},
            "2 unknown row(s) (interrupted while sending: maybe delivered): check them "
            "(`mailer log --status unknown`), then `mailer requeue 4 9` or leave them",
        ),
        ({"failed_recently": 3}, "3 failed in the last 24 h (`mailer log --status failed`)"),
        ({"bounced_recently": 1}, "1 bounced in the last 24 h (`mailer log --status bounced`)"),
        ({"last_pass": None}, "no pass has run yet: start `mailer daemon` (or the cron jobs)"),
        (
            {"last_pass": a_pass(NOW - timedelta(minutes=55), "failed", "OperationalError: disk full")},
            "the last pass (#7) failed: OperationalError: disk full",
        ),
        (
            {"last_pass": a_pass(NOW - timedelta(hours=3)), "next_pass_after_last": NOW - timedelta(hours=2)},
            "no pass since 2026-11-23 09:00 UTC (one was due at 2026-11-23 10:00 UTC): "
            "is the daemon (or cron) running?",
        ),
        ({"overdue_queued": 2}, "2 queued row(s) overdue by more than an hour: is the retry sweep running?"),
    ],
)
def test_each_thing_that_needs_a_human_is_named(overrides: dict[str, object], expected: str) -> None:
    assert problems(facts(**overrides)) == [expected]


def test_a_pass_late_by_less_than_the_grace_is_not_yet_a_problem() -> None:
    late = facts(
        last_pass=a_pass(NOW - timedelta(hours=1, minutes=30)), next_pass_after_last=NOW - timedelta(minutes=30)
    )
    assert problems(late) == []


def test_the_schedule_is_read_in_the_senders_time_zone_across_daylight_saving(settings: Settings) -> None:
    daily_nine = replace(settings, schedule=replace(settings.schedule, passes=("0 9 * * *",)))
    assert settings.sender.timezone == "Europe/London"
    # 09:00 London is 09:00 UTC in winter and 08:00 UTC in summer.
    assert next_pass(daily_nine, datetime(2026, 11, 23, 12, 0, tzinfo=UTC)) == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert next_pass(daily_nine, datetime(2026, 7, 1, 12, 0, tzinfo=UTC)) == datetime(2026, 7, 2, 8, 0, tzinfo=UTC)
    assert next_pass(settings, datetime(2026, 11, 23, 12, 7, tzinfo=UTC)) == datetime(2026, 11, 23, 13, 5, tzinfo=UTC)


def test_a_crontab_expression_apscheduler_cannot_read_is_a_config_error(project: Path) -> None:
    project.write_text(project.read_text().replace('passes = ["5 * * * *"]', 'passes = ["5 25 * * *"]'))
    result = invoke(project, "status")
    assert result.exit_code == 2
    assert result.output.startswith("error: mailer.toml: [schedule] passes: '5 25 * * *': ")


def add_row(engine: Engine, customer_id: int, key: str, status: str, **fields: object) -> int:
    row = SendLog(
        customer_id=customer_id,
        campaign="birthday",
        occasion_key=key,
        occasion_kind="birthday",
        due_date=date(2026, 11, 23),
        template="birthday",
        status=status,
        to_address="x@example.com",
        **fields,
    )
    with Session(engine) as session:
        session.add(row)
        session.commit()
        assert row.id is not None
        return row.id


def record_pass(engine: Engine, started: datetime) -> None:
    with Session(engine) as session:
        session.add(
            PassRun(
                kind="pass", started_at=started, finished_at=started, status="done", host="h", pid=1, counts={"sent": 1}
            )
        )
        session.commit()


def test_status_exits_0_when_all_is_well_and_1_when_a_row_is_unknown(project: Path, engine: Engine) -> None:
    customer = add_customer(engine, "C1", since=date(2020, 1, 1))
    add_row(engine, customer, "birthday:2026", SendStatus.SENT)
    record_pass(engine, datetime.now(UTC))

    healthy = invoke(project, "status")
    assert healthy.exit_code == 0, healthy.output
    assert healthy.output.splitlines()[-1] == "all well"
    assert "queue:        sent 1," in healthy.output

    unknown = add_row(engine, customer, "birthday:2025", SendStatus.UNKNOWN)
    worried = invoke(project, "status", "--format", "json")
    assert worried.exit_code == 1
    report = json.loads(worried.output)
    assert report["ok"] is False and report["unknown_ids"] == [unknown]
    assert report["last_pass"]["counts"] == {"sent": 1}


def test_status_on_a_fresh_install_says_no_pass_has_run(project: Path) -> None:
    result = invoke(project, "status")
    assert result.exit_code == 1
    assert "  - no pass has run yet: start `mailer daemon` (or the cron jobs)" in result.output


def test_stats_counts_each_status_per_campaign_since_a_day(project: Path, engine: Engine) -> None:
    customer = add_customer(engine, "C1", since=date(2020, 1, 1))
    old = datetime(2026, 1, 5, tzinfo=UTC)
    add_row(engine, customer, "birthday:2025", SendStatus.SENT, updated_at=old)
    add_row(engine, customer, "birthday:2026", SendStatus.BOUNCED)
    add_row(engine, customer, "birthday:2027", SendStatus.UNKNOWN)
    add_row(engine, customer, "test:1", SendStatus.SENT, is_test=True)  # test sends never count

    every = json.loads(invoke(project, "stats", "--format", "json").output)
    since = json.loads(invoke(project, "stats", "--since", "2026-06-01", "--format", "json").output)

    assert every[0] == {
        "campaign": "birthday",
        "sent": 1,
        "deferred": 0,
        "skipped": 0,
        "failed": 0,
        "bounced": 1,
        "unknown": 1,
        "queued": 0,
        "sending": 0,
        "answered": "",  # birthday asks no "how did we do?" (tests/cli/test_feedback.py has one that does)
    }
    assert every[-1]["campaign"] == "total"
    assert (since[0]["sent"], since[0]["bounced"], since[0]["unknown"]) == (0, 1, 1)


def test_requeue_moves_only_unknown_or_failed_rows_and_changes_nothing_on_a_bad_id(
    project: Path, engine: Engine
) -> None:
    customer = add_customer(engine, "C1", since=date(2020, 1, 1))
    unknown = add_row(engine, customer, "birthday:2025", SendStatus.UNKNOWN)
    failed = add_row(engine, customer, "birthday:2026", SendStatus.FAILED)
    sent = add_row(engine, customer, "birthday:2027", SendStatus.SENT)

    refused = invoke(project, "requeue", str(unknown), str(sent), "999")
    assert refused.exit_code == 2
    assert refused.output.strip() == (
        f"error: nothing requeued: 999: no such send-log row; "
        f"{sent}: is sent; only failed or unknown rows can be requeued"
    )
    with Session(engine) as session:
        assert session.get(SendLog, unknown).status == SendStatus.UNKNOWN  # type: ignore[union-attr]

    done = invoke(project, "requeue", str(unknown), str(failed))
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[:2] == [f"{unknown}: unknown -> queued", f"{failed}: failed -> queued"]
    with Session(engine) as session:
        rows = [session.get(SendLog, i) for i in (unknown, failed)]
        assert [(r.status, r.reason) for r in rows if r] == [
            ("queued", "requeued by hand (was unknown)"),
            ("queued", "requeued by hand (was failed)"),
        ]
