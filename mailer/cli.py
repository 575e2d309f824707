"""The ``mailer`` command: one click group, thin commands over the modules that do the work.

Every user-fixable problem is a MailerError, shown as one line on stderr with
exit status 2; the traceback appears only with ``-v``.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from zoneinfo import ZoneInfo

import click
from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col

from mailer import logs, store
from mailer.compose import dkim
from mailer.compose.message import Envelope, build_message
from mailer.compose.render import Renderer
from mailer.config import Campaign, SenderSettings, Settings, find_config, load_settings
from mailer.contacts import importer, optout
from mailer.delivery.report import PassReport
from mailer.delivery.transport import make_transport
from mailer.errors import MailerError
from mailer.outbox import recovery
from mailer.planning.clock import PassClock
from mailer.planning.forecast import forecast
from mailer.service import monitor, passes, preflight, project, runs
from mailer.service.daemon import Daemon, next_pass
from mailer.store import migrate
from mailer.store.tables import Customer, SendLog, SendStatus
from mailer.tabular import FORMATS, format_rows

if TYPE_CHECKING:
    from mailer.compose.checker import Problem


class UserError(click.ClickException):
    """A MailerError on its way out: printed as is, exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        for line in self.format_message().splitlines() or [""]:
            click.echo(f"error: {line}" if not line.startswith(("error:",)) else line, err=True)


class App:
    """What every command needs, built lazily so `mailer init` works without a config."""

    def __init__(self, config: str | None, verbose: bool) -> None:
        self.config_option = config
        self.verbose = verbose

    @cached_property
    def settings(self) -> Settings:
        return load_settings(find_config(self.config_option))

    @cached_property
    def engine(self) -> Engine:
        engine = store.make_engine(self.settings.store.url)
        store.check_schema(engine)
        return engine

    def settings_for(self, needs: preflight.Needs) -> Settings:
        """The settings, once mailer/preflight.py finds nothing wrong; else MailerError with a line per problem.

        Call it before ``engine`` or a lock: a refused start writes nothing, not even the store's file.
        """
        problems = preflight.check(self.settings, needs, shown_from=Path.cwd())
        if problems:
            raise MailerError("\n".join(problems))
        return self.settings


pass_app = click.make_pass_decorator(App)


class MailerGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MailerError as exc:
            app = ctx.find_object(App)
            if app is not None and app.verbose:
                traceback.print_exc()
            raise UserError(str(exc)) from None


@click.group(cls=MailerGroup)
@click.option("--config", "config", envvar="MAILER_CONFIG", metavar="FILE", help="mailer.toml to use (default: ./mailer.toml).")
@click.option("-v", "--verbose", is_flag=True, help="More logging; tracebacks on errors.")
@click.option("--log-json", is_flag=True, envvar="MAILER_LOG_JSON", help="Log events to stderr as JSON lines.")
@click.version_option(package_name="mailer")
@click.pass_context
def cli(ctx: click.Context, config: str | None, verbose: bool, log_json: bool) -> None:
    """Customer-appreciation email: the right note, to the right person, exactly once."""
    logs.configure(verbose=verbose, json_lines=log_json)
    ctx.obj = App(config, verbose)


def main() -> NoReturn:
    cli.main(prog_name="mailer")
    raise SystemExit(0)


def _today() -> date:
    return date.today()


# ---- init / demo -------------------------------------------------------------------------------


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
def init(directory: Path) -> None:
    """Scaffold a project: mailer.toml, templates/email/, sample data, a secret and the store."""
    config = project.init_project(directory, _today())
    settings = load_settings(config)
    store.create_schema(store.make_engine(settings.store.url))
    click.echo(f"created {config}")
    click.echo(f"  templates: {settings.render.templates}")
    click.echo(f"  sample data: {directory / 'data'}")
    click.echo(f"next: cd {directory} && mailer import customers data/customers.csv && mailer run --dry-run")


@cli.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default="mailer-demo", show_default=True)
def demo(directory: Path) -> None:
    """The whole job on embedded defaults: project, sample customers, a real pass, .eml files out."""
    today = _today()
    config = directory / "mailer.toml"
    if not config.exists():
        project.init_project(directory, today)
        click.echo(f"created a demo project in {directory}/")
    settings = load_settings(config.resolve())
    engine = store.make_engine(settings.store.url)
    store.create_schema(engine)
    data = directory / "data"
    for kind, run in (("customers", importer.import_customers), ("interactions", importer.import_interactions)):
        report = run(engine, data / f"{kind}.csv")
        click.echo(report.summary())
    # The same recorded, locked pass as `mailer run --date today`, so `mailer status` sees it.
    with runs.exclusive(settings.store.url, "demo"):
        report = runs.scheduled_pass(engine, settings, PassClock.on(today)).report
    click.echo(f"pass for {today}: {report.summary()}")
    _print_deliveries(engine, report)
    if settings.transport.kind == "maildir":
        click.echo(f"messages are in {settings.transport.path / 'new'}/ (open any .eml in a mail client)")


def _print_deliveries(engine: Engine, report: PassReport) -> None:
    if not report.deliveries:
        click.echo("nothing new to send today (each occasion is sent once; see `mailer log`)")
        return
    ids = [row_id for row_id, _ in report.deliveries]
    with Session(engine) as session:
        rows = session.execute(
            select(SendLog.id, Customer.external_id, SendLog.to_address, SendLog.campaign, SendLog.subject)
            .join(Customer, Customer.id == SendLog.customer_id)  # type: ignore[arg-type]
            .where(col(SendLog.id).in_(ids))
            .order_by(SendLog.id)
        ).all()
    click.echo(format_rows(["id", "customer", "to", "campaign", "subject"], [tuple(r) for r in rows], max_width=56))


# ---- import ------------------------------------------------------------------------------------


@cli.group("import")
def import_() -> None:
    """Import customers or interactions from CSV (all or nothing unless --skip-invalid)."""


def _import_command(kind: str, run: Callable[..., importer.ImportReport]) -> None:
    @import_.command(kind)
    @click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--skip-invalid", is_flag=True, help="Import the good rows; write the bad ones to FILE.rejected.csv.")
    @click.option("--dry-run", is_flag=True, help="Validate only; change nothing.")
    @pass_app
    def command(app: App, file: Path, skip_invalid: bool, dry_run: bool) -> None:
        with _progress(file) as progress:
            # A customer without a zone of their own joined on a date in the sender's zone.
            zone = {"default_zone": app.settings.sender.timezone} if kind == "customers" else {}
            report = run(app.engine, file, skip_invalid=skip_invalid, dry_run=dry_run, progress=progress, **zone)
        click.echo(report.summary())

    command.__doc__ = f"Import {kind} from FILE (CSV with a header row)."


@contextmanager
def _progress(file: Path) -> Iterator[Callable[[int], None] | None]:
    """A progress bar over the file's bytes on a terminal; nothing under cron."""
    if not sys.stderr.isatty() or not file.exists():
        yield None
        return
    with click.progressbar(length=file.stat().st_size * 2, label=file.name, file=sys.stderr) as bar:
        last = 0

        def advance(position: int) -> None:
            nonlocal last
            if position < last:  # the second read of the file (validate, then write) starts over
                last = 0
            bar.update(position - last)
            last = position

        yield advance


_import_command("customers", importer.import_customers)
_import_command("interactions", importer.import_interactions)


# ---- run / log ---------------------------------------------------------------------------------


def _parse_now(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected an ISO timestamp such as 2026-11-23T09:30:00+00:00, got {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@cli.command()
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Run as of this calendar day in every customer's zone, window open.")
@click.option("--now", callback=_parse_now, help="Run at this exact instant (ISO), send windows applied.")
@click.option("--dry-run", is_flag=True, help="Show who would get what and why; write and send nothing.")
@click.option("--campaign", "campaigns", multiple=True, help="Only this campaign (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="With --dry-run: write the rendered .eml files here.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@pass_app
def run(app: App, day: datetime | None, now: datetime | None, dry_run: bool, campaigns: tuple[str, ...], out: Path | None, fmt: str) -> None:
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
    first = start.date() if start else _today()
    with Session(app.engine) as session:
        rows = forecast(session, settings, first, days, chosen)
    headers = ["day", "weekday", "campaign", "send", "defer", "skip"]
    table = [(r.day, f"{r.day:%a}", r.campaign, r.send, r.defer, r.skip) for r in rows]
    if fmt == "table":
        totals = [sum(r.send for r in rows), sum(r.defer for r in rows), sum(r.skip for r in rows)]
        table.append(("total", "", f"{days} days", *totals))
    click.echo(format_rows(headers, table, fmt))


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

    settings = app.settings
    for name in campaigns:
        settings.campaign(name)  # an unknown name is an error before anything runs
    first = start.date() if start else _today()
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


@cli.command("log")
@click.option("--status", type=click.Choice([s.value for s in SendStatus]), help="Only rows with this status.")
@click.option("--campaign", help="Only this campaign.")
@click.option("--customer", help="Only this customer's external_id.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="Only rows updated on or after this day.")
@click.option("--limit", type=int, default=200, show_default=True)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@pass_app
def log_(app: App, status: str | None, campaign: str | None, customer: str | None, since: datetime | None, limit: int, fmt: str) -> None:
    """The send log: every attempt, with its status and reason."""
    query = (
        select(
            SendLog.id, SendLog.updated_at, Customer.external_id, SendLog.to_address, SendLog.campaign,
            SendLog.occasion_key, SendLog.status, SendLog.attempts, SendLog.reason, SendLog.subject, SendLog.message_id,
        )
        .join(Customer, Customer.id == SendLog.customer_id)  # type: ignore[arg-type]
        .order_by(col(SendLog.updated_at).desc(), col(SendLog.id).desc())
        .limit(limit)
    )
    if status:
        query = query.where(SendLog.status == status)  # type: ignore[arg-type]
    if campaign:
        query = query.where(SendLog.campaign == campaign)  # type: ignore[arg-type]
    if customer:
        # One customer's timeline: their occasions in the order they fell due, each with its latest decision.
        query = query.where(Customer.external_id == customer).order_by(None).order_by(  # type: ignore[arg-type]
            col(SendLog.due_date), col(SendLog.created_at), col(SendLog.id)
        ).add_columns(col(SendLog.due_date))
    if since:
        query = query.where(col(SendLog.updated_at) >= since)
    with Session(app.engine) as session:
        rows = [tuple(r) for r in session.execute(query).all()]
    headers = ["id", "updated", "customer", "to", "campaign", "occasion", "status", "attempts", "reason", "subject", "message_id"]
    if customer:  # the due date leads the timeline
        headers, rows = ["due", *headers], [(r[-1], *r[:-1]) for r in rows]
    if fmt == "table":
        width = 10 if customer else 9
        headers, rows = headers[:width], [r[:width] for r in rows]
    click.echo(format_rows(headers, rows, fmt))


@cli.group()
def db() -> None:
    """The store's schema."""


@db.command()
@pass_app
def upgrade(app: App) -> None:
    """Apply the shipped schema migrations to the store (creating its tables when it is new)."""
    engine = store.make_engine(app.settings.store.url)
    try:
        result = migrate.upgrade(engine)
    except DBAPIError as exc:
        raise store.StoreError(f"cannot upgrade the store: {str(exc.orig or exc).strip().splitlines()[0]}") from None
    finally:
        engine.dispose()
    click.echo(f"{engine.url.render_as_string(hide_password=True)}: {result.summary()}")


# ---- opting out --------------------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8025, show_default=True, type=click.IntRange(0, 65535), help="Port (0 picks a free one).")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256), help="Worker threads.")
@click.option("--preview", "with_preview", is_flag=True,
              help="Also serve the template preview at /preview/ (shows customer data: keep it off in production).")
@pass_app
def serve(app: App, host: str, port: int, threads: int, with_preview: bool) -> None:
    """Serve the unsubscribe endpoint (one-click POST, confirmation page, /healthz)."""
    from mailer.web.unsubscribe import create_app, make_server  # Flask and waitress load only for this command

    app.settings_for(preflight.SERVE)
    wsgi = create_app(app.settings, app.engine)
    if with_preview:
        mount_preview(wsgi, app.settings)
    server = make_server(wsgi, host, port, threads)
    click.echo(f"serving on http://{host}:{server.effective_port}/ (links use {app.settings.sender.unsubscribe_url})")
    if with_preview:
        click.echo(f"template preview on http://{host}:{server.effective_port}/preview/")
    # SIGTERM (systemd stop) ends the loop like Ctrl-C: waitress closes its sockets and threads.
    signal.signal(signal.SIGTERM, _exit_quietly)
    server.run()


def mount_preview(wsgi: Any, settings: Settings) -> None:
    """Mount the template preview (mailer/preview.py) under /preview/ of the unsubscribe app."""
    from mailer.web import preview

    preview.configure(wsgi, settings)
    wsgi.register_blueprint(preview.blueprint, url_prefix="/preview")


def _exit_quietly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _report(email: str, counts: dict[optout.Change, int], done: str, already: str) -> None:
    changed, unchanged = counts[optout.Change.CHANGED], counts[optout.Change.UNCHANGED]
    parts = [f"{changed} customer{'s' if changed != 1 else ''} {done}"] if changed else []
    if unchanged:
        parts.append(f"{unchanged} {already}")
    click.echo(f"{email}: {', '.join(parts)}")


@cli.command()
@click.argument("emails", nargs=-1, required=True, metavar="EMAIL...")
@click.option("--source", type=click.Choice(["cli", "mailto"]), default="cli",
              show_default=True, help="Record where the request came from (mailto: it came by email).")
@pass_app
def unsubscribe(app: App, emails: tuple[str, ...], source: str) -> None:
    """Unsubscribe every customer with each EMAIL; later passes send them nothing."""
    for email in emails:
        counts = optout.unsubscribe_address(app.engine, email, optout.Source(source))
        _report(email, counts, "unsubscribed", "already unsubscribed")


@cli.command()
@click.argument("emails", nargs=-1, required=True, metavar="EMAIL...")
@click.option("--reason", default="manual", show_default=True, help="Why (complaint, hard bounce, manual, ...).")
@pass_app
def suppress(app: App, emails: tuple[str, ...], reason: str) -> None:
    """Suppress every customer with each EMAIL (no mail of any kind until `mailer unsuppress`)."""
    reason = " ".join(reason.split())
    if not reason:
        raise click.BadParameter("must not be empty", param_hint="--reason")
    for email in emails:
        _report(email, optout.suppress_address(app.engine, email, reason), "suppressed", "already suppressed")


@cli.command()
@click.argument("emails", nargs=-1, required=True, metavar="EMAIL...")
@pass_app
def unsuppress(app: App, emails: tuple[str, ...]) -> None:
    """Lift the suppression of every customer with each EMAIL (an unsubscribe stays in force)."""
    for email in emails:
        _report(email, optout.unsuppress_address(app.engine, email), "no longer suppressed", "were not suppressed")


@cli.command()
@click.option("--limit", type=int, default=None, help="At most this many rows (newest first).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@pass_app
def suppressions(app: App, limit: int | None, fmt: str) -> None:
    """Everyone who gets no mail: unsubscribed (with the source) and suppressed (with the reason)."""
    rows = [(r.external_id, r.email, r.state, r.since, r.why) for r in optout.opted_out(app.engine, limit)]
    click.echo(format_rows(["customer", "email", "state", "since", "source/reason"], rows, fmt))


# ---- templates / preview / send-test -------------------------------------------------------------


@cli.group()
def templates() -> None:
    """The email templates marketers edit (templates/email/)."""


@templates.command("check")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--spam-score/--no-spam-score", default=True, show_default=True,
    help="Score each email with SpamAssassin (when installed): a warning above 0.5, a problem above 5.",
)
@pass_app
def templates_check(app: App, directory: Path | None, spam_score: bool) -> None:
    """Compile every template, check its variables, parts, unsubscribe link, postal address and spam score.

    Problems are listed as FILE:LINE: problem; exit status 2 when there are any.
    A spam score above 0.5 is listed as FOLDER: spam score X (RULE POINTS, ...),
    a warning that leaves the exit status alone; above 5 it is a problem.
    Without DIRECTORY the project's templates are checked against its campaigns.
    """
    from mailer.compose.checker import PLACEHOLDER_SENDER, check_templates

    if directory is None:
        settings = app.settings
        folder = settings.render.templates
        campaigns: Sequence[Campaign] = settings.campaigns
        sender, inliner = settings.sender, settings.render.inliner
    else:
        folder = directory.resolve()
        campaigns, sender, inliner = (), PLACEHOLDER_SENDER, "premailer"
    problems = check_templates(folder, campaigns, sender, inliner)
    if spam_score:
        problems = sorted([*problems, *_spam_scores(folder, problems, campaigns, sender, inliner)])
    base = Path.cwd()
    for problem in problems:
        click.echo(problem.format(base))
    warnings = sum(p.warning for p in problems)
    if len(problems) > warnings:
        count = len(problems) - warnings
        click.echo(f"{count} problem{'s' if count != 1 else ''} in {folder}", err=True)
        raise SystemExit(2)
    names = [p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))]
    noted = f", {warnings} warning{'s' if warnings != 1 else ''}" if warnings else ""
    click.echo(f"{len(names)} templates in {folder}: no problems{noted}")


def _spam_scores(
    folder: Path, found: list[Problem], campaigns: Sequence[Campaign], sender: SenderSettings, inliner: str
) -> list[Problem]:
    """The spam scores worth a line; a note on stderr instead when SpamAssassin cannot give them."""
    from mailer.compose.checker import spam_problems
    from mailer.compose.spamscore import SpamAssassinError, find_spamassassin

    spamassassin = find_spamassassin()
    if spamassassin is None:
        click.echo("spam scores skipped: SpamAssassin is not installed (apt install spamassassin)", err=True)
        return []
    try:
        return spam_problems(folder, spamassassin, campaigns, sender, inliner, found)
    except SpamAssassinError as exc:
        click.echo(f"spam scores skipped: {exc}", err=True)
        return []


@templates.command("variables")
def templates_variables() -> None:
    """Print the variables templates can use (the table in templates/email/README.md)."""
    from mailer.compose.context import variables_markdown

    click.echo(variables_markdown(), nl=False)


@cli.command()
@click.argument("name", required=False)
@click.option(
    "--customer", "customer_id", metavar="EXTERNAL_ID",
    help="A customer from the store, or sample-full / sample-email-only / sample-unicode.",
)
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="The occasion's day (default: today).")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path),
    help="Write the HTML (FILE.html) or the whole message (FILE.eml).",
)
@click.option("--serve", is_flag=True, help="Start the preview page on 127.0.0.1 instead.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8026, show_default=True, help="With --serve (0: any free port)."
)
@pass_app
def preview(
    app: App, name: str | None, customer_id: str | None, day: datetime | None, out: Path | None, serve: bool, port: int
) -> None:
    """Render template NAME for a customer: subject and text here, HTML to --out; or --serve the preview page."""
    from mailer.web import preview as previews

    settings = app.settings
    if serve:
        _serve_preview(settings, port)
        return
    if not name:
        raise click.UsageError("name a template (or use --serve)")
    renderer = Renderer(settings.render.templates, settings.render.inliner)
    engine = app.engine if customer_id and not customer_id.startswith("sample-") else None
    customer = previews.find_customer(engine, customer_id or previews.DEFAULT_SAMPLE)
    shown = previews.render_preview(settings, renderer, name, customer, day.date() if day else _today(), engine)
    if shown.rendered is None:
        raise MailerError("\n".join(shown.problems))
    click.echo(f"Subject: {shown.rendered.subject}")
    click.echo(f"({shown.kind} email for {shown.customer_label})\n")
    click.echo(shown.rendered.text, nl=False)
    if out:
        if out.suffix == ".eml":
            envelope = Envelope(
                customer.email, customer.first_name or "", customer.owner_email or "", customer.owner_name or "",
                f"{settings.sender.unsubscribe_url}/u/preview",
            )
            out.write_bytes(build_message(shown.rendered, envelope, settings.sender).as_bytes())
        else:
            out.write_text(shown.rendered.html, encoding="utf-8")
        click.echo(f"\nwrote {out}", err=True)


def _serve_preview(settings: Settings, port: int) -> None:
    from werkzeug.serving import make_server

    from mailer.web.preview import create_app

    server = make_server("127.0.0.1", port, create_app(settings), threaded=True)
    # The real port (with --port 0) on one line, flushed: scripts and tests read it.
    click.echo(f"preview on http://127.0.0.1:{server.server_port}/ (Ctrl+C to stop)")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@cli.command("send-test")
@click.argument("name")
@click.option("--to", "to_address", required=True, metavar="ADDRESS", help="Where the test goes.")
@click.option(
    "--customer", "customer_id", metavar="EXTERNAL_ID",
    help="Whose data to render (default: the customer with ADDRESS, else the first one).",
)
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="The occasion's day (default: today).")
@pass_app
def send_test(app: App, name: str, to_address: str, customer_id: str | None, day: datetime | None) -> None:
    """Send template NAME once to ADDRESS through the configured transport, subject marked [TEST].

    Logged in the send log as a test; it never counts as the customer's occasion.
    """
    from email_validator import EmailNotValidError, validate_email

    from mailer.web import preview as previews

    try:
        address = validate_email(to_address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise MailerError(f"--to: not a valid address ({exc})") from None
    settings = app.settings
    customer = previews.choose_test_customer(app.engine, customer_id, address)
    row = previews.send_test(settings, app.engine, make_transport(settings.transport), name, address, customer,
                             day.date() if day else _today())
    click.echo(f"{row.status}: {row.subject!r} to {address} (rendered for {customer.external_id}; "
               f"send log #{row.id}, {row.occasion_key}): {row.last_reply}")
    if row.status != "sent":
        raise SystemExit(2)


# ---- the service: daemon, retry sweep, requeue, stats, status --------------------------------


@cli.command()
@pass_app
def daemon(app: App) -> None:
    """Run passes on the [schedule] crontab and retry sweeps until SIGTERM (then finish the message in flight)."""
    settings = app.settings_for(preflight.SEND)
    with runs.exclusive(settings.store.url, "daemon") as sole:
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
        before = recovery.requeue(session, ids, datetime.now(UTC))
    for row_id, status in sorted(before.items()):
        click.echo(f"{row_id}: {status} -> queued")
    click.echo(f"requeued {len(before)} row(s); the next retry sweep (daemon, or `mailer retry`) sends them")


@cli.command()
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="Only rows whose status changed since this day (UTC).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@pass_app
def stats(app: App, since: datetime | None, fmt: str) -> None:
    """Per campaign: sent, deferred, skipped, failed, bounced, unknown, queued."""
    with Session(app.engine) as session:
        rows = monitor.stats(session, since.replace(tzinfo=UTC) if since else None)
    click.echo(format_rows(monitor.stats_headers(), rows, fmt))


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@pass_app
def status(app: App, fmt: str) -> None:
    """Last pass, next pass, queue by status, oldest retry; exit status 1 when something needs a human."""
    settings = app.settings
    with Session(app.engine) as session:
        facts = monitor.gather(session, datetime.now(UTC), lambda after: next_pass(settings, after))
    if fmt == "json":
        click.echo(json.dumps(monitor.as_json(facts), indent=2))
    else:
        zone = ZoneInfo(settings.sender.timezone)
        lines = [
            ("last pass", monitor.describe_run(facts.last_pass)),
            ("last sweep", monitor.describe_run(facts.last_sweep)),
            ("next pass", f"{facts.next_pass:%Y-%m-%d %H:%M} UTC ({facts.next_pass.astimezone(zone):%H:%M} {zone})"),
            ("queue", monitor.describe_queue(facts.queue)),
            ("oldest retry", monitor.describe_retry(facts.oldest_retry)),
        ]
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
