"""``mailer init``, ``mailer demo`` and ``mailer db upgrade``: a project and its store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from mailer import store
from mailer.cli.app import App, cli, pass_app, today
from mailer.cli.tabular import format_rows
from mailer.config import load_settings
from mailer.contacts import importer
from mailer.delivery.report import PassReport
from mailer.outbox import history
from mailer.planning.clock import PassClock
from mailer.service import project, runs
from mailer.store import migrate


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
def init(directory: Path) -> None:
    """Scaffold a project: mailer.toml, templates/email/, sample data, a secret and the store."""
    config = project.init_project(directory, today())
    settings = load_settings(config)
    engine = store.make_engine(settings.store.url)
    store.create_schema(engine)
    filled = project.fill_sample_pools(engine, settings, directory / "data", today(), datetime.now(UTC))
    click.echo(f"created {config}")
    for pool in filled:
        click.echo(f"  {pool.summary()}")
    click.echo(f"  templates: {settings.render.templates}")
    click.echo(f"  sample data: {directory / 'data'}")
    click.echo(f"next: cd {directory} && mailer import customers data/customers.csv && mailer run --dry-run")


@cli.command()
@click.option(
    "--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default="mailer-demo", show_default=True
)
def demo(directory: Path) -> None:
    """The whole job on embedded defaults: project, sample customers, a real pass, .eml files out."""
    day = today()
    config = directory / "mailer.toml"
    if not config.exists():
        project.init_project(directory, day)
        click.echo(f"created a demo project in {directory}/")
    settings = load_settings(config.resolve())
    engine = store.make_engine(settings.store.url)
    store.create_schema(engine)
    data = directory / "data"
    click.echo(importer.import_customers(engine, data / "customers.csv", date_columns=settings.date_columns).summary())
    click.echo(importer.import_interactions(engine, data / "interactions.csv").summary())
    for filled in project.fill_sample_pools(engine, settings, data, day, datetime.now(UTC)):
        click.echo(filled.summary())
    # The same recorded, locked pass as `mailer run --date today`, so `mailer status` sees it.
    with runs.exclusive(settings.store.url, "demo"):
        report = runs.scheduled_pass(engine, settings, PassClock.on(day)).report
    click.echo(f"pass for {day}: {report.summary()}")
    _print_deliveries(engine, report)
    if settings.transport.kind == "maildir":
        click.echo(f"messages are in {settings.transport.path / 'new'}/ (open any .eml in a mail client)")


def _print_deliveries(engine: Engine, report: PassReport) -> None:
    if not report.deliveries:
        click.echo("nothing new to send today (each occasion is sent once; see `mailer log`)")
        return
    with Session(engine) as session:
        rows = history.delivered(session, [row_id for row_id, _ in report.deliveries])
    click.echo(format_rows(["id", "customer", "to", "campaign", "subject"], rows, max_width=56))


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
