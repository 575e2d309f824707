"""A worked renewal reminder: `occasion = "date"` two weeks before each customer's renewal_date, end to end."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select
from sqlmodel import Session

from mailer import store
from mailer.cli import cli
from mailer.config import load_settings
from mailer.store.tables import SendLog

CAMPAIGN = """
[[campaign]]
name = "renewal-reminder"
occasion = "date"
attribute = "renewal_date"
repeat = "yearly"
offset_days = -14
template = "renewal"
"""
SUBJECT = "Your plan renews on {{ occasion.date | date }}"
BODY = (
    '{% extends "_layout.html" %}{% block content %}<p>Hello {{ customer.first_name | default("there") }}, '
    "your plan renews in {{ occasion.days_until }} days, on {{ occasion.date | date }}.</p>{% endblock %}"
)
TEXT = (
    'Hello {{ customer.first_name | default("there") }}, your plan renews in {{ occasion.days_until }} days, '
    'on {{ occasion.date | date }}.\n\n{% include "_footer.txt" %}'
)


def setup(project: Path) -> CliRunner:
    with project.open("a", encoding="utf-8") as config:
        config.write(CAMPAIGN)
    folder = project.parent / "templates" / "email" / "renewal"
    folder.mkdir()
    (folder / "subject.txt").write_text(SUBJECT, encoding="utf-8")
    (folder / "body.html").write_text(BODY, encoding="utf-8")
    (folder / "body.txt").write_text(TEXT, encoding="utf-8")
    return CliRunner()


def run(runner: CliRunner, project: Path, *args: str) -> str:
    result = runner.invoke(cli, ["--config", str(project), *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def import_csv(runner: CliRunner, project: Path, rows: list[str]) -> CliRunner:
    path = project.parent / "renewals.csv"
    path.write_text("\n".join(["external_id,email,first_name,customer_since,timezone,renewal_date", *rows]) + "\n")
    run(runner, project, "import", "customers", str(path))
    return runner


def planned(runner: CliRunner, project: Path) -> dict[str, str]:
    out = run(
        runner,
        project,
        "plan",
        "--from",
        "2026-12-18",
        "--days",
        "10",
        "--campaign",
        "renewal-reminder",
        "--format",
        "csv",
    )
    return {row["day"]: row["send"] for row in csv.DictReader(io.StringIO(out))}


def test_a_renewal_campaign_shows_up_in_mailer_plan_two_weeks_before_each_renewal(project: Path) -> None:
    runner = setup(project)
    import_csv(
        runner,
        project,
        [
            "R1,r1@example.com,Ada,2020-01-01,Europe/London,2026-01-05",
            "R2,r2@example.com,Bo,2020-01-01,Pacific/Auckland,2027-01-06",
            "R3,r3@example.com,Cy,2020-01-01,America/Los_Angeles,",
        ],
    )
    assert planned(runner, project) == {"2026-12-22": "1", "2026-12-23": "1"}
    # A date attribute added later by a re-import is found from then on.
    import_csv(runner, project, ["R3,r3@example.com,Cy,2020-01-01,America/Los_Angeles,2025-12-31"])
    # Its reminder was due on Dec 17, the day before the forecast starts: caught up on the first day.
    assert planned(runner, project) == {"2026-12-18": "1", "2026-12-22": "1", "2026-12-23": "1"}
    import_csv(runner, project, ["R3,r3@example.com,Cy,2020-01-01,America/Los_Angeles,2027-01-08"])
    assert planned(runner, project) == {"2026-12-22": "1", "2026-12-23": "1", "2026-12-25": "1"}


def test_the_reminder_goes_out_once_in_the_customers_own_time_zone_with_its_date_and_days_until(
    project: Path,
) -> None:
    runner = setup(project)
    import_csv(runner, project, ["R2,r2@example.com,Bo,2020-01-01,Pacific/Kiritimati,2027-01-06"])
    # Dec 23 in Kiritimati (UTC+14) begins at 10:00 UTC on Dec 22: the pass at 21:00 UTC finds it due there.
    run(runner, project, "run", "--now", "2026-12-22T21:00:00+00:00")
    run(runner, project, "run", "--date", "2026-12-23")
    run(runner, project, "run", "--date", "2026-12-24")
    engine = store.make_engine(load_settings(project).store.url)
    with Session(engine) as session:
        rows = session.execute(select(SendLog).where(SendLog.campaign == "renewal-reminder")).scalars().all()
    assert [(r.occasion_key, r.due_date.isoformat(), r.status) for r in rows] == [
        ("date:renewal_date:2027-01-06", "2026-12-23", "sent")
    ]
    assert rows[0].subject == "Your plan renews on 6 January 2027"
    messages = list((project.parent / "outbox" / "new").glob("*.eml"))
    assert any(b"renews in 14 days, on 6 January 2027" in m.read_bytes() for m in messages)
    engine.dispose()


def test_a_renewal_date_that_is_not_a_date_is_a_clear_import_error(project: Path) -> None:
    runner = setup(project)
    path = project.parent / "bad.csv"
    path.write_text("external_id,email,customer_since,renewal_date\nR1,r1@example.com,2020-01-01,soon\n")
    result = runner.invoke(cli, ["--config", str(project), "import", "customers", str(path)])
    assert result.exit_code == 2
    assert f"{path}:2: renewal_date: expected a date YYYY-MM-DD, got 'soon'" in result.output
