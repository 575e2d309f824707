"""The one place that knows how a send-log row becomes a message for its customer.

Real sends, rendering ahead in composer processes, dry runs and the checker's
sample messages all go through :class:`MessageMaker` (or, for a message that is
not an occasion, :func:`envelope_for`), so what a marketer sees is what a
customer gets.
"""

from __future__ import annotations

from dataclasses import replace
from email.message import EmailMessage

from mailer.addresses import ascii_domain
from mailer.compose.context import occasion_view, template_context
from mailer.compose.message import Envelope, build_message
from mailer.compose.render import Rendered, Renderer
from mailer.compose.returnpath import unsubscribe_mailto
from mailer.compose.tokens import make_message_token, make_token, occasion_ref
from mailer.compose.wire import WireMessage, serialize
from mailer.config import SenderSettings, Settings
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
        """The locale the row's message is written in: its customer's variant of the template, else the default's."""
        sender = self.settings.sender
        return self.renderer.variant(row.template, customer.locale or sender.locale) or sender.locale

    def _render(self, row: SendLog, customer: Customer) -> tuple[Rendered, Envelope, str]:
        sender = self.settings.sender
        # A row not yet stored (a sample message) has no id: its link names the customer only.
        if row.id:
            token = make_message_token(self.secret, customer.id or 0, row.id)
        else:
            token = make_token(self.secret, customer.id or 0)
        unsubscribe_url = f"{sender.unsubscribe_url}/u/{token}"
        details = occasion_view(row.occasion_kind, row.occasion_key, row.campaign, row.due_date, dict(row.occasion))
        context = template_context(customer, details, sender, unsubscribe_url)
        rendered = self.renderer.render(
            row.template, context, customer.locale or sender.locale, default_locale=sender.locale
        )
        reference = occasion_ref(self.secret, customer.id or 0, row.campaign, row.occasion_key)
        mailto = unsubscribe_mailto(sender, self.secret, customer.id or 0)
        envelope = envelope_for(customer, sender, unsubscribe_url, reference=reference, unsubscribe_mailto=mailto)
        # Every attempt of a row carries the Message-ID its first attempt went out with.
        message_id = row.message_id or f"<{reference}@{ascii_domain(sender.domain)}>"
        return rendered, envelope, message_id
