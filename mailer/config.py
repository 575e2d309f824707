"""Load ``mailer.toml`` into frozen, typed settings.

This is the only module that reads configuration from files or the
environment. Everything else receives a :class:`Settings`. Every problem is
reported as one line: ``mailer.toml: [section] key: what is wrong``.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import time, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from email_validator import EmailNotValidError, validate_email

from mailer.addresses import ascii_domain
from mailer.errors import MailerError

CONFIG_NAME = "mailer.toml"
OCCASION_KINDS = ("anniversary", "birthday", "milestone", "silence", "follow_up")
MILESTONE_METRICS = ("order_count", "lifetime_spend", "interaction_count", "years_as_customer")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

T = TypeVar("T")


class ConfigError(MailerError):
    """A missing, unreadable or invalid configuration value."""


@dataclass(frozen=True)
class Secret:
    """Where a secret lives; the value is read only when needed, never printed."""

    env: str | None = None
    file: Path | None = None
    origin: str = "secret"

    def __repr__(self) -> str:
        where = f"env {self.env}" if self.env else f"file {self.file}" if self.file else "unset"
        return f"Secret({where})"

    @property
    def is_set(self) -> bool:
        return bool(self.env or self.file)

    def reveal(self) -> str:
        """Return the secret's value; raises ConfigError naming where it was looked for."""
        if self.env:
            value = os.environ.get(self.env)
            if not value:
                raise ConfigError(f"{self.origin}: environment variable {self.env} is not set")
            return value
        if self.file:
            try:
                value = self.file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{self.origin}: cannot read {self.file}: {exc.strerror}") from None
            if not value:
                raise ConfigError(f"{self.origin}: {self.file} is empty")
            return value
        raise ConfigError(f"{self.origin}: not configured (set *_env or *_file)")


@dataclass(frozen=True)
class StoreSettings:
    url: str = "sqlite:///mailer.db"


@dataclass(frozen=True)
class SenderSettings:
    company: str
    from_address: str
    postal_address: str
    unsubscribe_url: str
    secret: Secret
    from_name: str = ""
    reply_to: str | None = None
    website: str | None = None
    unsubscribe_mailto: str = ""
    timezone: str = "UTC"
    dkim_selector: str | None = None
    dkim_key_file: Path | None = None

    @property
    def domain(self) -> str:
        return self.from_address.rpartition("@")[2]


@dataclass(frozen=True)
class TransportSettings:
    kind: Literal["maildir", "smtp"] = "maildir"
    path: Path = Path("outbox")
    host: str = "localhost"
    port: int = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: Secret = field(default_factory=Secret)
    ca_file: Path | None = None
    timeout: float = 30.0
    connections: int = 1
    rate_per_second: float = 0.0
    daily_cap: int = 0
    retry_initial: timedelta = timedelta(minutes=30)
    retry_max_age: timedelta = timedelta(days=3)
    helo_name: str = ""  # the name mailer greets the relay with; "" = the transport's default


@dataclass(frozen=True)
class ScheduleSettings:
    passes: tuple[str, ...] = ("5 * * * *",)
    retry_every: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class PolicySettings:
    min_days_between: int = 7
    window_start: time = time(9, 0)
    window_end: time = time(17, 0)
    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    catch_up_days: int = 3


@dataclass(frozen=True)
class RenderSettings:
    templates: Path = Path("templates/email")
    inliner: Literal["premailer", "css-inline"] = "premailer"
    processes: int | None = None  # rendering processes for large passes; None: one per core but one, 0: none


@dataclass(frozen=True)
class Campaign:
    """One ``[[campaign]]`` table: which occasion, for whom, with which template."""

    name: str
    occasion: str
    template: str
    priority: int = 0
    enabled: bool = True
    tags_any: frozenset[str] = frozenset()
    tags_none: frozenset[str] = frozenset()
    # anniversary
    years: tuple[int, ...] = ()
    # milestone
    metric: str = ""
    thresholds: tuple[float, ...] = ()
    # silence (a series of steps) and follow_up (one delay)
    after_days: tuple[int, ...] = ()
    interaction_kind: str = ""


@dataclass(frozen=True)
class Settings:
    path: Path
    store: StoreSettings
    sender: SenderSettings
    transport: TransportSettings
    schedule: ScheduleSettings
    policy: PolicySettings
    render: RenderSettings
    campaigns: tuple[Campaign, ...]

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def campaign(self, name: str) -> Campaign:
        for campaign in self.campaigns:
            if campaign.name == name:
                return campaign
        raise ConfigError(f"{self.path.name}: no campaign named {name!r}{_suggest(name, [c.name for c in self.campaigns])}")


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
    top = _Table(name, "", raw)
    store = _store(top.table("store"), base)
    sender = _sender(top.table("sender"), base)
    transport = _transport(top.table("transport"), base)
    if not transport.helo_name:
        transport = replace(transport, helo_name=default_helo_name(sender.domain))
    schedule = _schedule(top.table("schedule"))
    policy = _policy(top.table("policy"))
    render = _render(top.table("render"), base)
    campaigns = tuple(
        _campaign(_Table(name, f"campaign {i + 1}", table))
        for i, table in enumerate(top.array_of_tables("campaign"))
    )
    top.done()
    seen: set[str] = set()
    for campaign in campaigns:
        if campaign.name in seen:
            raise ConfigError(f"{name}: [[campaign]] name: {campaign.name!r} is used twice")
        seen.add(campaign.name)
    return Settings(path, store, sender, transport, schedule, policy, render, campaigns)


class _Table:
    """Typed, consuming access to one TOML table, so leftovers can be reported as typos."""

    def __init__(self, file: str, section: str, data: Any) -> None:
        self.file = file
        self.section = section
        if not isinstance(data, Mapping):
            raise ConfigError(f"{file}: [{section}]: expected a table")
        self.data = dict(data)
        self.known: list[str] = []

    def error(self, key: str, problem: str) -> ConfigError:
        where = f"[{self.section}] " if self.section else ""
        return ConfigError(f"{self.file}: {where}{key}: {problem}")

    def _take(self, key: str, default: T, kinds: tuple[type, ...], kind_name: str) -> Any:
        self.known.append(key)
        if key not in self.data:
            return default
        value = self.data.pop(key)
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(key, f"expected {kind_name}, got {value!r}")
        if not isinstance(value, kinds):
            raise self.error(key, f"expected {kind_name}, got {value!r}")
        return value

    def text(self, key: str, default: Any = None, *, required: bool = False) -> Any:
        if required and key not in self.data:
            self.known.append(key)
            raise self.error(key, "is required")
        value = self._take(key, default, (str,), "a string")
        if isinstance(value, str) and required and not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def integer(self, key: str, default: int, *, minimum: int | None = 0) -> int:
        value: int = self._take(key, default, (int,), "an integer")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}")
        return value

    def number(self, key: str, default: float, *, minimum: float = 0) -> float:
        value = float(self._take(key, default, (int, float), "a number"))
        if value < minimum:
            raise self.error(key, f"must be at least {minimum:g}, got {value:g}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value: bool = self._take(key, default, (bool,), "true or false")
        return value

    def items(self, key: str, item: type, item_name: str) -> list[Any]:
        value = self._take(key, [], (list,), f"a list of {item_name}")
        for element in value:
            if isinstance(element, bool) or not isinstance(element, item):
                raise self.error(key, f"expected a list of {item_name}, got {element!r}")
        return list(value)

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value: str = self.text(key, default)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}, got {value!r}{_suggest(value, choices)}")
        return value

    def duration(self, key: str, default: timedelta) -> timedelta:
        value = self._take(key, None, (str, int), 'a duration such as "30m", "6h" or "3d"')
        if value is None:
            return default
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def clock(self, key: str, default: time) -> time:
        value = self.text(key, None)
        if value is None:
            return default
        try:
            return time.fromisoformat(value)
        except ValueError:
            raise self.error(key, f'expected a time of day like "09:00", got {value!r}') from None

    def path(self, key: str, default: Path | None, base: Path) -> Path | None:
        value = self.text(key, None)
        if value is None:
            return default if default is None or default.is_absolute() else base / default
        return (base / Path(value).expanduser()).resolve()

    def secret(self, prefix: str, base: Path) -> Secret:
        env = self.text(f"{prefix}_env")
        file = self.path(f"{prefix}_file", None, base)
        if prefix in self.data:
            raise self.error(prefix, f"secrets never live in the file; use {prefix}_env or {prefix}_file")
        if env and file:
            raise self.error(f"{prefix}_env", f"set {prefix}_env or {prefix}_file, not both")
        where = f"[{self.section}] {prefix}_env" if env else f"[{self.section}] {prefix}_file"
        return Secret(env=env, file=file, origin=f"{self.file}: {where}")

    def table(self, key: str) -> _Table:
        self.known.append(key)
        return _Table(self.file, key, self.data.pop(key, {}))

    def array_of_tables(self, key: str) -> list[Any]:
        self.known.append(key)
        value = self.data.pop(key, [])
        if not isinstance(value, list):
            raise self.error(key, f"use [[{key}]] tables")
        return value

    def done(self) -> None:
        """Reject keys nobody asked for: they are typos or misplaced settings."""
        for key in self.data:
            raise self.error(key, f"unknown key{_suggest(key, self.known)}")


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")


@functools.cache
def default_helo_name(from_domain: str = "") -> str:
    """The machine's FQDN when it is a real one (has a dot, is not localhost), else the From domain.

    Filters score a HELO name that does not resolve, and ``localhost`` never does.
    Looked up once: smtplib would otherwise resolve it for every connection.
    """
    fqdn = socket.getfqdn()
    if "." in fqdn and not fqdn.startswith("localhost"):
        return fqdn
    return ascii_domain(from_domain) if from_domain else fqdn


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(value: str | int) -> timedelta:
    """``"30m"``, ``"6h"``, ``"3d"``, ``"45s"`` or a number of seconds."""
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"must be positive, got {value}")
        return timedelta(seconds=value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f'expected a duration such as "30m", "6h" or "3d", got {value!r}')
    amount = float(match.group(1))
    if amount <= 0:
        raise ValueError(f"must be positive, got {value!r}")
    return timedelta(**{_UNITS[match.group(2)]: amount})


def _email(table: _Table, key: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise table.error(key, f"not a valid address ({exc})") from None


def _zone(table: _Table, key: str, value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise table.error(key, f"unknown time zone {value!r}") from None
    return value


def _store(t: _Table, base: Path) -> StoreSettings:
    url = t.text("url", "sqlite:///mailer.db")
    t.done()
    return StoreSettings(url=resolve_sqlite_url(url, base))


def resolve_sqlite_url(url: str, base: Path) -> str:
    """Relative SQLite paths are relative to the config file, not the working directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str((base / url[len(prefix):]).resolve())
    return url


def _sender(t: _Table, base: Path) -> SenderSettings:
    company = t.text("company", required=True)
    from_address = _email(t, "from_address", t.text("from_address", required=True))
    assert from_address is not None
    reply_to = _email(t, "reply_to", t.text("reply_to"))
    postal = t.text("postal_address", required=True)
    unsubscribe_url = t.text("unsubscribe_url", required=True)
    if not unsubscribe_url.startswith("https://") and not unsubscribe_url.startswith("http://127.0.0.1"):
        raise t.error("unsubscribe_url", "must be an https:// URL")
    mailto = _email(t, "unsubscribe_mailto", t.text("unsubscribe_mailto"))
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
        timezone=_zone(t, "timezone", t.text("timezone", "UTC")),
        dkim_selector=t.text("dkim_selector"),
        dkim_key_file=t.path("dkim_key_file", None, base),
    )
    for key, value in (("company", company), ("from_name", settings.from_name)):
        if any(ch in value for ch in "\r\n\0"):
            raise t.error(key, "must not contain line breaks")
    if settings.dkim_selector and not settings.dkim_key_file:
        raise t.error("dkim_key_file", "is required when dkim_selector is set")
    t.done()
    return settings


def _transport(t: _Table, base: Path) -> TransportSettings:
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
        helo_name=t.text("helo_name", ""),
    )
    if settings.helo_name and not _HOSTNAME.fullmatch(settings.helo_name):
        raise t.error("helo_name", f"not a host name: {settings.helo_name!r}")
    if settings.username and not settings.password.is_set:
        raise t.error("password_env", "set password_env or password_file when username is set")
    if settings.username and settings.security == "none":
        raise t.error(
            "username", 'AUTH without TLS would send the password in clear; use security = "starttls" or "tls"'
        )
    t.done()
    return settings


def _schedule(t: _Table) -> ScheduleSettings:
    passes = t.items("passes", str, "crontab expressions") or ["5 * * * *"]
    for expression in passes:
        if len(expression.split()) != 5:
            raise t.error("passes", f"expected a 5-field crontab expression, got {expression!r}")
        try:
            CronTrigger.from_crontab(expression)
        except ValueError as exc:
            raise t.error("passes", f"{expression!r}: {exc}") from None
    settings = ScheduleSettings(passes=tuple(passes), retry_every=t.duration("retry_every", timedelta(minutes=5)))
    t.done()
    return settings


def _policy(t: _Table) -> PolicySettings:
    days = t.items("weekdays", str, 'weekday names ("mon" … "sun")')
    for day in days:
        if day.lower() not in WEEKDAYS:
            raise t.error("weekdays", f"unknown weekday {day!r}{_suggest(day.lower(), WEEKDAYS)}")
    settings = PolicySettings(
        min_days_between=t.integer("min_days_between", 7),
        window_start=t.clock("window_start", time(9, 0)),
        window_end=t.clock("window_end", time(17, 0)),
        weekdays=tuple(sorted({WEEKDAYS.index(d.lower()) for d in days})) or tuple(range(7)),
        catch_up_days=t.integer("catch_up_days", 3),
    )
    if settings.window_end <= settings.window_start:
        raise t.error("window_end", "must be later than window_start")
    t.done()
    return settings


def _render(t: _Table, base: Path) -> RenderSettings:
    settings = RenderSettings(
        templates=t.path("templates", Path("templates/email"), base) or base,
        inliner=t.choice("inliner", "premailer", ("premailer", "css-inline")),  # type: ignore[arg-type]
        processes=t.integer("processes", 0) if "processes" in t.data else None,
    )
    t.done()
    return settings


def _campaign(t: _Table) -> Campaign:
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
    }
    readers: dict[str, Callable[[], dict[str, Any]]] = {
        "anniversary": lambda: {"years": _positive_ints(t, "years", t.items("years", int, "integers"))},
        "birthday": dict,
        "milestone": lambda: _milestone(t),
        "silence": lambda: {"after_days": _after_days(t, required=True)},
        "follow_up": lambda: _follow_up(t),
    }
    fields.update(readers[occasion]())
    t.done()
    return Campaign(**fields)


def _positive_ints(t: _Table, key: str, values: list[int]) -> tuple[int, ...]:
    for value in values:
        if value < 1:
            raise t.error(key, f"must be positive, got {value}")
    return tuple(sorted(set(values)))


def _milestone(t: _Table) -> dict[str, Any]:
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


def _after_days(t: _Table, *, required: bool) -> tuple[int, ...]:
    raw = t._take("after_days", None, (int, list), "a number of days or a list of them")
    if raw is None:
        if required:
            raise t.error("after_days", "is required, e.g. 90 or [30, 60, 90]")
        return ()
    values = [raw] if isinstance(raw, int) else raw
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise t.error("after_days", f"expected whole days, got {raw!r}")
    return _positive_ints(t, "after_days", values)


def _follow_up(t: _Table) -> dict[str, Any]:
    days = _after_days(t, required=True)
    if len(days) != 1:
        raise t.error("after_days", "a follow-up waits one number of days, e.g. 7")
    kind = t.text("interaction_kind", "order").strip().lower()
    # The importer lower-cases kinds and allows only these characters: anything else never matches.
    if not re.fullmatch(r"[a-z0-9_-]+", kind):
        raise t.error("interaction_kind", f"use letters, digits, '-' or '_' (like the import's kind column), got {kind!r}")
    return {"after_days": days, "interaction_kind": kind}
