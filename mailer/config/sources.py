"""``[[source]]`` tables and ``[schedule] sync``: where the store is fed from, checked when the file is read."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from mailer.config.reader import Table
from mailer.config.settings import ConfigError, Secret, SourceSettings

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def crontab_list(t: Table, key: str) -> tuple[str, ...]:
    """A list of 5-field crontab expressions (empty when the key is absent)."""
    expressions = t.items(key, str, "crontab expressions")
    for expression in expressions:
        if len(expression.split()) != 5:
            raise t.error(key, f"expected a 5-field crontab expression, got {expression!r}")
        try:
            CronTrigger.from_crontab(expression)
        except ValueError as exc:
            raise t.error(key, f"{expression!r}: {exc}") from None
    return tuple(expressions)


def source_tables(top: Table, base: Path) -> tuple[SourceSettings, ...]:
    sources = tuple(_source(Table(top.file, f"source {i + 1}", raw), base)
                    for i, raw in enumerate(top.array_of_tables("source")))
    seen: set[str] = set()
    for source in sources:
        if source.name in seen:
            raise ConfigError(f"{top.file}: [[source]] name: {source.name!r} is used twice")
        seen.add(source.name)
    return sources


def _source(t: Table, base: Path) -> SourceSettings:
    name = t.text("name", required=True)
    if not _NAME.fullmatch(name):
        raise t.error("name", f"use letters, digits, '-', '_' or '.', got {name!r}")
    t.section = f"source {name}"
    if "kind" not in t.data:
        raise t.error("kind", 'is required ("sql" or "folder")')
    kind = t.choice("kind", "sql", ("sql", "folder"))
    alert_after = t.duration("alert_after", timedelta(hours=6))
    source = _sql(t, name, alert_after, base) if kind == "sql" else _folder(t, name, alert_after, base)
    t.done()
    return source


def _sql(t: Table, name: str, alert_after: timedelta, base: Path) -> SourceSettings:
    url = t.text("url", "")
    secret = t.secret("url", base) if ("url_env" in t.data or "url_file" in t.data) else None
    if url and secret is not None:
        raise t.error("url", "set url, url_env or url_file, not two of them")
    if not url and secret is None:
        raise t.error("url", "is required (url_env or url_file when the URL holds a password)")
    if url:
        url = _plain_url(t, url, base)
    customers = _query(t, "customers")
    interactions = _query(t, "interactions")
    if not customers and not interactions:
        raise t.error("customers", "a sql source needs a customers query, an interactions query or both")
    updated = t.text("updated_column", "")
    if updated and not _COLUMN.fullmatch(updated):
        raise t.error("updated_column", f"expected a column name, got {updated!r}")
    return SourceSettings(
        name=name, kind="sql", alert_after=alert_after, url=url, url_secret=secret or Secret(),
        customers=customers, interactions=interactions, updated_column=updated,
    )


def _plain_url(t: Table, url: str, base: Path) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise t.error("url", "not a database URL such as \"postgresql+psycopg://shop@db/shop\"") from None
    if parsed.password:
        raise t.error("url", "holds a password: move the URL to url_env or url_file")
    database = parsed.database
    if parsed.drivername.startswith("sqlite") and database and database != ":memory:":
        # A relative SQLite path is relative to mailer.toml, as the store's is.
        return parsed.set(database=str((base / Path(database).expanduser()).resolve())).render_as_string(
            hide_password=False
        )
    return url


def _query(t: Table, key: str) -> str:
    query: str = t.text(key, "")
    query = query.strip().rstrip(";").strip()
    if query and not re.match(r"(?is)\s*(select|with)\b", query):
        raise t.error(key, "must be a SELECT query (the source is only read)")
    return query


def _folder(t: Table, name: str, alert_after: timedelta, base: Path) -> SourceSettings:
    if "path" not in t.data:
        raise t.error("path", "is required: the folder CSV files are dropped into")
    path = t.path("path", None, base)
    return SourceSettings(
        name=name, kind="folder", alert_after=alert_after, path=path,
        settle=t.duration("settle", timedelta(minutes=1)),
    )
