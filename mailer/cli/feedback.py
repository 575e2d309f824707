"""``mailer feedback``: the answers to "how did we do?", how customers feel, and ``resolve`` for the unhappy."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
from sqlmodel import Session

from mailer.cli.app import App, cli, pass_app
from mailer.cli.tabular import FORMATS, format_rows
from mailer.errors import MailerError
from mailer.outbox import feedback, feedback_report

SUMMARY_HEADERS = ["campaign", "month sent", "sent", "responses", "response rate", "average", "distribution"]


@cli.group("feedback", invoke_without_command=True)
@click.option(
    "--since", type=click.DateTime(["%Y-%m-%d"]),
    help="Only answers given, and in the summary questions sent, on or after this day (UTC).",
)
@click.option("--campaign", help="Only this campaign.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.pass_context
def feedback_command(ctx: click.Context, since: datetime | None, campaign: str | None, fmt: str) -> None:
    """The answers, then per campaign and month: responses, response rate, distribution, average."""
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(App)
    assert app is not None
    settings = app.settings
    if campaign is not None and campaign not in {c.name for c in settings.campaigns}:
        settings.campaign(campaign)  # an unknown name is one clear error, with a suggestion
    after = since.replace(tzinfo=UTC) if since else None
    with Session(app.engine) as session:
        answers = feedback_report.listing(session, after, campaign)
        names = feedback_report.asking_campaigns(session, [c.name for c in settings.campaigns if c.ask])
        chosen = [campaign] if campaign else names
        summaries = feedback_report.summarise(feedback_report.asked_messages(session, chosen, after))
    table = fmt == "table"
    rows = [
        (s.campaign, s.period, s.sent, s.responses,
         _percent(s.rate) if table else _rounded(s.rate, 3), _number(s.average) if table else _rounded(s.average, 2),
         s.distribution())
        for s in summaries
    ]
    if fmt == "json":
        both = {
            "answers": json.loads(format_rows(feedback_report.LISTING_HEADERS, answers, fmt)),
            "summary": json.loads(format_rows(SUMMARY_HEADERS, rows, fmt)),
        }
        click.echo(json.dumps(both, indent=2, ensure_ascii=False))
        return
    if fmt == "csv":  # one table per file: the summary, which is what a spreadsheet wants
        click.echo(format_rows(SUMMARY_HEADERS, rows, fmt))
        return
    click.echo(format_rows(feedback_report.LISTING_HEADERS, answers, fmt) if answers else "no answers yet")
    click.echo("")
    click.echo(format_rows(SUMMARY_HEADERS, rows, fmt) if rows else "no question has been sent yet")


@feedback_command.command("resolve")
@click.argument("ids", nargs=-1, required=True, type=int)
@pass_app
def resolve(app: App, ids: tuple[int, ...]) -> None:
    """Mark unhappy answers ID... handled: appreciation to those customers resumes with the next pass."""
    unknown = []
    for feedback_id in ids:
        outcome = feedback.resolve(app.engine, feedback_id, "mailer feedback resolve", datetime.now(UTC))
        if outcome is feedback.Resolution.UNKNOWN:
            unknown.append(feedback_id)
        else:
            click.echo(f"{feedback_id}: {outcome}")
    if unknown:
        raise MailerError(f"no feedback with id {', '.join(map(str, unknown))} (see `mailer feedback`)")


def _percent(rate: float | None) -> str:
    return "" if rate is None else f"{rate:.0%}"


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"
