"""``mailer inbox``: read bounces, complaints and unsubscribe requests once."""

from __future__ import annotations

import click

from mailer.cli.app import App, cli, pass_app
from mailer.errors import MailerError
from mailer.service import inbox as reading


@cli.command()
@pass_app
def inbox(app: App) -> None:
    """Read the [inbox] Maildir once: bounces, complaints and unsubscribes become opt-outs."""
    settings = app.settings
    if settings.inbox is None:
        raise MailerError(f"{settings.path.name}: no [inbox] section; add one to read bounces and complaints")
    report = reading.process(app.engine, settings.inbox, settings.sender.unsubscribe_mailto)
    click.echo(report.summary())
