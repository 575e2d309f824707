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


ASK_KINDS = ("rating",)


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
    sync: tuple[str, ...] = ()  # crontab expressions for running the [[source]]s; empty: before every pass


@dataclass(frozen=True)
class PolicySettings:
    min_days_between: int = 7
    window_start: time = time(9, 0)
    window_end: time = time(17, 0)
    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    catch_up_days: int = 3
    # After an unhappy answer, appreciation to that customer waits for a person at most this many days.
    unhappy_pause_days: int = 30


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
    # date: a customer attribute holding a date (renewal_date), yearly or once, offset_days before (<0) or after it
    attribute: str = ""
    repeat: str = ""
    offset_days: int = 0
    # What the customer reads on the preference page ("Birthday wishes"); "" means derived from the name.
    label: str = ""
    # "how did we do?": ask = "rating" puts one answer link per step of the scale in the email
    ask: str = ""
    scale: tuple[str, ...] = ()  # the answers' labels, worst first; answer n is scale[n - 1]
    unhappy_at_most: int = 0  # an answer at or below this goes to a person
    gift: Gift | None = None  # given with every email of the campaign, exactly once per occasion

    @property
    def title(self) -> str:
        """The label, else the name in words: ``staff_anniversary`` → "Staff anniversary"."""
        if self.label:
            return self.label
        words = re.sub(r"[-_.]+", " ", self.name).strip()
        return words[:1].upper() + words[1:]


@dataclass(frozen=True)
class FeedbackSettings:
    """``[feedback]``: the answer links, and what an unhappy answer sets off."""

    link_max_age: timedelta = timedelta(days=60)  # an answer link older than this is refused
    comment_is_unhappy: bool = False  # any comment goes to a person, whatever the answer
    # Record an answer on the link's GET itself when it does not look like a scanner (see mailer/web/answers.py).
    count_clicks: bool = False
    handled_link_max_age: timedelta = timedelta(days=30)  # the "mark handled" link in the owner's notice


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


# ---- watching it run: [metrics], [alerts], [[webhook]] (parsed in mailer/config/watching.py) ----
EVENT_KINDS = ("sent", "bounced", "unsubscribed", "suppressed", "failed")


@dataclass(frozen=True)
class MetricsSettings:
    """``[metrics]``: ``/metrics`` on ``mailer serve``; with a token, scrapers must send it as a Bearer token."""

    enabled: bool = True
    token: Secret = field(default_factory=Secret)


@dataclass(frozen=True)
class AlertSettings:
    """``[alerts]``: who is told when ``mailer status`` would exit 1, and when it is fine again."""

    webhook_url: Secret = field(default_factory=Secret)  # a Slack-compatible incoming webhook (JSON {"text": ...})
    email: tuple[str, ...] = ()  # sent through the [transport]
    ca_file: Path | None = None

    @property
    def configured(self) -> bool:
        return self.webhook_url.is_set or bool(self.email)


@dataclass(frozen=True)
class EventHookSettings:
    """One ``[[webhook]]``: where events are POSTed, signed with HMAC-SHA256 of the body."""

    name: str
    url: Secret
    secret: Secret
    events: tuple[str, ...] = EVENT_KINDS
    timeout: float = 10.0
    max_age: timedelta = timedelta(days=3)  # an event not delivered by then is given up (status `failed`)
    ca_file: Path | None = None


@dataclass(frozen=True)
class WatchSettings:
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    webhooks: tuple[EventHookSettings, ...] = ()



# ---- [admin]: the read-only admin view on `mailer serve` (parsed in mailer/config/admin.py) ----
@dataclass(frozen=True)
class AdminSettings:
    """``[admin]``: ``/admin/`` behind HTTP Basic (user ``admin``); without a password there is no admin view."""

    password: Secret = field(default_factory=Secret)

    @property
    def enabled(self) -> bool:
        return self.password.is_set


@dataclass(frozen=True)
class SourceSettings:
    """One ``[[source]]``: customers and interactions that reach the store without a person importing a CSV."""

    name: str
    kind: Literal["sql", "folder"]
    alert_after: timedelta = timedelta(hours=6)  # `mailer status` fails once the source has failed this long
    # sql: the business's database, by a URL without a password (url) or from env/file (url_env, url_file)
    url: str = ""
    url_secret: Secret = field(default_factory=Secret)
    customers: str = ""  # the customers query; result columns named like the CSV import's headers
    interactions: str = ""  # the interactions query (needs a reference column: rows are read again)
    updated_column: str = ""  # a column both queries return; its high-water mark makes a sync incremental
    # folder: CSV files dropped by another job; done/ and rejected/ are made inside it
    path: Path | None = None
    settle: timedelta = timedelta(minutes=1)  # a file unchanged for this long is no longer being written

    def database_url(self) -> str:
        """The SQL source's URL; raises ConfigError when url_env/url_file cannot be read."""
        return self.url or self.url_secret.reveal()


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
    feedback: FeedbackSettings = field(default_factory=FeedbackSettings)
    import_profiles: tuple[ImportProfile, ...] = ()  # [import.profile.NAME] tables
    gifts: tuple[Gift, ...] = ()
    watch: WatchSettings = field(default_factory=WatchSettings)  # metrics, alerts, events out
    sources: tuple[SourceSettings, ...] = ()  # [[source]] tables: `mailer sync` and the daemon read them
    admin: AdminSettings = field(default_factory=AdminSettings)  # /admin/ on `mailer serve`; off without a password

    def gift(self, name: str) -> Gift:
        for gift in self.gifts:
            if gift.name == name:
                return gift
        hint = suggest(name, [g.name for g in self.gifts])
        raise ConfigError(f"{self.path.name}: no gift named {name!r}{hint}")

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def soft_bounces(self) -> SoftBounces:
        """The soft-bounce rule of ``[inbox]``; the defaults when there is none (4xx at RCPT still count)."""
        return self.inbox.soft_bounces if self.inbox else SoftBounces()

    @property
    def date_columns(self) -> tuple[str, ...]:
        """The customer columns date campaigns read: every import path checks them as dates."""
        return tuple(c.attribute for c in self.campaigns if c.occasion == "date")

    def campaign(self, name: str) -> Campaign:
        for campaign in self.campaigns:
            if campaign.name == name:
                return campaign
        hint = suggest(name, [c.name for c in self.campaigns])
        raise ConfigError(f"{self.path.name}: no campaign named {name!r}{hint}")

    def source(self, name: str) -> SourceSettings:
        for source in self.sources:
            if source.name == name:
                return source
        hint = suggest(name, [s.name for s in self.sources])
        raise ConfigError(f"{self.path.name}: no [[source]] named {name!r}{hint}")


def suggest(word: str, choices: Any, prefix: str = "") -> str:
    """A " (did you mean 'x'?)" hint naming the choice closest to ``word`` (after ``prefix``), or ""."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {prefix + close[0]!r}?)" if close else ""
