"""``mailer templates check|variables``, ``preview`` and ``send-test``: the templates marketers edit."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import click

from mailer.cli.app import App, cli, pass_app, today
from mailer.compose.checker import Problem
from mailer.compose.maker import envelope_for
from mailer.compose.message import build_message
from mailer.compose.render import Renderer
from mailer.config import Campaign, SenderSettings, Settings
from mailer.errors import MailerError
from mailer.service import runs


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
    if directory is None:
        problems += _missing_versions(app, folder)
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


def _missing_versions(app: App, folder: Path) -> list[Problem]:
    """Warnings for emails lacking a version in a language the stored customers read; none without a store."""
    from sqlalchemy.exc import SQLAlchemyError

    from mailer.compose.checker import missing_version_warnings
    from mailer.contacts.languages import locale_counts

    locale = app.settings.sender.locale
    try:
        counts = locale_counts(app.engine, locale)
    except (MailerError, SQLAlchemyError):
        click.echo("languages not compared: the store cannot be read (mailer db upgrade?)", err=True)
        return []
    return missing_version_warnings(folder, counts, locale)


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
    help="A customer from the store, or sample-full / sample-email-only / sample-unicode / sample-de.",
)
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="The occasion's day (default: today).")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path),
    help="Write the HTML (FILE.html) or the whole message (FILE.eml).",
)
@click.option("--locale", default="", help="Render in this language (de, de-AT…); default: the customer's.")
@click.option("--serve", is_flag=True, help="Start the preview page on 127.0.0.1 instead.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8026, show_default=True, help="With --serve (0: any free port)."
)
@pass_app
def preview(
    app: App,
    name: str | None,
    customer_id: str | None,
    day: datetime | None,
    out: Path | None,
    locale: str,
    serve: bool,
    port: int,
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
    shown = previews.render_preview(
        settings, renderer, name, customer, day.date() if day else today(), engine, locale=locale
    )
    if shown.rendered is None:
        raise MailerError("\n".join(shown.problems))
    click.echo(f"Subject: {shown.rendered.subject}")
    version = shown.rendered.locale or "default"
    click.echo(f"({shown.kind} email for {shown.customer_label}, in {shown.locale}: the {version} templates)\n")
    click.echo(shown.rendered.text, nl=False)
    if out:
        if out.suffix == ".eml":
            envelope = envelope_for(customer, settings.sender, f"{settings.sender.unsubscribe_url}/u/preview")
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
    row = previews.send_test(settings, app.engine, runs.transports(settings)(), name, address, customer,
                             day.date() if day else today())
    click.echo(f"{row.status}: {row.subject!r} to {address} (rendered for {customer.external_id}; "
               f"send log #{row.id}, {row.occasion_key}): {row.last_reply}")
    if row.status != "sent":
        raise SystemExit(2)
