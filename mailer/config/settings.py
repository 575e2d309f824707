"""The settings every other module receives: frozen, typed, read once from ``mailer.toml``."""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import Any, Literal

from mailer.errors import MailerError

CONFIG_NAME = "mailer.toml"


OCCASION_KINDS = ("anniversary", "birthday", "milestone", "silence", "follow_up", "date")


DATE_REPEATS = ("yearly", "once")  # occasion = "date": every year on the month/day, or on the date only


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
    # The envelope sender (MAIL FROM): where bounces go. "" = from_address. With verp, each message's
    # envelope is bounce+<its Message-ID's left part>@domain, so a bounce names the message it is for.
    bounce_address: str = ""
    verp: bool = False
    locale: str = "en"  # BCP 47: the language of the default templates, and of customers without a locale

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
    inbox_every: timedelta = timedelta(minutes=15)  # how often the daemon reads the [inbox]; only with one


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
class ImapSettings:
    """``[inbox] kind = "imap"``: the IMAP mailbox, read over verified TLS."""

    host: str
    username: str
    password: Secret
    port: int = 993
    security: Literal["tls", "starttls"] = "tls"  # implicit TLS (993) or STARTTLS (143); never plain text
    ca_file: Path | None = None  # a private CA to trust instead of the system's
    folder: str = "INBOX"
    processed_folder: str = "Processed"  # created when missing
    timeout: float = 60.0


@dataclass(frozen=True)
class SoftBounces:
    """Transient failures (4.x.x, "delayed", 4xx at RCPT after every retry) that suppress an address."""

    limit: int = 3  # this many, for different messages, ...
    days: int = 14  # ... within this many days


@dataclass(frozen=True)
class InboxSettings:
    """``[inbox]``: the mailbox where bounces, complaints and mail to the unsubscribe address arrive."""

    kind: Literal["maildir", "imap"]
    path: Path | None = None  # maildir: a Maildir folder (new/, cur/, tmp/) that the mail server delivers to
    processed: Path | None = None  # maildir: for handled mail; default ``<path>/.processed`` (Maildir++)
    imap: ImapSettings | None = None  # imap: where and how to log in
    soft_bounces: SoftBounces = field(default_factory=SoftBounces)


@dataclass(frozen=True)
class SesHookSettings:
    """``[webhooks.ses]``: Amazon SES feedback delivered by SNS to ``mailer serve``."""

    path: str  # where SNS POSTs, e.g. /mailer/hooks/ses
    topics: tuple[str, ...]  # the topic ARNs whose messages (and subscription requests) are accepted
    # Hosts the signing certificate and the subscription link may come from; each ``*`` is one DNS label.
    cert_hosts: tuple[str, ...] = ("sns.*.amazonaws.com", "sns.*.amazonaws.com.cn")
    ca_file: Path | None = None  # CA bundle for fetching them; None: the system's
    max_age: timedelta = timedelta(days=1)  # older messages are refused (a replay, not SNS retrying)


@dataclass(frozen=True)
class MailgunHookSettings:
    """``[webhooks.mailgun]``: Mailgun's signed event webhooks."""

    path: str  # e.g. /mailer/hooks/mailgun
    signing_key: Secret  # the HTTP webhook signing key, from env or file
    max_age: timedelta = timedelta(minutes=5)  # a signature older than this is refused as stale


@dataclass(frozen=True)
class WebhookSettings:
    """``[webhooks]``: relays that report bounces, complaints and unsubscribes over HTTP."""

    ses: SesHookSettings | None = None
    mailgun: MailgunHookSettings | None = None


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
    # date: a customer attribute holding a date (renewal_date), yearly or once, offset_days before (<0) or after it
    attribute: str = ""
    repeat: str = ""
    offset_days: int = 0
    # What the customer reads on the preference page ("Birthday wishes"); "" means derived from the name.
    label: str = ""

    @property
    def title(self) -> str:
        """The label, else the name in words: ``staff_anniversary`` → "Staff anniversary"."""
        if self.label:
            return self.label
        words = re.sub(r"[-_.]+", " ", self.name).strip()
        return words[:1].upper() + words[1:]


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
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)  # none configured: no webhook routes

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def soft_bounces(self) -> SoftBounces:
        """The soft-bounce rule of ``[inbox]``; the defaults when there is none (4xx at RCPT still count)."""
        return self.inbox.soft_bounces if self.inbox else SoftBounces()

    def campaign(self, name: str) -> Campaign:
        for campaign in self.campaigns:
            if campaign.name == name:
                return campaign
        hint = suggest(name, [c.name for c in self.campaigns])
        raise ConfigError(f"{self.path.name}: no campaign named {name!r}{hint}")

def suggest(word: str, choices: Any, prefix: str = "") -> str:
    """A " (did you mean 'x'?)" hint naming the choice closest to ``word`` (after ``prefix``), or ""."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {prefix + close[0]!r}?)" if close else ""
