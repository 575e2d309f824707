"""Load ``mailer.toml`` into frozen, typed settings.

Finding the file, then one function per section turning its table into settings;
every problem is one line: ``mailer.toml: [section] key: what is wrong``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from datetime import time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from apscheduler.triggers.cron import CronTrigger

from mailer.config.admin import parse_admin
from mailer.config.locales import LocaleProblem, normalize_locale
from mailer.config.profiles import read_import_profiles
from mailer.config.reader import HOSTNAME, Table, email_value, zone_value
from mailer.config.settings import (
    ASK_KINDS,
    CONFIG_NAME,
    DATE_REPEATS,
    GIFT_KINDS,
    MILESTONE_METRICS,
    OCCASION_KINDS,
    WEEKDAYS,
    Campaign,
    ConfigError,
    FeedbackSettings,
    Gift,
    ImapSettings,
    InboxSettings,
    MailgunHookSettings,
    PolicySettings,
    RenderSettings,
    ScheduleSettings,
    SenderSettings,
    SesHookSettings,
    Settings,
    SoftBounces,
    StoreSettings,
    TransportSettings,
    WebhookSettings,
    WebSettings,
    suggest,
)
from mailer.config.sources import crontab_list, source_tables
from mailer.config.watching import parse_watch


def find_config(explicit: str | Path | None) -> Path:
    """``--config``, then ``$MAILER_CONFIG``, then ``./mailer.toml``."""
    candidate = explicit or os.environ.get("MAILER_CONFIG") or CONFIG_NAME
    path = Path(candidate).expanduser()
    if not path.is_file():
        hint = "" if explicit or os.environ.get("MAILER_CONFIG") else "; run `mailer init` to create a project"
        raise ConfigError(f"{path}: no such configuration file{hint}")
    return path.resolve()


def load_settings(path: Path) -> Settings:
    """Read and validate ``path``; raises ConfigError with a one-line message."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path.name}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path.name}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: {exc}") from None
    return parse_settings(raw, path)


def parse_settings(raw: Mapping[str, Any], path: Path) -> Settings:
    name = path.name
    base = path.parent
    top = Table(name, "", raw)
    store = _store(top.table("store"), base)
    sender = _sender(top.table("sender"), base)
    transport = _transport(top.table("transport"), base)
    schedule = _schedule(top.table("schedule"))
    policy = _policy(top.table("policy"))
    render = _render(top.table("render"), base)
    web = _web(top.table("web"))
    inbox = _inbox(top.table("inbox"), base) if "inbox" in top.data else None
    webhooks = _webhooks(top.table("webhooks"), base, urlsplit(sender.unsubscribe_url).path.rstrip("/"))
    feedback = _feedback(top.table("feedback"))
    import_profiles = read_import_profiles(top.table("import"))
    gifts = _gifts(top, sender)
    watch = parse_watch(top, base)
    campaigns = tuple(
        _campaign(Table(name, f"campaign {i + 1}", table), {g.name: g for g in gifts})
        for i, table in enumerate(top.array_of_tables("campaign"))
    )
    sources = source_tables(top, base)
    admin = parse_admin(top, base)
    top.done()
    seen: set[str] = set()
    for campaign in campaigns:
        if campaign.name in seen:
            raise ConfigError(f"{name}: [[campaign]] name: {campaign.name!r} is used twice")
        seen.add(campaign.name)
    return Settings(path, store, sender, transport, schedule, policy, render, campaigns, web, inbox,
                    webhooks=webhooks, feedback=feedback, import_profiles=import_profiles, gifts=gifts, watch=watch,
                    sources=sources, admin=admin)



def _store(t: Table, base: Path) -> StoreSettings:
    url = t.text("url", "sqlite:///mailer.db")
    t.done()
    return StoreSettings(url=resolve_sqlite_url(url, base))


def resolve_sqlite_url(url: str, base: Path) -> str:
    """Relative SQLite paths are relative to the config file, not the working directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str((base / url[len(prefix):]).resolve())
    return url


def _sender(t: Table, base: Path) -> SenderSettings:
    company = t.text("company", required=True)
    from_address = email_value(t, "from_address", t.text("from_address", required=True))
    assert from_address is not None
    reply_to = email_value(t, "reply_to", t.text("reply_to"))
    postal = t.text("postal_address", required=True)
    unsubscribe_url = t.text("unsubscribe_url", required=True)
    if not unsubscribe_url.startswith("https://") and not unsubscribe_url.startswith("http://127.0.0.1"):
        raise t.error("unsubscribe_url", "must be an https:// URL")
    mailto = email_value(t, "unsubscribe_mailto", t.text("unsubscribe_mailto"))
    bounce_address = email_value(t, "bounce_address", t.text("bounce_address")) or ""
    verp = t.flag("verp", False)
    if verp and not bounce_address:
        raise t.error("verp", "needs bounce_address: the address whose +tag names each message")
    if verp and "+" in bounce_address.rpartition("@")[0]:
        raise t.error("bounce_address", "must have no +tag of its own when verp = true (mailer adds one)")
    domain = from_address.rpartition("@")[2]
    settings = SenderSettings(
        company=company,
        from_address=from_address,
        from_name=t.text("from_name", company),
        reply_to=reply_to,
        postal_address=postal,
        website=t.text("website"),
        unsubscribe_url=unsubscribe_url.rstrip("/"),
        unsubscribe_mailto=mailto or f"unsubscribe@{domain}",
        secret=t.secret("secret", base),
        timezone=zone_value(t, "timezone", t.text("timezone", "UTC")),
        dkim_selector=t.text("dkim_selector"),
        dkim_key_file=t.path("dkim_key_file", None, base),
        bounce_address=bounce_address,
        verp=verp,
        locale=_locale(t),
    )
    for key, value in (("company", company), ("from_name", settings.from_name)):
        if any(ch in value for ch in "\r\n\0"):
            raise t.error(key, "must not contain line breaks")
    if settings.dkim_selector and not settings.dkim_key_file:
        raise t.error("dkim_key_file", "is required when dkim_selector is set")
    t.done()
    return settings


def _transport(t: Table, base: Path) -> TransportSettings:
    kind = t.choice("kind", "maildir", ("maildir", "smtp"))
    security = t.choice("security", "starttls", ("starttls", "tls", "none"))
    settings = TransportSettings(
        kind=kind,  # type: ignore[arg-type]
        path=t.path("path", Path("outbox"), base) or base / "outbox",
        host=t.text("host", "localhost"),
        port=t.integer("port", 465 if security == "tls" else 587, minimum=1),
        security=security,  # type: ignore[arg-type]
        username=t.text("username"),
        password=t.secret("password", base),
        ca_file=t.path("ca_file", None, base),
        timeout=t.number("timeout", 30.0, minimum=0.1),
        connections=t.integer("connections", 1, minimum=1),
        rate_per_second=t.number("rate_per_second", 0.0),
        daily_cap=t.integer("daily_cap", 0),
        retry_initial=t.duration("retry_initial", timedelta(minutes=30)),
        retry_max_age=t.duration("retry_max_age", timedelta(days=3)),
        final_reply_timeout=t.number("final_reply_timeout", 600.0, minimum=0.1),
        helo_name=t.text("helo_name", ""),
    )
    if settings.helo_name and not HOSTNAME.fullmatch(settings.helo_name):
        raise t.error("helo_name", f"not a host name: {settings.helo_name!r}")
    if settings.username and not settings.password.is_set:
        raise t.error("password_env", "set password_env or password_file when username is set")
    if settings.username and settings.security == "none":
        raise t.error(
            "username", 'AUTH without TLS would send the password in clear; use security = "starttls" or "tls"'
        )
    t.done()
    return settings


def _schedule(t: Table) -> ScheduleSettings:
    passes = t.items("passes", str, "crontab expressions") or ["5 * * * *"]
    for expression in passes:
        if len(expression.split()) != 5:
            raise t.error("passes", f"expected a 5-field crontab expression, got {expression!r}")
        try:
            CronTrigger.from_crontab(expression)
        except ValueError as exc:
            raise t.error("passes", f"{expression!r}: {exc}") from None
    settings = ScheduleSettings(
        passes=tuple(passes),
        retry_every=t.duration("retry_every", timedelta(minutes=5)),
        inbox_every=t.duration("inbox_every", timedelta(minutes=15)),
        sync=crontab_list(t, "sync"),
    )
    if settings.inbox_every <= timedelta(0):
        raise t.error("inbox_every", "must be a positive duration, e.g. \"15m\"")
    t.done()
    return settings


def _policy(t: Table) -> PolicySettings:
    days = t.items("weekdays", str, 'weekday names ("mon" … "sun")')
    for day in days:
        if day.lower() not in WEEKDAYS:
            raise t.error("weekdays", f"unknown weekday {day!r}{suggest(day.lower(), WEEKDAYS)}")
    settings = PolicySettings(
        min_days_between=t.integer("min_days_between", 7),
        window_start=t.clock("window_start", time(9, 0)),
        window_end=t.clock("window_end", time(17, 0)),
        weekdays=tuple(sorted({WEEKDAYS.index(d.lower()) for d in days})) or tuple(range(7)),
        catch_up_days=t.integer("catch_up_days", 3),
        unhappy_pause_days=t.integer("unhappy_pause_days", 30),
    )
    if settings.window_end <= settings.window_start:
        raise t.error("window_end", "must be later than window_start")
    t.done()
    return settings


def _render(t: Table, base: Path) -> RenderSettings:
    settings = RenderSettings(
        templates=t.path("templates", Path("templates/email"), base) or base,
        inliner=t.choice("inliner", "premailer", ("premailer", "css-inline")),  # type: ignore[arg-type]
        processes=t.integer("processes", 0) if "processes" in t.data else None,
    )
    t.done()
    return settings


def _web(t: Table) -> WebSettings:
    settings = WebSettings(trusted_proxies=t.integer("trusted_proxies", 0))
    t.done()
    return settings


def _inbox(t: Table, base: Path) -> InboxSettings:
    if "kind" not in t.data:
        raise t.error("kind", 'is required ("maildir" or "imap")')
    kind = t.choice("kind", "maildir", ("maildir", "imap"))
    soft_bounces = SoftBounces(
        limit=t.integer("soft_bounce_limit", 3, minimum=1), days=t.integer("soft_bounce_days", 14, minimum=1)
    )
    if kind == "imap":
        imap = _imap(t, base)
        t.done()
        return InboxSettings(kind="imap", imap=imap, soft_bounces=soft_bounces)
    if "path" not in t.data:
        raise t.error("path", "is required: the Maildir folder the mail server delivers to")
    path = t.path("path", None, base)
    assert path is not None
    processed = t.path("processed", None, base) or path / ".processed"
    if processed == path:
        raise t.error("processed", "must be another folder than path, or handled mail would be read again")
    t.done()
    return InboxSettings(kind="maildir", path=path, processed=processed, soft_bounces=soft_bounces)


def _imap(t: Table, base: Path) -> ImapSettings:
    security = t.choice("security", "tls", ("tls", "starttls"))
    settings = ImapSettings(
        host=t.text("host", required=True),
        port=t.integer("port", 993 if security == "tls" else 143, minimum=1),
        security=security,  # type: ignore[arg-type]
        username=t.text("username", required=True),
        password=t.secret("password", base),
        ca_file=t.path("ca_file", None, base),
        folder=t.text("folder", "INBOX"),
        processed_folder=t.text("processed_folder", "Processed"),
        timeout=t.number("timeout", 60.0, minimum=0.1),
    )
    if not settings.password.is_set:
        raise t.error("password_env", "set password_env or password_file (the password never lives in the file)")
    if settings.ca_file is not None and not settings.ca_file.is_file():
        raise t.error("ca_file", f"no such file: {settings.ca_file}")
    if settings.processed_folder == settings.folder:
        raise t.error("processed_folder", "must be another folder than folder, or handled mail would be read again")
    for key, value in (("folder", settings.folder), ("processed_folder", settings.processed_folder)):
        if not value.strip() or any(ch in value for ch in "\r\n\0"):
            raise t.error(key, f"not a folder name: {value!r}")
    return settings


# ---- [webhooks] ---------------------------------------------------------------------------------

_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}")
# A host the SNS certificate may come from: DNS labels or ``*`` (one label), an optional :port or :*.
_HOST_PATTERN = re.compile(r"(?:\*|[A-Za-z0-9-]+)(?:\.(?:\*|[A-Za-z0-9-]+))*(?::(?:\*|\d{1,5}))?")
_URL_PATH = re.compile(r"(?:/[A-Za-z0-9._~-]+)+")


def _webhooks(t: Table, base: Path, prefix: str) -> WebhookSettings:
    """``[webhooks.ses]`` and ``[webhooks.mailgun]``; paths default to ``<unsubscribe_url path>/hooks/<provider>``."""
    ses = _ses_hook(Table(t.file, "webhooks.ses", t.data.pop("ses")), base, prefix) if "ses" in t.data else None
    mailgun = (
        _mailgun_hook(Table(t.file, "webhooks.mailgun", t.data.pop("mailgun")), base, prefix)
        if "mailgun" in t.data
        else None
    )
    t.known += ["ses", "mailgun"]
    t.done()
    if ses and mailgun and ses.path == mailgun.path:
        raise ConfigError(f"{t.file}: [webhooks.mailgun] path: {mailgun.path} is already the SES path")
    return WebhookSettings(ses=ses, mailgun=mailgun)


def _hook_path(t: Table, default: str) -> str:
    path: str = t.text("path", default)
    if not _URL_PATH.fullmatch(path):
        raise t.error("path", f"expected a URL path such as {default!r}, got {path!r}")
    if path.split("/")[-2:-1] == ["u"] or path.endswith("/healthz"):
        raise t.error("path", f"{path} is taken by the unsubscribe endpoint")
    return path


def _ses_hook(t: Table, base: Path, prefix: str) -> SesHookSettings:
    path = _hook_path(t, f"{prefix}/hooks/ses")
    topics = t.items("topics", str, "SNS topic ARNs")
    if not topics:
        raise t.error("topics", 'is required: the SNS topic ARNs SES publishes to, e.g. ["arn:aws:sns:eu-west-1:…"]')
    for topic in topics:
        if not _TOPIC_ARN.fullmatch(topic):
            raise t.error("topics", f"not an SNS topic ARN: {topic!r}")
    defaults = SesHookSettings(path=path, topics=())
    hosts = t.items("cert_hosts", str, "host names") if "cert_hosts" in t.data else list(defaults.cert_hosts)
    if not hosts:
        raise t.error("cert_hosts", "must name at least one host")
    for host in hosts:
        if not _HOST_PATTERN.fullmatch(host) or host.startswith("*"):
            raise t.error("cert_hosts", f"expected a host such as 'sns.*.amazonaws.com', got {host!r}")
    settings = SesHookSettings(
        path=path,
        topics=tuple(topics),
        cert_hosts=tuple(h.lower() for h in hosts),
        ca_file=t.path("ca_file", None, base),
        max_age=t.duration("max_age", defaults.max_age),
    )
    t.done()
    return settings


def _mailgun_hook(t: Table, base: Path, prefix: str) -> MailgunHookSettings:
    path = _hook_path(t, f"{prefix}/hooks/mailgun")
    key = t.secret("signing_key", base)
    if not key.is_set:
        raise t.error("signing_key_env", "set signing_key_env or signing_key_file (Mailgun's HTTP webhook signing key)")
    settings = MailgunHookSettings(path=path, signing_key=key, max_age=t.duration("max_age", timedelta(minutes=5)))
    t.done()
    return settings


def _gifts(top: Table, sender: SenderSettings) -> tuple[Gift, ...]:
    """Every ``[[gift]]``: names and generated-code prefixes unique, so a code names its gift."""
    gifts: list[Gift] = []
    for i, table in enumerate(top.array_of_tables("gift")):
        gift = _gift(Table(top.file, f"gift {i + 1}", table), sender)
        for other in gifts:
            if other.name == gift.name:
                raise ConfigError(f"{top.file}: [[gift]] name: {gift.name!r} is used twice")
            if gift.prefix and other.prefix == gift.prefix:
                raise ConfigError(f"{top.file}: [gift {gift.name}] prefix: {gift.prefix!r} is also {other.name!r}'s")
        gifts.append(gift)
    return tuple(gifts)


def _gift(t: Table, sender: SenderSettings) -> Gift:
    name = t.text("name", required=True)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise t.error("name", f"use letters, digits, '-', '_' or '.', got {name!r}")
    t.section = f"gift {name}"
    if "kind" not in t.data:
        raise t.error("kind", f"is required (one of {', '.join(GIFT_KINDS)})")
    kind = t.choice("kind", "pool", GIFT_KINDS)
    label = t.text("label", required=True).strip()
    if any(ch in label for ch in "\r\n\0"):
        raise t.error("label", "must not contain line breaks")
    prefix = t.text("prefix", "")
    if kind == "generated" and not re.fullmatch(r"[A-Z][A-Z0-9]{0,11}", prefix):
        rule = "a generated gift needs 1-12 capital letters or digits, starting with a letter"
        raise t.error("prefix", f"{rule}, got {prefix!r}")
    if kind == "pool" and prefix:
        raise t.error("prefix", "only generated gifts have a prefix; a pool's codes come from the shop")
    gift = Gift(
        name=name,
        label=label,
        kind=kind,
        secret=sender.secret,
        prefix=prefix,
        valid_days=t.integer("valid_days", 0),
        warn_days=t.integer("warn_days", 30, minimum=1),
    )
    t.done()
    return gift


def _campaign(t: Table, gifts: Mapping[str, Gift]) -> Campaign:
    name = t.text("name", required=True)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise t.error("name", f"use letters, digits, '-', '_' or '.', got {name!r}")
    t.section = f"campaign {name}"
    occasion = t.choice("occasion", "", OCCASION_KINDS) if "occasion" in t.data else None
    if occasion is None:
        raise t.error("occasion", f"is required (one of {', '.join(OCCASION_KINDS)})")
    fields: dict[str, Any] = {
        "name": name,
        "occasion": occasion,
        "template": t.text("template", required=True),
        "priority": t.integer("priority", 0, minimum=None),
        "enabled": t.flag("enabled", True),
        "tags_any": frozenset(t.items("tags_any", str, "tags")),
        "tags_none": frozenset(t.items("tags_none", str, "tags")),
        "label": " ".join(t.text("label", "").split()),  # one line on the preference page
    }
    readers: dict[str, Callable[[], dict[str, Any]]] = {
        "anniversary": lambda: {"years": _positive_ints(t, "years", t.items("years", int, "integers"))},
        "birthday": dict,
        "milestone": lambda: _milestone(t),
        "silence": lambda: {"after_days": _after_days(t, required=True)},
        "follow_up": lambda: _follow_up(t),
        "date": lambda: _date_occasion(t),
    }
    fields.update(readers[occasion]())
    fields.update(_ask(t))
    gift = t.text("gift")
    if gift is not None:
        if gift not in gifts:
            raise t.error("gift", f"no [[gift]] named {gift!r}{suggest(gift, gifts)}")
        fields["gift"] = gifts[gift]
    t.done()
    return Campaign(**fields)


# ---- "how did we do?": the question a campaign asks, and [feedback] --------------------------------

MAX_SCALE = 10


def _ask(t: Table) -> dict[str, Any]:
    """``ask = "rating"`` with ``scale = 5`` (answers 1 to 5) or ``scale = ["Not good", "Fine", "Great"]``."""
    if "ask" not in t.data:
        for key in ("scale", "unhappy_at_most"):
            if key in t.data:
                raise t.error(key, 'goes with ask = "rating"')
        return {}
    ask = t.choice("ask", "rating", ASK_KINDS)
    raw = t._take("scale", 5, (int, list), "a number of steps or a list of labels")
    if isinstance(raw, int):
        if not 2 <= raw <= MAX_SCALE:
            raise t.error("scale", f"must be 2 to {MAX_SCALE} steps, got {raw}")
        labels = tuple(str(n) for n in range(1, raw + 1))
    else:
        if not all(isinstance(label, str) and label.strip() for label in raw):
            raise t.error("scale", "expected a list of labels (text), worst first")
        if not 2 <= len(raw) <= MAX_SCALE:
            raise t.error("scale", f"must have 2 to {MAX_SCALE} labels, got {len(raw)}")
        labels = tuple(" ".join(label.split()) for label in raw)
        if len(set(labels)) != len(labels):
            raise t.error("scale", "each label must be different")
    # By default the lower two fifths are unhappy: 1-2 of 5, 1 of 3, 1-4 of 10.
    threshold = t.integer("unhappy_at_most", max(1, round(len(labels) * 2 / 5)), minimum=0)
    if threshold >= len(labels):
        raise t.error("unhappy_at_most", f"must be below the top answer ({len(labels)}), got {threshold}")
    return {"ask": ask, "scale": labels, "unhappy_at_most": threshold}


def _feedback(t: Table) -> FeedbackSettings:
    settings = FeedbackSettings(
        link_max_age=t.duration("link_max_age", timedelta(days=60)),
        comment_is_unhappy=t.flag("comment_is_unhappy", False),
        count_clicks=t.flag("count_clicks", False),
        handled_link_max_age=t.duration("handled_link_max_age", timedelta(days=30)),
    )
    for key in ("link_max_age", "handled_link_max_age"):
        if getattr(settings, key) <= timedelta(0):
            raise t.error(key, "must be longer than zero")
    t.done()
    return settings


def _locale(t: Table) -> str:
    try:
        return normalize_locale(t.text("locale", "en"))
    except LocaleProblem as exc:
        raise t.error("locale", str(exc)) from None


def _date_occasion(t: Table) -> dict[str, Any]:
    """``occasion = "date"``: which attribute, how often, and how many days before (<0) or after it."""
    attribute = t.text("attribute", required=True).strip()
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", attribute):
        raise t.error("attribute", f"name a column of the customer CSV, such as 'renewal_date', got {attribute!r}")
    repeat = t.choice("repeat", "yearly", DATE_REPEATS)
    offset = t.integer("offset_days", 0, minimum=None)
    if abs(offset) > 366:
        raise t.error("offset_days", f"at most a year before or after the date (-366 to 366), got {offset}")
    return {"attribute": attribute, "repeat": repeat, "offset_days": offset}


def _positive_ints(t: Table, key: str, values: list[int]) -> tuple[int, ...]:
    for value in values:
        if value < 1:
            raise t.error(key, f"must be positive, got {value}")
    return tuple(sorted(set(values)))


def _milestone(t: Table) -> dict[str, Any]:
    metric = t.choice("metric", "order_count", MILESTONE_METRICS)
    thresholds = [float(v) for v in t.items("thresholds", (int, float), "numbers")]  # type: ignore[arg-type]
    if not thresholds:
        raise t.error("thresholds", "is required: a list such as [10, 50, 100]")
    if any(v <= 0 for v in thresholds):
        raise t.error("thresholds", "must all be positive")
    fractions = [v for v in thresholds if not v.is_integer()]
    if metric != "lifetime_spend" and fractions:
        raise t.error("thresholds", f"{metric} counts whole numbers, got {fractions[0]:g}")
    return {"metric": metric, "thresholds": tuple(sorted(set(thresholds)))}


def _after_days(t: Table, *, required: bool) -> tuple[int, ...]:
    raw = t._take("after_days", None, (int, list), "a number of days or a list of them")
    if raw is None:
        if required:
            raise t.error("after_days", "is required, e.g. 90 or [30, 60, 90]")
        return ()
    values = [raw] if isinstance(raw, int) else raw
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise t.error("after_days", f"expected whole days, got {raw!r}")
    return _positive_ints(t, "after_days", values)


def _follow_up(t: Table) -> dict[str, Any]:
    days = _after_days(t, required=True)
    if len(days) != 1:
        raise t.error("after_days", "a follow-up waits one number of days, e.g. 7")
    kind = t.text("interaction_kind", "order").strip().lower()
    # The importer lower-cases kinds and allows only these characters: anything else never matches.
    if not re.fullmatch(r"[a-z0-9_-]+", kind):
        rule = "use letters, digits, '-' or '_' (like the import's kind column)"
        raise t.error("interaction_kind", f"{rule}, got {kind!r}")
    return {"after_days": days, "interaction_kind": kind}
