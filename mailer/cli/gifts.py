"""``mailer gifts``: the pools (left, given, returned, expired), importing codes, checking one, the shop's export."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
from sqlmodel import Session

from mailer.cli.app import App, cli, pass_app, today
from mailer.cli.tabular import FORMATS, format_rows
from mailer.config import Gift
from mailer.contacts import giftpool
from mailer.errors import MailerError
from mailer.outbox import gifts
from mailer.outbox.giftcodes import BadCode, CodeMaker, prefix_of

EXPORT_HEADERS = (
    "code", "external_id", "campaign", "occasion_key", "occasion_date", "given_at", "expires", "email_status",
)


@cli.group("gifts", invoke_without_command=True)
@click.pass_context
def gifts_group(ctx: click.Context) -> None:
    """Gifts given with campaigns' emails; alone, the same as `mailer gifts list`."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_gifts)


@gifts_group.command("list")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@pass_app
def list_gifts(app: App, fmt: str = "table") -> None:
    """Each gift: codes left, given, returned, expired (and generated codes voided)."""
    settings = app.settings
    if not settings.gifts:
        click.echo("no gifts configured: add a [[gift]] table to mailer.toml and name it in a campaign (gift = …)")
        return
    with Session(app.engine) as session:
        rows = gifts.counts(session, settings.gifts, today())
    headers = ["gift", "kind", "label", "left", "given", "returned", "expired", "void"]
    table = [
        (r.name, r.kind, r.label, "unlimited" if r.left is None else r.left, r.given, r.returned, r.expired, r.void)
        for r in rows
    ]
    click.echo(format_rows(headers, table, fmt))


@gifts_group.command("import")
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def import_codes(app: App, name: str, file: Path) -> None:
    """Add the codes of FILE (CSV: code[,expires]) to gift NAME's pool: all of them, or none."""
    gift = _pool(app, name)
    report = giftpool.import_codes(app.engine, gift.name, file, today(), datetime.now(UTC))
    click.echo(report.summary())


@gifts_group.command("check")
@click.argument("code")
@pass_app
def check(app: App, code: str) -> None:
    """Is CODE one of ours? A generated code is verified offline; what the store knows about it is shown too."""
    settings = app.settings
    verdict = 1
    generated = [g for g in settings.gifts if g.kind == "generated" and g.prefix == prefix_of(code)]
    for gift in generated:
        try:
            verified = CodeMaker(gift.secret.reveal(), gift.prefix).verify(code)
        except BadCode as exc:
            click.echo(f"{code}: not a valid {gift.name!r} code: {exc}")
            continue
        made = f"made for send-log row {verified.serial}"
        click.echo(f"{verified.code}: genuine {gift.name!r} code ({gift.label}), {made}")
        code = verified.code
        verdict = 0
    try:
        with Session(app.engine) as session:
            found = gifts.look_up(session, code)
    except MailerError as exc:
        if not generated:
            raise
        click.echo(f"(the store cannot be read, so only the signature was checked: {exc})")
        found = []
    for record in found:
        click.echo(_describe(record))
        verdict = 0 if record.state != "void" else verdict
    if not generated and not found:
        click.echo(f"{code}: not a code of any gift (no generated prefix matches, and no pool holds it)")
    click.get_current_context().exit(verdict)


def _describe(record: gifts.CodeRecord) -> str:
    head = f"{record.code}: gift {record.gift!r}, {record.state}"
    if record.given is not None:
        given = record.given
        until = f", good until {given.expires}" if given.expires else ""
        return (
            f"{head} to customer {given.external_id} for {given.occasion_key} ({given.campaign}) "
            f"on {given.given_at:%Y-%m-%d}{until}; the email is {given.status}"
        )
    until = f", expires {record.expires_on}" if record.expires_on else ""
    why = f" ({record.note})" if record.note else ""
    return f"{head}{until}{why}"


@gifts_group.command("export")
@click.argument("name")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="Only codes given on or after this day (UTC).")
@click.option("--format", "fmt", type=click.Choice(("csv", "json")), default="csv", show_default=True)
@pass_app
def export(app: App, name: str, since: datetime | None, fmt: str) -> None:
    """Codes of gift NAME given with emails: customer, occasion and expiry, for the shop to honour and reconcile."""
    gift = app.settings.gift(name)
    with Session(app.engine) as session:
        rows = gifts.given(session, gift.name, since.replace(tzinfo=UTC) if since else None)
    table = [
        (g.code, g.external_id, g.campaign, g.occasion_key, g.occasion_date, g.given_at, g.expires, g.status)
        for g in rows
    ]
    click.echo(format_rows(EXPORT_HEADERS, table, fmt))


def _pool(app: App, name: str) -> Gift:
    gift = app.settings.gift(name)
    if gift.kind != "pool":
        raise MailerError(f"gift {name!r} is {gift.kind}: mailer makes its codes, there is no pool to import into")
    return gift
