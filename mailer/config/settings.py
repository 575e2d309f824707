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


GIFT_KINDS = ("pool", "generated")


@dataclass(frozen=True)
class Gift:
    """One ``[[gift]]`` table: what a campaign gives with its thanks, and where its codes come from.

    ``pool``: codes the shop imported (``mailer gifts import``); ``generated``: codes
    mailer makes from ``prefix`` and the signing secret (``secret``, the sender's).
    """

    name: str
    label: str
    kind: str
    secret: Secret
    prefix: str = ""
    valid_days: int = 0  # 0: a code is good until its own expiry (pool) or forever (generated)
    warn_days: int = 30  # `mailer status` warns when the pool will not last this many days


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
    gift: Gift | None = None  # given with every email of the campaign, exactly once per occasion


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
    gifts: tuple[Gift, ...] = ()

    def gift(self, name: str) -> Gift:
        for gift in self.gifts:
            if gift.name == name:
                return gift
        hint = suggest(name, [g.name for g in self.gifts])
        raise ConfigError(f"{self.path.name}: no gift named {name!r}{hint}")

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
