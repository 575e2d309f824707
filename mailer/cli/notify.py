"""``mailer notify``: one round of alerts and events out, for hosts that run mailer from cron."""

from __future__ import annotations

import click

from mailer.cli.app import App, cli, pass_app
from mailer.service import watching


@cli.command()
@pass_app
def notify(app: App) -> None:
    """Tell [alerts] about a change of `mailer status`; deliver due [[webhook]] events (the daemon: every 30 s)."""
    done = watching.once(app.engine, app.settings)
    if done.alert is not None:
        click.echo(f"alert sent: {done.alert.subject()}")
    for name, count in done.delivered.items():
        if count:
            click.echo(f"webhook {name}: {count} event(s) delivered")
