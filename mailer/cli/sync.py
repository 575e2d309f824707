"""``mailer sync``: run the ``[[source]]``s once (the daemon does it before each pass)."""

from __future__ import annotations

import click

from mailer.cli.app import App, cli, pass_app
from mailer.service import sync as syncing


@cli.command("sync")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--full", is_flag=True, help="Read every row again, not only those newer than the last sync.")
@click.option("--dry-run", is_flag=True, help="Read and check everything; change nothing.")
@pass_app
def sync_command(app: App, names: tuple[str, ...], full: bool, dry_run: bool) -> None:
    """Feed the store from its [[source]]s (all, or each NAME): new, updated, unchanged and rejected per source.

    Exit status 1 when a source failed; it changed nothing and the others still ran.
    """
    if not names and not app.settings.sources:
        raise click.ClickException(f"{app.settings.path.name} has no [[source]] (see README: Feeding the store)")
    outcomes = syncing.sync(app.engine, app.settings, names, full=full, dry_run=dry_run)
    for outcome in outcomes:
        line = ("would sync " if dry_run else "") + outcome.summary()
        click.echo(line, err=outcome.failed)
        for detail in outcome.details:
            click.echo(f"  {detail}", err=True)
    if any(o.failed for o in outcomes):
        click.get_current_context().exit(1)
