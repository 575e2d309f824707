"""The one place that knows how a send-log row becomes a message for its customer.

Real sends, rendering ahead in composer processes, dry runs and the checker's
sample messages all go through :class:`MessageMaker` (or, for a message that is
not an occasion, :func:`envelope_for`), so what a marketer sees is what a
customer gets.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from mailer.addresses import ascii_domain
from mailer.compose import answers
from mailer.compose.context import occasion_view, template_context
from mailer.compose.message import Envelope, build_message
from mailer.compose.render import Rendered, Renderer, RenderError
from mailer.compose.returnpath import unsubscribe_mailto
from mailer.compose.tokens import HANDLED, make_message_token, make_token, occasion_ref
from mailer.compose.wire import WireMessage, serialize
from mailer.config import SenderSettings, Settings
from mailer.outbox.feedback import NOTICE_KIND, notice_recipient
from mailer.store.tables import Customer, SendLog


def envelope_for(
    customer: Customer,
    sender: SenderSettings,
    unsubscribe_url: str,
    *,
    to_address: str = "",
    reference: str = "",
    unsubscribe_mailto: str = "",
) -> Envelope:
    """Who a message to ``customer`` is for and whom they can answer: their account owner, else the sender."""
    return Envelope(
        to_address=to_address or customer.email,
        to_name="" if to_address else " ".join(p for p in (customer.first_name, customer.last_name) if p),
        reply_to=customer.owner_email or sender.reply_to or "",
        reply_to_name=(customer.owner_name or "") if customer.owner_email else sender.from_name,
        unsubscribe_url=unsubscribe_url,
        reference=reference,
        unsubscribe_mailto=unsubscribe_mailto,
    )


class MessageMaker:
    """Renders rows into messages: the templates, the signed links, the headers; no I/O beyond the templates."""

    def __init__(self, settings: Settings, renderer: Renderer) -> None:
        self.settings = settings
        self.renderer = renderer
        self._secret: str | None = None

    @property
    def secret(self) -> str:
        if self._secret is None:
            self._secret = self.settings.sender.secret.reveal()
        return self._secret

    def _promises_gift(self, campaign: str) -> bool:
        return any(c.name == campaign and c.gift is not None for c in self.settings.campaigns)

    def compose(self, row: SendLog, customer: Customer) -> EmailMessage:
        """The row's message for its customer, as an object; raises RenderError or HeaderError."""
        rendered, envelope, message_id = self._render(row, customer)
        return build_message(rendered, envelope, self.settings.sender, message_id=message_id)

    def compose_wire(self, row: SendLog, customer: Customer) -> WireMessage:
        """The same message as :meth:`compose`, straight to SMTP DATA bytes (see :mod:`mailer.compose.wire`)."""
        rendered, envelope, message_id = self._render(row, customer)
        wire = serialize(rendered, envelope, self.settings.sender, message_id=message_id)
        return replace(wire, locale=rendered.locale or self.settings.sender.locale)

    def locale_for(self, row: SendLog, customer: Customer) -> str:
        """The locale the row's message is written in: its reader's variant of the template, else the default's."""
        sender = self.settings.sender
        return self.renderer.variant(row.template, self._reader_locale(row, customer)) or sender.locale

    def _reader_locale(self, row: SendLog, customer: Customer) -> str:
        """The customer's language; an owner's notice is read by the business, in the sender's."""
        if row.occasion_kind == NOTICE_KIND:
            return self.settings.sender.locale
        return customer.locale or self.settings.sender.locale

    def recipient(self, row: SendLog, customer: Customer) -> str:
        """Where the row's message goes: the customer, or for an owner's notice their account owner."""
        if row.occasion_kind == NOTICE_KIND:
            return notice_recipient(customer, self.settings.sender)
        return customer.email

    def _render(self, row: SendLog, customer: Customer) -> tuple[Rendered, Envelope, str]:
        sender = self.settings.sender
        # A row not yet stored (a sample message) has no id: its link names the customer only.
        if row.id:
            token = make_message_token(self.secret, customer.id or 0, row.id)
        else:
            token = make_token(self.secret, customer.id or 0)
        unsubscribe_url = f"{sender.unsubscribe_url}/u/{token}"
        details = occasion_view(row.occasion_kind, row.occasion_key, row.campaign, row.due_date, dict(row.occasion))
        notice = row.occasion_kind == NOTICE_KIND
        if notice:
            details["handled_url"] = self._handled_url(int(details.get("feedback_id", 0)))
        gift = row.gift
        if gift is None and not row.is_test and self._promises_gift(row.campaign):
            # Never without the promised gift: the pass binds a code (or defers) before any email is made.
            raise RenderError(f"campaign {row.campaign!r} gives a gift but no code is bound to this row yet")
        context = template_context(customer, details, sender, unsubscribe_url, self._ask(row), gift=gift)
        rendered = self.renderer.render(
            row.template, context, self._reader_locale(row, customer), default_locale=sender.locale
        )
        reference = occasion_ref(self.secret, customer.id or 0, row.campaign, row.occasion_key)
        if notice:
            envelope = answers.notice_envelope(customer, sender, reference)
        else:
            mailto = unsubscribe_mailto(sender, self.secret, customer.id or 0)
            envelope = envelope_for(customer, sender, unsubscribe_url, reference=reference, unsubscribe_mailto=mailto)
        # Every attempt of a row carries the Message-ID its first attempt went out with.
        message_id = row.message_id or f"<{reference}@{ascii_domain(sender.domain)}>"
        return rendered, envelope, message_id

    def _ask(self, row: SendLog) -> dict[str, Any]:
        """The question the row's campaign asks, with answer links signed for this row (issued now: they expire)."""
        campaign = answers.find_campaign(self.settings.campaigns, row.campaign)
        if campaign is None or not campaign.ask:
            return answers.NO_QUESTION
        base = self.settings.sender.unsubscribe_url
        if row.id is None:  # a dry run's message: the question as it will look, with links that answer nothing
            return answers.sample_ask(campaign, base)
        return answers.ask_view(campaign, answers.answer_links(self.secret, base, campaign, row.id, datetime.now(UTC)))

    def _handled_url(self, feedback_id: int) -> str:
        token = make_token(self.secret, feedback_id, HANDLED, issued=datetime.now(UTC))
        return f"{self.settings.sender.unsubscribe_url}{answers.handled_path(token)}"
