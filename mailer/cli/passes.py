"""``mailer run``, ``plan``, ``simulate``, ``daemon``, ``retry``, ``requeue``: passes, now, ahead and unattended."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from sqlmodel import Session

from mailer.cli.app import App, cli, parse_now, pass_app, today
from mailer.cli.tabular import FORMATS, format_rows
from mailer.compose import dkim
from mailer.delivery.report import PassReport
from mailer.delivery.transport import make_transport
from mailer.outbox import feedback_report, recovery
from mailer.planning.clock import PassClock
from mailer.planning.forecast import forecast
from mailer.service import giftwatch, passes, preflight, runs
from mailer.service.daemon import Daemon


@cli.command()
@click.option(
    "--date", "day", type=click.DateTime(["%Y-%m-%d"]),
    help="Run as of this calendar day in every customer's zone, window open.",
)
@click.option("--now", callback=parse_now, help="Run at this exact instant (ISO), send windows applied.")
@click.option("--dry-run", is_flag=True, help="Show who would get what and why; write and send nothing.")
@click.option("--campaign", "campaigns", multiple=True, help="Only this campaign (repeatable).")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path),
    help="With --dry-run: write the rendered .eml files here.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@pass_app
def run(
    app: App,
    day: datetime | None,
    now: datetime | None,
    dry_run: bool,
    campaigns: tuple[str, ...],
    out: Path | None,
    fmt: str,
) -> None:
    """Run one pass: plan what is due, record it, send it."""
    if day and now:
        raise click.UsageError("use --date or --now, not both")
    if out and not dry_run:
        raise click.UsageError("--out goes with --dry-run (a real pass sends through the configured transport)")
    settings = app.settings_for(preflight.DRY_RUN if dry_run else preflight.SEND)
    clock = PassClock.on(day.date(), now) if day else PassClock.at(now)
    if not dry_run:
        with runs.exclusive(settings.store.url, "run"), runs.StopFlag().on_signals() as stop:
            done = runs.scheduled_pass(app.engine, settings, clock, campaign_names=campaigns or None, should_stop=stop)
        click.echo(f"pass: {done.summary()}")
        _exit_for(done.report)
        return
    transport = make_transport(settings.transport, sign=dkim.signer_for(settings.sender))
    report = passes.run_pass(app.engine, settings, clock, transport, campaign_names=campaigns or None, dry_run=True)
    rows = [
        (p.customer.external_id, p.customer.email, p.decision.occasion.campaign, p.decision.occasion.key,
         p.decision.occasion.due, f"would {p.decision.verdict}", p.decision.reason)
        for p in sorted(report.planned, key=lambda p: (p.decision.occasion.campaign, p.customer.external_id))
    ]
    click.echo(format_rows(["customer", "email", "campaign", "occasion", "due", "decision", "reason"], rows, fmt))
    if out:
        folder = make_transport(settings.transport, out_dir=out, sign=dkim.signer_for(settings.sender))
        written = passes.render_planned(app.engine, settings, report.planned, folder)
        click.echo(f"wrote {written} rendered messages to {out / 'new'}/", err=fmt != "table")
    click.echo(f"dry run: {report.summary()} (nothing written, nothing sent)", err=fmt != "table")


def _exit_for(report: PassReport) -> None:
    """Exit status 1 when cron should tell someone: the relay was unusable, or rows ended failed or unknown."""
    if report.relay_down:
        click.echo(f"error: relay unusable: {report.relay_down}", err=True)
    for status in ("failed", "unknown"):
        if report.counts.get(status):
            click.echo(f"error: {report.counts[status]} {status} (`mailer log --status {status}`)", err=True)
    if report.needs_a_human:
        click.get_current_context().exit(1)


@cli.command("plan")
@click.option("--days", type=click.IntRange(1, 366), default=14, show_default=True, help="How many days ahead.")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), help="First day to simulate (default: today).")
@click.option("--campaign", "campaigns", multiple=True, help="Only this campaign (repeatable).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@pass_app
def plan_command(app: App, days: int, start: datetime | None, campaigns: tuple[str, ...], fmt: str) -> None:
    """Forecast per day and campaign: how many emails would be sent, deferred, skipped. Writes nothing."""
    settings = app.settings
    chosen = [settings.campaign(n) for n in campaigns] if campaigns else list(settings.campaigns)
    first = start.date() if start else today()
    with Session(app.engine) as session:
        rows = forecast(session, settings, first, days, chosen)
        held = feedback_report.waiting(session)
        gift_needs = giftwatch.needs(session, settings, first, days, chosen) if fmt == "table" else []
    # "paused" and "opted out": how many of the deferred and skipped the customers' own wishes held back.
    headers = ["day", "weekday", "campaign", "send", "defer", "skip", "paused", "opted out"]
    table: list[tuple[object, ...]] = [
        (r.day, f"{r.day:%a}", r.campaign, r.send, r.defer, r.skip, r.paused, r.opted_out) for r in rows
    ]
    if fmt == "table":
        totals = [sum(getattr(r, n) for r in rows) for n in ("send", "defer", "skip", "paused", "opted_out")]
        table.append(("total", "", f"{days} days", *totals))
    click.echo(format_rows(headers, table, fmt))
    for need in gift_needs:  # what the gifts take over the same days (`mailer gifts` lists the pools)
        click.echo(need.describe())
    # Customers whose appreciation waits for a person: their occasions show above as deferred.
    pause = settings.policy.unhappy_pause_days
    for item in held:
        until = item.since.date() + timedelta(days=pause)
        click.echo(
            f"deferred: {item.external_id}: unhappy feedback on {item.since:%Y-%m-%d} ({item.answer}), waiting for a "
            f"person until {until} at the latest (`mailer feedback resolve {item.feedback_id}`)",
            err=fmt != "table",
        )


@cli.command("simulate")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), help="First day to simulate (default: today).")
@click.option("--days", type=click.IntRange(1, 3660), default=14, show_default=True, help="How many days.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the messages as .eml files in DIR/new/ (default: thrown away with the copy).")
@click.option("--campaign", "campaigns", multiple=True, help="Only this campaign (repeatable).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@pass_app
def simulate_command(
    app: App, start: datetime | None, days: int, out: Path | None, campaigns: tuple[str, ...], fmt: str
) -> None:
    """Run the real passes for these days on a throw-away copy of the store and show what went out.

    The store is only read. Each day is what `mailer run --date DAY` would do,
    one day after the other; the messages are written as .eml files (--out).
    """
    from mailer.service.simulate import simulate

    settings = app.settings_for(preflight.DRY_RUN)  # the same templates and secret a dry run needs
    for name in campaigns:
        settings.campaign(name)  # an unknown name is an error before anything runs
    first = start.date() if start else today()
    with tempfile.TemporaryDirectory(prefix="mailer-simulate-out-") as scratch:
        found = simulate(settings, first, days, out or Path(scratch), campaigns or None)
    table: list[tuple[object, ...]] = []
    for day in found:
        for name in sorted(set(day.queued) | set(day.deferred) | set(day.skipped) | set(day.sent)):
            table.append((day.day, f"{day.day:%a}", name, day.sent[name], day.deferred[name], day.skipped[name]))
    if fmt == "table":
        totals = [sum(sum(getattr(d, k).values()) for d in found) for k in ("sent", "deferred", "skipped")]
        table.append(("total", "", f"{days} days", *totals))
    click.echo(format_rows(["day", "weekday", "campaign", "sent", "deferred", "skipped"], table, fmt))
    for day in found:
        if day.held:
            click.echo(f"{day.day}: the daily cap kept {day.held} due messages for the next day", err=fmt != "table")
    note = f"messages are in {out / 'new'}/" if out else "messages were thrown away (keep them with --out DIR)"
    click.echo(f"{note}; the store was not changed", err=fmt != "table")


@cli.command()
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="Also serve Prometheus metrics on this port (for hosts that run no `mailer serve`).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address for --metrics-port.")
@pass_app
def daemon(app: App, metrics_port: int | None, metrics_host: str) -> None:
    """Run passes on the [schedule] crontab and retry sweeps until SIGTERM (then finish the message in flight)."""
    settings = app.settings_for(preflight.DAEMON)
    with runs.exclusive(settings.store.url, "daemon") as sole:
        if metrics_port is not None:
            from mailer.service import metrics

            metrics.serve(app.engine, settings, metrics_host, metrics_port)
            click.echo(f"Prometheus metrics on http://{metrics_host}:{metrics_port}/metrics")
        Daemon(app.engine, settings, sole_sender=sole).run()


@cli.command()
@click.option("--if-idle", is_flag=True, help="Exit quietly (status 0) when another mailer holds the store's lock.")
@pass_app
def retry(app: App, if_idle: bool) -> None:
    """Deliver what is due again (retries, requeued rows) without planning: the retry sweep, for cron."""
    settings = app.settings_for(preflight.SEND)
    try:
        with runs.exclusive(settings.store.url, "retry"), runs.StopFlag().on_signals() as stop:
            done = runs.retry_sweep(app.engine, settings, should_stop=stop)
    except runs.Busy:
        if if_idle:
            return
        raise
    click.echo(f"retry sweep: {done.summary()}" if done else "retry sweep: nothing due")
    if done:
        _exit_for(done.report)


@cli.command()
@click.argument("ids", nargs=-1, required=True, type=int)
@pass_app
def requeue(app: App, ids: tuple[int, ...]) -> None:
    """Queue unknown (or failed) send-log rows ID... again, after a human decided they should go out."""
    with Session(app.engine) as session:
        before = recovery.requeue(session, ids, datetime.now(UTC), app.settings.campaigns)
    for row_id, status in sorted(before.items()):
        click.echo(f"{row_id}: {status} -> queued")
    click.echo(f"requeued {len(before)} row(s); the next retry sweep (daemon, or `mailer retry`) sends them")
