"""``mailer inbox``: read bounces, complaints and unsubscribe requests once."""

from __future__ import annotations

import click

from mailer.cli.app import App, cli, pass_app
from mailer.errors import MailerError
from mailer.service import inbox as reading


@cli.command()
@pass_app
def inbox(app: App) -> None:
    """Read the [inbox] (Maildir or IMAP) once: bounces, complaints and unsubscribes become opt-outs.

    Prints what it found, "left for a human N" included. Exit status 0 when every message was
    handled or left for a human, 1 when the inbox could not be read, 2 for a configuration problem.
    """
    settings = app.settings
    if settings.inbox is None:
        raise MailerError(f"{settings.path.name}: no [inbox] section; add one to read bounces and complaints")
    report = reading.process(app.engine, reading.mailbox_for(settings.inbox), settings)
    click.echo(report.summary())
