"""The ``mailer`` group and what every command shares: the settings and the store, built lazily.

Every user-fixable problem is a MailerError, shown as one line on stderr with
exit status 2; the traceback appears only with ``-v``.
"""

from __future__ import annotations

import traceback
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, NoReturn

import click
from sqlalchemy import Engine

from mailer import logs, store
from mailer.config import Settings, find_config, load_settings
from mailer.errors import MailerError
from mailer.service import preflight


class UserError(click.ClickException):
    """A MailerError on its way out: printed as is, exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        for line in self.format_message().splitlines() or [""]:
            click.echo(f"error: {line}" if not line.startswith(("error:",)) else line, err=True)


class UnreachableError(UserError):
    """A server mailer needs could not be used (mailer.errors.Unreachable): exit status 1."""

    exit_code = 1


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
        """The settings, once mailer/service/preflight.py finds nothing wrong; else MailerError with a line per problem.

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
            raise (UnreachableError if exc.exit_status == 1 else UserError)(str(exc)) from None


@click.group(cls=MailerGroup)
@click.option(
    "--config", "config", envvar="MAILER_CONFIG", metavar="FILE", help="mailer.toml to use (default: ./mailer.toml)."
)
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


def today() -> date:
    return date.today()


def parse_now(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        example = "2026-11-23T09:30:00+00:00"
        raise click.BadParameter(f"expected an ISO timestamp such as {example}, got {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
