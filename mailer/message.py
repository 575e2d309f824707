"""Build the RFC 5322 message: multipart/alternative, UTF-8, headers that inboxes expect.

No header value ever carries CR, LF or NUL: every value passes through
:func:`header_safe`, and addresses are built with the email package's
``Address`` so display names are encoded, never spliced in raw.
"""

from __future__ import annotations

import email.policy
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from mailer.config import SenderSettings
from mailer.render import Rendered

# The SMTP policy serialises with CRLF, as the wire requires; max_line_length keeps
# List-Unsubscribe on one line where possible (long lines are folded before any signing).
WIRE_POLICY = email.policy.SMTP.clone(max_line_length=998)
FILE_POLICY = email.policy.default.clone(max_line_length=998)

_UNSAFE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")


class HeaderError(ValueError):
    """A header value that would change the message's structure."""


def header_safe(value: str) -> str:
    """Replace control characters (CR, LF, NUL, Unicode line separators) with a space."""
    return " ".join(_UNSAFE.sub(" ", value).split())


def address(name: str | None, addr: str) -> Address:
    local, at, domain = addr.rpartition("@")
    if not at or _UNSAFE.search(addr):
        raise HeaderError(f"not a plain address: {addr!r}")
    return Address(display_name=header_safe(name or ""), username=local, domain=domain)


@dataclass(frozen=True, slots=True)
class Envelope:
    """Who the message is for and how to reach a person about it."""

    to_address: str
    to_name: str
    reply_to: str
    reply_to_name: str
    unsubscribe_url: str
    reference: str = ""


def build_message(rendered: Rendered, envelope: Envelope, sender: SenderSettings, *, now: datetime | None = None) -> EmailMessage:
    """Assemble headers and both parts; ``reference`` goes into ``X-Mailer-Occasion`` for tracing."""
    msg = EmailMessage(policy=FILE_POLICY)
    msg["From"] = address(sender.from_name, sender.from_address)
    msg["To"] = address(envelope.to_name, envelope.to_address)
    if envelope.reply_to:
        msg["Reply-To"] = address(envelope.reply_to_name, envelope.reply_to)
    msg["Subject"] = header_safe(rendered.subject)
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=sender.domain)
    msg["List-Unsubscribe"] = f"<{header_safe(envelope.unsubscribe_url)}>, <mailto:{sender.unsubscribe_mailto}?subject=unsubscribe>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Auto-Submitted"] = "auto-generated"
    if envelope.reference:
        msg["X-Mailer-Occasion"] = header_safe(envelope.reference)
    msg.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


def to_wire(msg: EmailMessage) -> bytes:
    """The message as SMTP DATA: CRLF line endings."""
    return msg.as_bytes(policy=WIRE_POLICY)
