"""``[metrics]``, ``[alerts]`` and ``[[webhook]]``: how mailer is watched, read from ``mailer.toml``."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from mailer.config.reader import Table, email_value
from mailer.config.settings import (
    EVENT_KINDS,
    AlertSettings,
    ConfigError,
    EventHookSettings,
    MetricsSettings,
    WatchSettings,
    suggest,
)

_HOOK_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def parse_watch(top: Table, base: Path) -> WatchSettings:
    """Consume ``metrics``, ``alerts`` and ``webhook`` from the top table."""
    metrics = _metrics(top.table("metrics"), base)
    alerts = _alerts(top.table("alerts"), base)
    tables = top.array_of_tables("webhook")
    hooks = tuple(_hook(Table(top.file, f"webhook {i + 1}", table), base) for i, table in enumerate(tables))
    names = [hook.name for hook in hooks]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{top.file}: [[webhook]] name: {name!r} is used twice")
    return WatchSettings(metrics=metrics, alerts=alerts, webhooks=hooks)


def _metrics(t: Table, base: Path) -> MetricsSettings:
    settings = MetricsSettings(enabled=t.flag("enabled", True), token=t.secret("token", base))
    t.done()
    return settings


def _alerts(t: Table, base: Path) -> AlertSettings:
    url = t.secret("webhook_url", base)
    raw = t.data.get("email")
    emails = [raw] if isinstance(raw, str) else t.items("email", str, "addresses") if raw is not None else []
    if isinstance(raw, str):
        t.data.pop("email")
        t.known.append("email")
    settings = AlertSettings(
        webhook_url=url,
        email=tuple(email_value(t, "email", e) or "" for e in emails),
        ca_file=t.path("ca_file", None, base),
    )
    t.done()
    return settings


def _hook(t: Table, base: Path) -> EventHookSettings:
    name = t.text("name", required=True)
    if not _HOOK_NAME.fullmatch(name):
        raise t.error("name", f"use letters, digits, '-', '_' or '.', got {name!r}")
    t.section = f"webhook {name}"
    url = t.secret("url", base)
    if not url.is_set:
        raise t.error("url_env", "set url_env or url_file (the receiver's URL is kept out of the file)")
    secret = t.secret("secret", base)
    if not secret.is_set:
        raise t.error("secret_env", "set secret_env or secret_file (the key that signs every event)")
    events = t.items("events", str, "event kinds") if "events" in t.data else list(EVENT_KINDS)
    for kind in events:
        if kind not in EVENT_KINDS:
            hint = suggest(kind, EVENT_KINDS)
            raise t.error("events", f"unknown event {kind!r}{hint}; one of {', '.join(EVENT_KINDS)}")
    if not events:
        raise t.error("events", f"name at least one of {', '.join(EVENT_KINDS)}")
    settings = EventHookSettings(
        name=name,
        url=url,
        secret=secret,
        events=tuple(dict.fromkeys(events)),
        timeout=t.number("timeout", 10.0, minimum=0.1),
        max_age=t.duration("max_age", timedelta(days=3)),
        ca_file=t.path("ca_file", None, base),
    )
    t.done()
    return settings
