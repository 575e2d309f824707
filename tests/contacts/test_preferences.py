"""The preference page's store: campaign opt-outs and pauses, honoured by planning and just before sending."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer.cli import cli
from mailer.config import Settings
from mailer.contacts import importer, optout, preferences
from mailer.contacts.optout import Change
from mailer.contacts.optout_stats import suppression_source
from mailer.delivery import drain as delivery
from mailer.delivery.transport import MaildirTransport
from mailer.outbox import decisions
from mailer.planning import plan as planning
from mailer.planning.clock import PassClock
from mailer.store.tables import SendLog
from tests.contacts.test_optout import CSV, DAY, customer, mailer, statuses

NOW = datetime(2026, 11, 20, 9, tzinfo=UTC)


def people(project: Path, engine: Engine) -> None:
    path = project.parent / "people.csv"
    path.write_text(CSV, encoding="utf-8")
    importer.import_customers(engine, path)


def test_add_months_keeps_the_day_or_takes_the_months_last() -> None:
    assert preferences.add_months(date(2026, 11, 23), 3) == date(2027, 2, 23)
    assert preferences.add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)
    assert preferences.add_months(date(2027, 11, 30), 3) == date(2028, 2, 29)
    assert preferences.add_months(date(2026, 6, 15), 6) == date(2026, 12, 15)


def test_opting_out_twice_keeps_the_first_time_and_source(project: Path, engine: Engine) -> None:
    people(project, engine)
    who = customer(engine, "B1").id or 0
    assert preferences.opt_out_of_campaign(engine, who, "birthday", "page", NOW) is Change.CHANGED
    assert preferences.opt_out_of_campaign(engine, who, "birthday", "cli") is Change.UNCHANGED
    assert preferences.preferences_of(engine, who).opted_out == {"birthday": "page"}
    assert preferences.opt_out_of_campaign(engine, 999, "birthday", "page") is Change.UNKNOWN
    assert preferences.rejoin_campaign(engine, who, "birthday") is Change.CHANGED
    assert preferences.rejoin_campaign(engine, who, "birthday") is Change.UNCHANGED
    assert preferences.rejoin_campaign(engine, 999, "birthday") is Change.UNKNOWN


def test_a_new_pause_replaces_the_last_and_resume_lifts_it(project: Path, engine: Engine) -> None:
    people(project, engine)
    who = customer(engine, "B1").id or 0
    assert preferences.pause(engine, who, date(2027, 1, 1), "page", NOW) is Change.CHANGED
    assert preferences.pause(engine, who, date(2027, 6, 1), "page", NOW) is Change.CHANGED
    assert preferences.preferences_of(engine, who).paused_until == date(2027, 6, 1)
    assert preferences.resume(engine, who) is Change.CHANGED
    assert preferences.resume(engine, who) is Change.UNCHANGED
    assert preferences.pause(engine, 999, date(2027, 1, 1), "page") is Change.UNKNOWN


def test_the_planner_reads_every_customers_wishes_and_logs_the_policy_reasons(
    project: Path, engine: Engine, settings: Settings
) -> None:
    people(project, engine)
    preferences.opt_out_of_campaign(engine, customer(engine, "B1").id or 0, "birthday", "page", NOW)
    preferences.pause(engine, customer(engine, "B3").id or 0, date(2027, 2, 23), "page", NOW)
    clock = PassClock.on(DAY)
    campaigns = [settings.campaign("birthday")]
    with Session(engine, expire_on_commit=False) as session:
        decisions.record(session, planning.plan(session, settings, clock, campaigns), {"birthday": campaigns[0]}, NOW)
    assert statuses(engine) == {
        "B1": ("skipped", "opted out of campaign"),
        "B2": ("queued", "due"),
        "B3": ("deferred", "paused until 2027-02-23"),
    }


def test_leaving_a_campaign_after_planning_stops_its_delivery(
    project: Path, engine: Engine, settings: Settings
) -> None:
    people(project, engine)
    clock = PassClock.on(DAY)
    campaigns = [settings.campaign("birthday")]
    with Session(engine, expire_on_commit=False) as session:
        decisions.record(session, planning.plan(session, settings, clock, campaigns), {"birthday": campaigns[0]}, NOW)
    preferences.opt_out_of_campaign(engine, customer(engine, "B2").id or 0, "birthday", "page", NOW)
    delivery.drain(engine, settings, MaildirTransport(settings.transport.path))
    assert statuses(engine)["B2"] == ("skipped", "opted out of campaign before delivery")
    assert statuses(engine)["B1"] == ("sent", "delivered")


def test_suppressions_lists_every_source_and_stats_counts_them_per_campaign(
    project: Path, engine: Engine, settings: Settings
) -> None:
    people(project, engine)
    clock = PassClock.on(DAY)
    campaigns = [settings.campaign("birthday")]
    with Session(engine, expire_on_commit=False) as session:
        decisions.record(session, planning.plan(session, settings, clock, campaigns), {"birthday": campaigns[0]}, NOW)
        rows = {cid: rid for cid, rid in session.execute(select(SendLog.customer_id, SendLog.id))}
    ann, bob, annie = (customer(engine, x).id or 0 for x in ("B1", "B2", "B3"))
    optout.unsubscribe(engine, ann, optout.Source.ONE_CLICK, NOW, send_log_id=rows[ann])
    preferences.opt_out_of_campaign(engine, bob, "we-miss-you", "page", NOW, send_log_id=rows[bob])
    preferences.pause(engine, bob, date(2027, 2, 23), "page", NOW, send_log_id=rows[bob])
    assert mailer(project, "suppress", "Ann@Example.com", "--reason", "complaint").exit_code == 0
    assert mailer(project, "suppress", "bob@example.com").exit_code == 0

    listed = json.loads(mailer(project, "suppressions", "--format", "json").output)
    assert sorted((r["customer"], r["state"], r["source"]) for r in listed) == [
        ("B1", "suppressed", "complaint"),
        ("B1", "unsubscribed", "one-click"),
        ("B2", "opted out of we-miss-you", "page"),
        ("B2", "paused until 2027-02-23", "page"),
        ("B2", "suppressed", "admin"),
        ("B3", "suppressed", "complaint"),
    ]
    assert annie  # B3 shares Ann's address: `mailer suppress` reaches both

    counted = json.loads(mailer(project, "stats", "--opt-outs", "--format", "json").output)
    assert [(r["campaign"], r["kind"], r["source"], r["count"]) for r in counted] == [
        ("birthday", "paused", "page", 1),  # paused from the link in a birthday email
        ("birthday", "unsubscribed", "one-click", 1),
        ("we-miss-you", "opted out", "page", 1),
        ("(any)", "suppressed", "admin", 1),
        ("(any)", "suppressed", "complaint", 2),
    ]
    table = mailer(project, "stats").output
    assert "opt-outs and suppressions:" in table and "we-miss-you" in table


def test_suppression_sources_are_read_off_their_reasons() -> None:
    assert [suppression_source(r) for r in (
        "hard bounce: 550 5.1.1 unknown", "bounce: 5.1.1 550 no such user", "complaint",
        "webhook:mailgun bounce", "bounce via webhook:ses: 5.1.1 smtp; 550 5.1.1 user unknown",
        "complaint via webhook:mailgun: abuse", "manual", "left the company",
    )] == ["bounce", "bounce", "complaint", "webhook:mailgun", "webhook:ses", "webhook:mailgun", "admin", "admin"]


def test_an_admin_takes_an_address_off_one_campaign_from_the_cli(project: Path, engine: Engine) -> None:
    people(project, engine)
    result = mailer(project, "unsubscribe", "ann@example.com", "--campaign", "birthday")
    assert result.output.strip() == "ann@example.com: 2 customers opted out of birthday"
    again = mailer(project, "unsubscribe", "ann@example.com", "--campaign", "birthday")
    assert again.output.strip() == "ann@example.com: 2 already opted out of birthday"
    for external_id in ("B1", "B3"):
        wishes = preferences.preferences_of(engine, customer(engine, external_id).id or 0)
        assert wishes.opted_out == {"birthday": "cli"}
    assert customer(engine, "B1").unsubscribed_at is None
    args = ["--config", str(project), "unsubscribe", "ann@example.com", "--campaign", "brthday"]
    wrong = CliRunner().invoke(cli, args)
    assert wrong.exit_code == 2 and "did you mean 'birthday'" in wrong.output
