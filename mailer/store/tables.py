"""The contact store's tables: customer, interaction, send log.

Every timestamp is an aware datetime in UTC. SQLModel's UTCDateTime column
refuses naive values and returns UTC-aware ones on every database (SQLite
keeps no offset), so local wall-clock times never leak into the store.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import JSON, Column, Index, Numeric, UniqueConstraint
from sqlalchemy.orm import configure_mappers, instrumentation
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


Model = TypeVar("Model", bound=SQLModel)


def as_loaded(model: type[Model], columns: dict[str, Any]) -> Model:
    """A row object from column values as the store returned them, built the way the ORM builds loaded rows.

    No validation and no change events: the values came out of the store's own columns. For
    composer processes, which rebuild every message's row and customer from plain values;
    ``Model(**columns)`` validates and instruments each field and cost more than inlining the CSS.
    """
    configure_mappers()  # once per process (what a model's first __init__ would do); then a flag test
    instance: Model = instrumentation.manager_of_class(model).new_instance()
    instance.__dict__.update(columns)
    return instance


def month_day(d: date) -> int:
    """Encode a date's month/day as ``MMDD`` so the store can index "whose day is it"."""
    return encode_month_day(d.month, d.day)


def encode_month_day(month: int, day: int) -> int:
    """``MMDD`` for a month and day (a birthday whose year is unknown has no date to pass)."""
    return month * 100 + day


class Customer(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(unique=True, index=True, max_length=200)
    email: str = Field(index=True, max_length=320)
    first_name: str | None = None
    last_name: str | None = None
    customer_since: date = Field(index=True)  # silence of customers who never interacted
    since_md: int = Field(index=True)
    # Where customer_since came from: None = the import file; "import" = the day of an import that
    # had none (until an order says otherwise); "first_order" = the customer's earliest order.
    customer_since_from: str | None = Field(default=None, max_length=20)
    birthday_month: int | None = None
    birthday_day: int | None = None
    birthday_year: int | None = None
    birthday_md: int | None = Field(default=None, index=True)
    timezone: str | None = None
    locale: str | None = Field(default=None, max_length=35)  # BCP 47 (de-AT); None: the [sender] locale
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    owner_name: str | None = None
    owner_email: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))

    # Aggregates kept current by the importer, so a pass never scans interactions.
    order_count: int = 0
    lifetime_spend: Decimal = Field(default=Decimal(0), sa_column=Column(Numeric(14, 2), nullable=False))
    interaction_count: int = 0
    last_interaction_at: datetime | None = Field(default=None, index=True)  # silence, milestones

    last_emailed_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    unsubscribe_source: str | None = None
    unsubscribe_send_log_id: int | None = None  # the message whose link was used (stats per campaign)
    suppressed_at: datetime | None = None
    suppressed_reason: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def birthday(self) -> date | None:
        """The birthday in a leap year placeholder when the year is unknown (for month/day use)."""
        if self.birthday_month is None or self.birthday_day is None:
            return None
        return date(self.birthday_year or 2000, self.birthday_month, self.birthday_day)


class Interaction(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("customer_id", "reference", name="uq_interaction_reference"),
        # A pass reads one customer's recent interactions (milestones, follow-ups) ...
        Index("ix_interaction_customer_occurred", "customer_id", "occurred_at"),
        # ... and finds who had an interaction of one kind on given days (follow-ups).
        Index("ix_interaction_kind_occurred", "kind", "occurred_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id")
    kind: str = Field(max_length=50)
    occurred_at: datetime
    amount: Decimal | None = Field(default=None, sa_column=Column(Numeric(14, 2), nullable=True))
    reference: str | None = Field(default=None, max_length=200)


class SendStatus(StrEnum):
    QUEUED = "queued"  # due and allowed: waiting for (or between) delivery attempts
    SENDING = "sending"  # committed just before the SMTP transaction
    SENT = "sent"
    DEFERRED = "deferred"  # held back by policy; re-evaluated by later passes
    SKIPPED = "skipped"  # decided not to send, with a reason; final
    FAILED = "failed"  # gave up (render error, retries exhausted); final
    BOUNCED = "bounced"  # permanent SMTP refusal; final
    # A crash left it `sending`, or the line dropped after the final dot: maybe delivered; a human decides.
    UNKNOWN = "unknown"


FINAL_STATUSES = frozenset({SendStatus.SENT, SendStatus.SKIPPED, SendStatus.FAILED, SendStatus.BOUNCED})


class SendLog(SQLModel, table=True):
    """One row per (customer, campaign, occasion key): the outbox and the audit trail."""

    __tablename__ = "send_log"
    __table_args__ = (
        UniqueConstraint("customer_id", "campaign", "occasion_key", name="uq_send_log_occasion"),
        Index("ix_send_log_status_next", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    campaign: str = Field(max_length=100)
    occasion_key: str = Field(max_length=200)
    occasion_kind: str = Field(max_length=50)
    due_date: date
    occasion: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    template: str = Field(max_length=100)
    status: str = Field(max_length=20)
    reason: str = ""
    attempts: int = 0
    next_attempt_at: datetime | None = None
    to_address: str = ""
    subject: str = ""
    message_id: str = ""
    last_reply: str = ""
    is_test: bool = False
    locale: str = Field(default="", max_length=35)  # the locale of the templates it was written from
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = Field(default=None, index=True)  # indexed: the daily cap counts the last 24 h
    first_attempt_at: datetime | None = None  # retries give up `retry_max_age` after this
    # The process that claimed the row (its lease key, see mailer.outbox.lease) and when:
    # a `sending` row whose claimer is dead was interrupted and becomes `unknown`.
    claimed_by: int | None = None
    claimed_at: datetime | None = None
    # The gift this email carries (name, code, label, expires), bound with the decision: every attempt shows it.
    # No gift is SQL NULL (not JSON null), so the rows still waiting for a code are found with IS NULL.
    gift: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))


class PassRun(SQLModel, table=True):
    """One row per pass or retry sweep: when and where it ran and what came of it (``mailer status``)."""

    __tablename__ = "pass_run"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=20)  # "pass" (plan + deliver) or "retry" (deliver what is due)
    started_at: datetime = Field(index=True)
    finished_at: datetime | None = None
    status: str = Field(default="running", max_length=20)  # running, done, stopped (relay unusable), failed
    counts: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    error: str = ""
    host: str = Field(max_length=255)
    pid: int


class PlanMark(SQLModel, table=True):
    """How far planning has got, so a pass after an outage looks back over everything it missed.

    One row (``name = "plan"``): every local date up to ``planned_through`` has
    been planned by some pass, for every time zone.
    """

    __tablename__ = "plan_mark"

    name: str = Field(primary_key=True, max_length=50)
    planned_through: date
    updated_at: datetime = Field(default_factory=utcnow)


class WebhookReceipt(SQLModel, table=True):
    """One row per provider call already acted on, so a replayed or repeated call changes nothing.

    ``key`` is what the provider makes unique per call: Mailgun's signed token, SNS's MessageId.
    Rows older than the provider's accepted age are deleted: a call that old is refused anyway.
    """

    __tablename__ = "webhook_receipt"
    __table_args__ = (UniqueConstraint("provider", "key", name="uq_webhook_receipt"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=20)  # "ses" or "mailgun"
    key: str = Field(max_length=200)
    received_at: datetime = Field(index=True)


class TransientFailure(SQLModel, table=True):
    """A temporary delivery failure of one message to one address: a "delayed" or 4.x.x DSN, or a 4xx
    answer at RCPT that outlasted every retry. Enough of them within a span suppress the address.

    ``message_key`` names the message (its Message-ID, else the report's digest): several warnings
    about one message count once, and reading the same report twice adds nothing.
    """

    __tablename__ = "transient_failure"
    __table_args__ = (UniqueConstraint("email", "message_key", name="uq_transient_failure_email_message"),)

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320)  # lower-cased
    message_key: str = Field(max_length=300)
    status: str = Field(max_length=20)  # "4.2.2", or the SMTP code "452"
    detail: str = ""
    occurred_at: datetime = Field(default_factory=utcnow, index=True)


class CampaignOptOut(SQLModel, table=True):
    """A customer wants no more of one campaign; the others still reach them (the preference page)."""

    __tablename__ = "campaign_opt_out"
    __table_args__ = (UniqueConstraint("customer_id", "campaign", name="uq_campaign_opt_out"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id")
    campaign: str = Field(max_length=100)
    source: str = Field(max_length=50)  # page, admin, ...
    send_log_id: int | None = None  # the message whose link was used, when one was
    created_at: datetime = Field(default_factory=utcnow)


class MailPause(SQLModel, table=True):
    """A customer asked for no mail at all until a date (the preference page); occasions wait, not vanish."""

    __tablename__ = "mail_pause"

    customer_id: int = Field(foreign_key="customer.id", primary_key=True)
    until: date  # the first local date mail may come again
    source: str = Field(max_length=50)
    send_log_id: int | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Feedback(SQLModel, table=True):
    """A customer's answer to the question an email asked ("how did we do?"): one per send-log row.

    Changing the answer updates the row. ``unhappy_since`` is set when the answer
    (or comment) makes it unhappy and cleared when a person marks it handled
    (``resolved_at``); while it is set, appreciation to the customer waits.
    ``notices`` counts the owner's notifications queued for it (the key of the
    next one), so one unhappy answer notifies once, however often it is sent again.
    """

    __table_args__ = (
        UniqueConstraint("send_log_id", name="uq_feedback_send_log"),
        Index("ix_feedback_customer_open", "customer_id", "unhappy_since"),
        Index("ix_feedback_campaign_answered", "campaign", "answered_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id")
    send_log_id: int = Field(foreign_key="send_log.id")
    campaign: str = Field(max_length=100)
    answer: int  # 1 (worst) to scale
    scale: int  # how many answers there were to choose from, so averages stay comparable
    label: str = Field(default="", max_length=200)
    comment: str = ""
    source: str = Field(max_length=20)  # "page" (the Send button) or "click" (the link itself, if enabled)
    answered_at: datetime
    created_at: datetime = Field(default_factory=utcnow)
    unhappy_since: datetime | None = None
    notices: int = 0
    resolved_at: datetime | None = None
    resolved_by: str = Field(default="", max_length=200)


class GiftState(StrEnum):
    AVAILABLE = "available"  # in the pool, nobody's yet (or given back by a row that never reached anyone)
    GIVEN = "given"  # bound to one send-log row: that email, and every retry of it, carries this code
    VOID = "void"  # a generated code whose email never went out: the shop must not honour it


class GiftCode(SQLModel, table=True):
    """One gift code: imported into a pool or generated for a row, and which send-log row it went to."""

    __tablename__ = "gift_code"
    __table_args__ = (
        UniqueConstraint("gift", "code", name="uq_gift_code"),
        # A pass takes the next available codes of a gift, soonest expiry first.
        Index("ix_gift_code_pick", "gift", "state", "expires_on"),
    )

    id: int | None = Field(default=None, primary_key=True)
    gift: str = Field(max_length=100)
    code: str = Field(max_length=100)
    generated: bool = False
    expires_on: date | None = None  # the shop's own expiry of a pooled code (None: never)
    state: str = Field(default=GiftState.AVAILABLE, max_length=20)
    # UNIQUE: a row never holds two codes (NULLs do not collide on SQLite or PostgreSQL).
    send_log_id: int | None = Field(default=None, foreign_key="send_log.id", unique=True)
    given_at: datetime | None = None
    returned_at: datetime | None = None
    returns: int = 0  # how often the code came back from an email that never reached its customer
    note: str = ""  # why it came back or was voided
    added_at: datetime = Field(default_factory=utcnow)
    source: str = Field(default="", max_length=300)  # FILE:LINE it was imported from


class AlertState(SQLModel, table=True):
    """Whether the alert for "``mailer status`` would exit 1" is firing, so one alert goes out per change.

    One row (``name = "status"``). ``notified`` is False while the latest change is still to be told;
    ``notifying_until`` is a short claim, so two workers never send the same notice.
    """

    __tablename__ = "alert_state"

    name: str = Field(primary_key=True, max_length=50)
    firing: bool = False
    problems: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    changed_at: datetime = Field(default_factory=utcnow)
    notified: bool = True
    notifying_until: datetime | None = None
    last_error: str = ""


class Event(SQLModel, table=True):
    """Something a customer's record went through (sent, bounced, unsubscribed, suppressed, failed).

    Recorded in the same transaction as the change it reports, so a crash loses none; ``uid``
    is what a receiver de-duplicates by.
    """

    __tablename__ = "event"

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(unique=True, max_length=40)
    kind: str = Field(max_length=20)
    occurred_at: datetime = Field(index=True)
    customer_id: int | None = None
    send_log_id: int | None = None
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class EventDelivery(SQLModel, table=True):
    """One event on its way to one ``[[webhook]]``: pending, sending (claimed), delivered or failed."""

    __tablename__ = "event_delivery"
    __table_args__ = (
        UniqueConstraint("event_id", "webhook", name="uq_event_delivery"),
        Index("ix_event_delivery_status_next", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(foreign_key="event.id")
    webhook: str = Field(max_length=100)
    status: str = Field(default="pending", max_length=20)
    attempts: int = 0
    next_attempt_at: datetime
    claimed_until: datetime | None = None
    last_error: str = ""
    delivered_at: datetime | None = None


class EventCursor(SQLModel, table=True):
    """How far each ``[[webhook]]`` has taken events into its deliveries (the last event id)."""

    __tablename__ = "event_cursor"

    webhook: str = Field(primary_key=True, max_length=100)
    last_event_id: int = 0


class SourceState(SQLModel, table=True):
    """Where each ``[[source]]`` stands: its high-water marks and how its last syncs went (`mailer status`).

    A mark is the largest ``updated_column`` value a committed sync read, kept with its type
    (``{"type": "datetime", "value": "..."}``) so the next query compares like with like.
    """

    __tablename__ = "source_state"

    name: str = Field(primary_key=True, max_length=100)
    customers_mark: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    interactions_mark: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    failing_since: datetime | None = None  # the first failure since the last success; None while it works
    last_error: str = ""
    last_counts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class CustomerDate(SQLModel, table=True):
    """A customer attribute that holds a date (``renewal_date``), indexed so date occasions find their customers.

    One row per customer and attribute, kept by the importer beside the JSON ``attributes``:
    a pass looks up "whose renewal_date falls on these month/days" instead of reading everyone.
    """

    __tablename__ = "customer_date"
    __table_args__ = (
        Index("ix_customer_date_attribute_md", "attribute", "md"),
        Index("ix_customer_date_attribute_value", "attribute", "value"),
    )

    customer_id: int = Field(foreign_key="customer.id", primary_key=True)
    attribute: str = Field(primary_key=True, max_length=200)
    value: date
    md: int  # MMDD of value (see month_day), for yearly occasions


class ApiKey(SQLModel, table=True):
    """A bearer key of the HTTP API (``mailer api-key create``): only its SHA-256 is kept, the key is shown once."""

    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=100)
    key_hash: str = Field(unique=True, max_length=64)  # hex SHA-256 of the whole key
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None  # a revoked key is answered 403, not forgotten (401)
    last_used_at: datetime | None = None


class ErasedAddress(SQLModel, table=True):
    """The one-way trace of an erased customer (``mailer forget``): a SHA-256 of their lower-cased address.

    The address itself is gone; an import or API call that brings it back creates a suppressed
    customer, so a person who asked to be forgotten is never mailed again.
    """

    __tablename__ = "erased_address"

    address_hash: str = Field(primary_key=True, max_length=64)
    erased_at: datetime = Field(default_factory=utcnow)
