"""``mailer api-key create|list|revoke``: the bearer keys of the HTTP API under /api/v1/ of ``mailer serve``."""

from __future__ import annotations

import click

from mailer.cli.app import App, cli, pass_app
from mailer.cli.tabular import FORMATS, format_rows
from mailer.service import apikeys


@cli.group("api-key")
def api_key() -> None:
    """Keys for the HTTP API (/api/v1/ on mailer serve): create, list, revoke."""


@api_key.command("create")
@click.argument("name")
@pass_app
def create(app: App, name: str) -> None:
    """Make a key called NAME and print it once (only its hash is kept: copy it now)."""
    key = apikeys.create(app.engine, name)
    click.echo(key)
    click.echo(f"API key {name!r} created; it is shown only now. Send it as 'Authorization: Bearer <key>'.", err=True)


@api_key.command("list")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@pass_app
def list_keys(app: App, fmt: str) -> None:
    """The keys by name, when they were made, last used and revoked (never the keys themselves)."""
    rows = [
        (k.name, "revoked" if k.revoked_at else "active", k.created_at, k.last_used_at, k.revoked_at)
        for k in apikeys.listing(app.engine)
    ]
    if not rows and fmt == "table":
        click.echo("no API keys (make one with: mailer api-key create NAME)")
        return
    click.echo(format_rows(["name", "state", "created", "last used", "revoked"], rows, fmt))


@api_key.command("revoke")
@click.argument("name")
@pass_app
def revoke(app: App, name: str) -> None:
    """Revoke the key NAME: calls with it are refused (403) from now on."""
    if apikeys.revoke(app.engine, name):
        click.echo(f"API key {name!r} revoked")
    else:
        click.echo(f"API key {name!r} was revoked already")
