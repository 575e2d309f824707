"""``mailer import``, ``unsubscribe``, ``resubscribe``, ``suppress``, ``unsuppress``, ``suppressions``.

Who is in the store, and who gets no mail (or less of it).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from mailer.cli.app import App, cli, pass_app
from mailer.cli.tabular import FORMATS, format_rows
from mailer.contacts import importer, optout, optout_stats, preferences
from mailer.contacts.mapping import parse_map_option
from mailer.contacts.profiles import layout_for

log = logging.getLogger(__name__)


@cli.group("import")
def import_() -> None:
    """Import customers or interactions from CSV (all or nothing unless --skip-invalid)."""


def _import_command(kind: str, run: Callable[..., importer.ImportReport]) -> None:
    @import_.command(kind, help=f"Import {kind} from FILE (CSV with a header row, or a shop's export with --profile).")
    @click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--skip-invalid", is_flag=True, help="Import the good rows; write the bad ones to FILE.rejected.csv.")
    @click.option("--dry-run", is_flag=True, help="Validate only; show the mapping and the first rows; change nothing.")
    @click.option("--profile", metavar="NAME",
                  help="Read a shop's export: shopify, shopify-customers, shopify-orders, woocommerce-customers, "
                       "or an [import.profile.NAME] of mailer.toml.")
    @click.option("--map", "maps", multiple=True, metavar='"COLUMN=FIELD"',
                  help='Map a column of the file to mailer\'s, e.g. --map "E-Mail=email" (repeatable).')
    @pass_app
    def command(
        app: App, file: Path, skip_invalid: bool, dry_run: bool, profile: str | None, maps: tuple[str, ...]
    ) -> None:
        pairs = [parse_map_option(m) for m in maps]
        layout = layout_for(kind, file, profile=profile, maps=pairs, settings=app.settings)
        with _progress(file) as progress:
            # Customers without a zone of their own live in the sender's zone (join day, first order day).
            options: dict[str, Any] = {"default_zone": app.settings.sender.timezone, "layout": layout}
            if kind == "customers":  # the attributes date campaigns name must hold dates
                options["date_columns"] = app.settings.date_columns
            report = run(app.engine, file, skip_invalid=skip_invalid, dry_run=dry_run, progress=progress, **options)
        if dry_run:
            _show_reading(report)
        click.echo(report.summary())


def _show_reading(report: importer.ImportReport) -> None:
    """What a dry run shows: the mapping used and the first rows as mailer reads them."""
    layout = report.layout
    if layout is not None and layout.mapped:
        click.echo("mapping:")
        for line in layout.describe():
            click.echo(line)
    if report.preview:
        click.echo("first rows as mailer reads them:")
        for where, row in report.preview:
            cells = ", ".join(f"{column}={value!r}" for column, value in row.items() if value)
            click.echo(f"  {where}: {cells}")


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
@click.option("--campaign", help="Only from this campaign (as the preference page's \"No more of these\").")
@pass_app
def unsubscribe(app: App, emails: tuple[str, ...], source: str, campaign: str | None) -> None:
    """Unsubscribe every customer with each EMAIL; later passes send them nothing (or nothing of --campaign)."""
    if campaign is not None:
        name = app.settings.campaign(campaign).name
        for email in emails:
            counts = optout.for_address(
                app.engine, email, lambda who: preferences.opt_out_of_campaign(app.engine, who, name, source)
            )
            _report(email, counts, f"opted out of {name}", f"already opted out of {name}")
        return
    for email in emails:
        counts = optout.unsubscribe_address(app.engine, email, optout.Source(source))
        _report(email, counts, "unsubscribed", "already unsubscribed")


@cli.command()
@click.argument("emails", nargs=-1, required=True, metavar="EMAIL...")
@click.option("--because", required=True, help="Why the unsubscribe is lifted: the customer's own request, a ticket.")
@pass_app
def resubscribe(app: App, emails: tuple[str, ...], because: str) -> None:
    """Lift the unsubscribe of every customer with each EMAIL, at their explicit request.

    An import never lifts an unsubscribe made in mailer (a "yes" in a shop's consent column may be
    years old); only the customer, from their preference page, or an admin with this command does.
    """
    because = " ".join(because.split())
    if not because:
        raise click.BadParameter("must not be empty", param_hint="--because")
    for email in emails:
        counts = optout.for_address(app.engine, email, lambda who: optout.resubscribe(app.engine, who))
        log.info("resubscribe %s by an admin: %s", email, because)
        _report(email, counts, "subscribed again", "were not unsubscribed")


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
    """Everyone who gets less mail: unsubscribed, suppressed, opted out of a campaign or paused; with the source."""
    rows = [
        (r.external_id, r.email, r.state, r.since, r.source, r.detail)
        for r in optout_stats.listing(app.engine, limit)
    ]
    click.echo(format_rows(["customer", "email", "state", "since", "source", "source/reason"], rows, fmt))


_import_command("customers", importer.import_customers)
_import_command("interactions", importer.import_interactions)
