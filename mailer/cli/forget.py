"""``mailer forget EXTERNAL_ID``: erase a customer's personal data, keeping only what stops mail to them."""

from __future__ import annotations

import click

from mailer.cli.app import App, cli, pass_app
from mailer.contacts import erasure


@cli.command()
@click.argument("external_ids", nargs=-1, required=True, metavar="EXTERNAL_ID...")
@pass_app
def forget(app: App, external_ids: tuple[str, ...]) -> None:
    """Erase customers: personal fields blanked, interactions deleted, the address kept only as a one-way
    hash so that importing it again makes a suppressed customer (also DELETE /api/v1/customers/ID).

    Exit status 1 when an EXTERNAL_ID is unknown (the others are still erased).
    """
    unknown = False
    for external_id in external_ids:
        outcome = erasure.forget(app.engine, external_id)
        if outcome is erasure.Erasure.UNKNOWN:
            click.echo(f"{external_id}: no such customer", err=True)
            unknown = True
        else:
            click.echo(f"{external_id}: {outcome}")
    if unknown:
        click.get_current_context().exit(1)
