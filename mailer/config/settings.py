"""The settings every other module receives: frozen, typed, read once from ``mailer.toml``."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import Any, Literal

from mailer.errors import MailerError

CONFIG_NAME = "mailer.toml"


OCCASION_KINDS = ("anniversary", "birthday", "milestone", "silence", "follow_up")


MILESTONE_METRICS = ("order_count", "lifetime_spend", "interaction_count", "years_as_customer")


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


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
    final_reply_timeout: float = 600.0  # the reply to the final dot (RFC 5321 4.5.3.2.6: 10 minutes)
    helo_name: str = ""  # the name mailer greets the relay with; "" = this host's FQDN, else the From domain


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
class WebSettings:
    """``[web]``: how ``mailer serve`` sits behind a reverse proxy."""

    # Proxy hops whose X-Forwarded-For/-Proto/-Host/-Prefix are believed; 0 believes none, so a
    # client talking to the port directly cannot pose as another address, scheme or host.
    trusted_proxies: int = 0


@dataclass(frozen=True)
class InboxSettings:
    """``[inbox]``: the mailbox where bounces, complaints and mail to the unsubscribe address arrive."""

    kind: Literal["maildir"]
    path: Path  # a Maildir folder (new/, cur/, tmp/) that the mail server delivers to
    processed: Path  # a Maildir folder for handled mail; default ``<path>/.processed`` (a Maildir++ subfolder)


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
class ImportProfile:
    """One ``[import.profile.NAME]`` table (or a built-in one): how a shop's export maps onto mailer's columns.

    ``columns`` pairs the file's header with mailer's column (an unknown target becomes a custom
    attribute); ``defaults`` fill a column that is absent or empty; ``date_format`` (strptime) reads
    the date columns; ``match_by`` is how an interaction finds its customer; with ``group_lines``
    consecutive lines of one reference (an order's items) are one interaction, amounts summed;
    ``unmapped`` says whether other columns become attributes or are ignored.
    """

    name: str
    kind: Literal["customers", "interactions"] | None = None
    columns: tuple[tuple[str, str], ...] = ()
    defaults: tuple[tuple[str, str], ...] = ()
    date_format: str | None = None
    match_by: Literal["external_id", "email"] = "external_id"
    group_lines: bool = False
    tags_separator: str = ";"
    unmapped: Literal["attributes", "ignore"] = "attributes"
    guest_ids: tuple[str, ...] = ()  # external ids a shop writes for guests (WooCommerce: 0): their address is the id
    # "skip": a row without an address (a shop's phone-only or walk-in customer) is counted and left out,
    # not a bad row: nobody can be emailed there, and such rows are normal in a shop's export.
    without_email: Literal["bad", "skip"] = "bad"
    origin: str = ""  # where it was defined, for error messages: "mailer.toml: [import.profile.shop]" or "built-in"


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
    web: WebSettings = field(default_factory=WebSettings)
    inbox: InboxSettings | None = None  # no [inbox] section: nothing reads returned mail
    import_profiles: tuple[ImportProfile, ...] = ()  # [import.profile.NAME] tables

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def campaign(self, name: str) -> Campaign:
        for campaign in self.campaigns:
            if campaign.name == name:
                return campaign
        hint = suggest(name, [c.name for c in self.campaigns])
        raise ConfigError(f"{self.path.name}: no campaign named {name!r}{hint}")

def suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
