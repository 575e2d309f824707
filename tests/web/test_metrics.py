"""/metrics on a real `mailer serve` process: parsed with prometheus_client's own parser, matched with the store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from mailer.cli import cli
from mailer.config import Settings
from mailer.service.metrics import suppression_kind
from mailer.store import migrate
from mailer.store.tables import SendLog
from tests.support.outcomes import pass_with_every_outcome
from tests.support.served import Served

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(served: Served, **headers: str) -> Samples:
    reply = served.request("GET", "/metrics", headers=headers)
    assert reply.status == 200, reply.body
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(reply.body)
        for sample in family.samples
    }


@pytest.fixture
def served(project: Path) -> Iterator[Served]:
    server = Served(project)
    yield server
    assert server.stop() == 0


@pytest.mark.slow
def test_metrics_match_the_store_and_mailer_status_after_a_pass(
    project: Path, settings: Settings, engine: Engine, served: Served
) -> None:
    run = pass_with_every_outcome(engine, settings)
    samples = scrape(served)

    with Session(engine) as session:
        by_campaign = session.execute(
            select(SendLog.campaign, SendLog.status, func.count()).group_by(SendLog.campaign, SendLog.status)
        ).all()
        revision = migrate.current(session.connection())
    assert {status for _, status, _ in by_campaign} >= {"sent", "deferred", "failed", "unknown"}
    for campaign, status, count in by_campaign:
        assert samples[("mailer_messages", (("campaign", campaign), ("status", status)))] == count
    assert sum(v for (name, _), v in samples.items() if name == "mailer_messages") == sum(c for *_, c in by_campaign)

    status = CliRunner().invoke(cli, ["--config", str(project), "status", "--format", "json"])
    assert status.exit_code == 1  # the unknown and failed rows need a human
    report = json.loads(status.output)
    for name, count in report["queue"].items():
        assert samples[("mailer_queue_rows", (("status", name),))] == count
    assert samples[("mailer_problems", ())] == len(report["problems"]) > 0
    assert samples[("mailer_last_run_start_timestamp_seconds", (("kind", "pass"),))] == pytest.approx(
        run_started(report)
    )
    assert samples[("mailer_last_run_status", (("kind", "pass"), ("status", "done")))] == 1
    assert samples[("mailer_last_run_messages", (("kind", "pass"), ("outcome", "sent")))] == run.report.counts["sent"]
    assert samples[("mailer_store_schema_info", (("revision", revision or ""),))] == 1
    assert samples[("mailer_relay_down", ())] == 0


def run_started(report: dict[str, object]) -> float:
    last = report["last_pass"]
    assert isinstance(last, dict)
    return datetime.fromisoformat(str(last["started_at"])).timestamp()


@pytest.mark.slow
def test_a_metrics_token_is_required_when_configured(project: Path) -> None:
    secret = project.parent / "metrics-token"
    secret.write_text("s3cret-token\n", encoding="utf-8")
    with project.open("a", encoding="utf-8") as config:
        config.write('\n[metrics]\ntoken_file = "metrics-token"\n')
    served = Served(project)
    try:
        assert served.request("GET", "/metrics").status == 401
        assert served.request("GET", "/metrics", headers={"Authorization": "Bearer wrong"}).status == 401
        assert ("mailer_problems", ()) in scrape(served, Authorization="Bearer s3cret-token")
    finally:
        served.stop()


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("hard bounce: 550 5.1.1 no such user", "bounce"),
        ("bounce via ses: Permanent/General", "bounce"),
        ("complaint", "complaint"),
        ("complaint via mailgun: abuse", "complaint"),
        ("bounce: 3 transient failures in 14 days (last: 4.2.2)", "soft_bounce"),
        ("asked by phone", "other"),
        (None, "other"),
    ],
)
def test_suppression_reasons_fall_into_a_few_label_values(reason: str | None, kind: str) -> None:
    assert suppression_kind(reason) == kind
