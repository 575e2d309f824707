"""``mailer log``, ``stats`` and ``status``: what was sent, and whether a human is needed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import click
from sqlmodel import Session

from mailer.cli.app import App, cli, pass_app
from mailer.cli.tabular import FORMATS, format_rows
from mailer.contacts import optout_stats
from mailer.outbox import feedback_report, history
from mailer.service import events, giftwatch, monitor
from mailer.service import sync as syncing
from mailer.service.daemon import next_pass
from mailer.store.tables import SendStatus


@cli.command("log")
@click.option("--status", type=click.Choice([s.value for s in SendStatus]), help="Only rows with this status.")
@click.option("--campaign", help="Only this campaign.")
@click.option("--customer", help="Only this customer's external_id.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="Only rows updated on or after this day.")
@click.option("--limit", type=int, default=200, show_default=True)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@pass_app
def log_(
    app: App,
    status: str | None,
    campaign: str | None,
    customer: str | None,
    since: datetime | None,
    limit: int,
    fmt: str,
) -> None:
    """The send log: every attempt, with its status and reason; with --customer, that customer's timeline."""
    with Session(app.engine) as session:
        headers, rows = history.listing(
            session, status=status, campaign=campaign, customer=customer, since=since, limit=limit
        )
    if fmt == "table":
        width = 10 if customer else 9
        headers, rows = headers[:width], [r[:width] for r in rows]
    click.echo(format_rows(headers, rows, fmt))


@cli.command()
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="Only rows whose status changed since this day (UTC).")
@click.option("--opt-outs", "opt_outs", is_flag=True,
              help="Only the opt-outs and suppressions, per campaign and source.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@pass_app
def stats(app: App, since: datetime | None, opt_outs: bool, fmt: str) -> None:
    """Per campaign: sent, deferred, skipped, failed, bounced, unknown, queued, answered; then opt-outs.

    The table shows both; --format csv or json gives the first, or with --opt-outs the second.
    """
    after = since.replace(tzinfo=UTC) if since else None
    left = optout_stats.counts(app.engine, after)
    if not opt_outs:
        with Session(app.engine) as session:
            rows = monitor.stats(session, after)
            rates = feedback_report.response_rates(session, [c.name for c in app.settings.campaigns if c.ask])
        # "how did we do?": of the messages that asked (all time), how many were answered (mailer feedback).
        headers = [*monitor.stats_headers(), "answered"]
        rows = [(*row, _answered(rates.get(str(row[0])))) for row in rows]
        click.echo(format_rows(headers, rows, fmt))
        if fmt != "table":
            return
        click.echo("\nopt-outs and suppressions:" if left else "\nno opt-outs or suppressions")
    if left or opt_outs:
        click.echo(format_rows(optout_stats.HEADERS, left, fmt))


def _answered(rate: tuple[int, int] | None) -> str:
    if rate is None:
        return ""
    sent, answered = rate
    return f"{answered}/{sent} ({answered / sent:.0%})" if sent else "0/0"


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@pass_app
def status(app: App, fmt: str) -> None:
    """Last pass, next pass, queue by status, oldest retry; exit status 1 when something needs a human."""
    settings = app.settings
    with Session(app.engine) as session:
        facts = monitor.gather(session, datetime.now(UTC), lambda after: next_pass(settings, after))
        # A gift pool that will not last its warning horizon needs a human before it runs dry.
        local_today = facts.now.astimezone(ZoneInfo(settings.sender.timezone)).date()
        facts.problems.extend(giftwatch.problems(session, settings, local_today))
    # The [[source]]s: each one's last sync, and a problem once one has failed longer than its alert_after.
    source_states = syncing.states(app.engine)
    facts.problems.extend(syncing.problems(settings.sources, source_states, facts.now))
    source_lines = [(s.name, syncing.describe(source_states.get(s.name))) for s in settings.sources]
    outbound = events.backlog(app.engine)  # [[webhook]] deliveries by status
    if fmt == "json":
        click.echo(json.dumps({**monitor.as_json(facts), "events": outbound, "sources": dict(source_lines)}, indent=2))
    else:
        zone = ZoneInfo(settings.sender.timezone)
        lines = [
            ("last pass", monitor.describe_run(facts.last_pass)),
            ("last sweep", monitor.describe_run(facts.last_sweep)),
            ("next pass", f"{facts.next_pass:%Y-%m-%d %H:%M} UTC ({facts.next_pass.astimezone(zone):%H:%M} {zone})"),
            ("queue", monitor.describe_queue(facts.queue)),
            ("oldest retry", monitor.describe_retry(facts.oldest_retry)),
            *[(f"webhook {name}", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
              for name, counts in sorted(outbound.items())],
        ]
        lines += [(f"source {name}", text) for name, text in source_lines]
        for label, text in lines:
            click.echo(f"{label + ':':<14}{text}")
        if facts.problems:
            click.echo("needs attention:")
            for problem in facts.problems:
                click.echo(f"  - {problem}")
        else:
            click.echo("all well")
    if facts.problems:
        click.get_current_context().exit(1)
