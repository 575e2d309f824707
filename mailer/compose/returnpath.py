"""The envelope addresses that bring mail back: the bounce address (MAIL FROM) and the unsubscribe mailto:.

``[sender] bounce_address`` is the envelope sender of every message, so delivery status
notifications come back to the inbox mailer reads; with ``verp = true`` (variable envelope
return path) it carries the left part of the message's Message-ID as a +tag,
``bounce+<occasion ref>@domain``, so a DSN that returns nothing of the message still names it.
The unsubscribe ``mailto:`` carries a signed token of its customer the same way.
"""

from __future__ import annotations

import re

from mailer.compose.tokens import mailto_token
from mailer.config import SenderSettings

# What a tag may hold: the occasion refs (lower-case base32) and Python's make_msgid ids (digits, dots).
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9.=-]{0,63}")


def with_tag(address: str, tag: str) -> str:
    """``local+tag@domain``."""
    local, _, domain = address.rpartition("@")
    return f"{local}+{tag}@{domain}"


def envelope_sender(sender: SenderSettings, message_id: str) -> str:
    """MAIL FROM for the message with ``message_id``: the bounce address, VERP-tagged when asked.

    A Message-ID whose left part is no plain tag (none of mailer's are) gets the untagged address.
    """
    bounce = sender.bounce_address or sender.from_address
    if not sender.verp:
        return bounce
    tag = message_id.strip().strip("<>").rpartition("@")[0]
    return with_tag(bounce, tag) if _TAG.fullmatch(tag) and ".." not in tag else bounce


def unsubscribe_mailto(sender: SenderSettings, secret: str, customer_id: int) -> str:
    """The List-Unsubscribe ``mailto:`` address of this customer: ``unsubscribe+<signed token>@domain``."""
    return with_tag(sender.unsubscribe_mailto, mailto_token(secret, customer_id))
