"""Build the RFC 5322 message: multipart/alternative, UTF-8, headers that inboxes expect.

No header value ever carries CR, LF or NUL: every value passes through
:func:`header_safe`, and addresses are built with the email package's
``Address`` so display names are encoded, never spliced in raw. The email
package decodes RFC 2047 encoded words in every string header it is given,
and the CPython this runs on may write a decoded line break out raw
(gh-121650, CVE-2024-6923) or drop the quotes of a long display name when
folding (gh-80222); so header_safe decodes before it cleans, display names
are kept short enough never to fold, and :func:`build_message` re-reads the
headers it wrote and refuses a message whose header set changed.
"""

from __future__ import annotations

import email.policy
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage, MIMEPart
from email.parser import HeaderParser
from email.utils import format_datetime, make_msgid
from typing import Any

from mailer.addresses import AddressError, ascii_domain, needs_smtputf8
from mailer.compose.render import Rendered
from mailer.config import SenderSettings


# The SMTP policy serialises with CRLF, as the wire requires; max_line_length keeps
# List-Unsubscribe on one line where possible (long lines are folded before any signing).
class _Registry(HeaderRegistry):
    """The email package's header registry, with the header class for each name made once.

    The stock registry builds a new class with ``type()`` every time a header
    is set or read, which made up a large share of the cost of building a
    message; the classes it builds for one name are all alike, so keeping the
    first one changes nothing but the time.
    """

    @functools.lru_cache(maxsize=256)  # noqa: B019  # one registry per process, never freed anyway
    def __getitem__(self, name: str) -> type[BaseHeader]:
        return super().__getitem__(name)


_HEADERS = _Registry()
WIRE_POLICY = email.policy.SMTP.clone(max_line_length=998, header_factory=_HEADERS)
FILE_POLICY = email.policy.default.clone(max_line_length=998, header_factory=_HEADERS)
# For a recipient whose local part is not ASCII: raw UTF-8 headers (RFC 6532), sent over SMTPUTF8.
WIRE_POLICY_UTF8 = WIRE_POLICY.clone(utf8=True)
FILE_POLICY_UTF8 = FILE_POLICY.clone(utf8=True)
# Quoted-printable body lines stay within RFC 2045's 76 characters (the header policy's 998 would be too long).
BODY_POLICY = email.policy.default.clone(max_line_length=76, header_factory=_HEADERS)

_UNSAFE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")


class HeaderError(ValueError):
    """A header value that would change the message's structure."""


_MAX_DECODES = 5  # encoded words nested deeper than this are refused, not unwrapped forever
_MAX_NAME = 120  # a display name this short never makes an address header fold (gh-80222)
_READER = email.policy.default.clone(header_factory=_HEADERS)


def header_safe(value: str) -> str:
    """Replace control characters (CR, LF, NUL, Unicode line separators) with a space.

    Encoded words are decoded first, as the email package would decode them,
    until nothing changes, so ``=?utf-8?q?=0D=0A?=`` cannot smuggle a break past
    the cleaning. Raises HeaderError for encoded words nested absurdly deep.
    """
    for _ in range(_MAX_DECODES):
        clean = " ".join(_UNSAFE.sub(" ", value).split())
        if "=?" not in clean:
            return clean  # no encoded word: decoding would give the same text back
        decoded = str(_READER.header_factory("subject", clean))
        if decoded == clean:
            return clean
        value = decoded
    raise HeaderError(f"encoded words nested too deeply: {value[:60]!r}")


def address(name: str | None, addr: str) -> Address:
    """The address for a header: the display name cleaned, the domain in IDNA A-labels; raises HeaderError."""
    local, at, domain = addr.rpartition("@")
    if not at or _UNSAFE.search(addr) or "=?" in addr:
        raise HeaderError(f"not a plain address: {addr!r}")
    try:
        # RFC 2047 forbids encoded words in an address: a Unicode domain goes out as xn-- labels.
        domain = ascii_domain(domain)
    except AddressError as exc:
        raise HeaderError(str(exc)) from None
    display = header_safe(name or "")
    if len(display) > _MAX_NAME:
        display = display[:_MAX_NAME].rstrip() + "…"
    return Address(display_name=display, username=local, domain=domain)


@dataclass(frozen=True, slots=True)
class Envelope:
    """Who the message is for and how to reach a person about it."""

    to_address: str
    to_name: str
    reply_to: str
    reply_to_name: str
    unsubscribe_url: str
    reference: str = ""
    unsubscribe_mailto: str = ""  # this customer's tagged mailto: address; "" = [sender] unsubscribe_mailto


HeaderValue = str | Address


def header_fields(
    rendered: Rendered, envelope: Envelope, sender: SenderSettings, now: datetime, message_id: str
) -> list[tuple[str, HeaderValue]]:
    """The message's headers, in order, cleaned and checked (addresses as ``Address``); raises HeaderError.

    One list for both ways a message is written: :func:`build_message` and
    :func:`mailer.compose.wire.serialize`. ``reference`` (an opaque name of the occasion) goes into
    ``X-Mailer-Occasion`` for tracing.
    """
    fields: list[tuple[str, HeaderValue]] = [
        ("From", address(sender.from_name, sender.from_address)),
        ("To", address(envelope.to_name, envelope.to_address)),
    ]
    if envelope.reply_to:
        fields.append(("Reply-To", address(envelope.reply_to_name, envelope.reply_to)))
    fields += [
        ("Subject", header_safe(rendered.subject)),
        ("Date", format_datetime(now)),
        ("Message-ID", message_id),
    ]
    if envelope.unsubscribe_url:  # staff mail (an owner's notice) has none: it must not opt the customer out
        mailto = header_safe(envelope.unsubscribe_mailto or sender.unsubscribe_mailto)
        unsubscribe = f"<{header_safe(envelope.unsubscribe_url)}>, <mailto:{mailto}?subject=unsubscribe>"
        fields += [("List-Unsubscribe", unsubscribe), ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
    fields.append(("Auto-Submitted", "auto-generated"))
    if envelope.reference:
        fields.append(("X-Mailer-Occasion", header_safe(envelope.reference)))
    fields.append(("MIME-Version", "1.0"))
    return fields


def needs_utf8_headers(envelope: Envelope, sender: SenderSettings) -> bool:
    """Whether an address in the headers has a non-ASCII local part: then they are raw UTF-8 (RFC 6532)."""
    return any(needs_smtputf8(a) for a in (envelope.to_address, envelope.reply_to, sender.from_address) if a)


def build_message(
    rendered: Rendered,
    envelope: Envelope,
    sender: SenderSettings,
    *,
    now: datetime | None = None,
    message_id: str | None = None,
) -> EmailMessage:
    """Assemble the headers and both parts (quoted-printable UTF-8 text and HTML).

    A recipient whose local part is not ASCII gets raw UTF-8 headers (RFC 6532):
    there is no other way to write that address, and it travels over SMTPUTF8.
    """
    msg = EmailMessage(policy=FILE_POLICY_UTF8 if needs_utf8_headers(envelope, sender) else FILE_POLICY)
    message_id = message_id or make_msgid(domain=ascii_domain(sender.domain))
    for name, value in header_fields(rendered, envelope, sender, now or datetime.now(UTC), message_id):
        msg[name] = value
    msg.make_alternative()
    for subtype, body in (("plain", rendered.text), ("html", rendered.html)):
        part = MIMEPart(policy=BODY_POLICY)
        part.set_content(body, subtype=subtype, charset="utf-8", cte="quoted-printable")
        msg.attach(part)  # type: ignore[arg-type]  # typeshed wants an EmailMessage; a part is a MIMEPart
    check_headers(msg)
    return msg


def check_headers(msg: EmailMessage) -> None:
    """Serialise the headers as the wire will carry them, parse them back, and compare.

    Raises HeaderError if a header appeared or vanished, an address changed, or
    a decoded value carries a control character: whatever the email package's
    folding did, the receiver must see exactly the headers that were set.
    """
    policy = WIRE_POLICY_UTF8 if _utf8(msg) else WIRE_POLICY
    wire = b"".join(policy.fold_binary(name, value) for name, value in msg.items())
    check_read_back(wire, msg.items())


def check_read_back(wire: bytes, sent: Sequence[tuple[str, Any]]) -> None:
    """Parse header lines as written for the wire and compare them with the ``sent`` (name, value) pairs.

    A value is a string, an ``Address`` or an email package header; the
    addresses of address headers must read back the same. Raises HeaderError
    (see :func:`check_headers`).
    """
    # Headers are ASCII, or UTF-8 for an SMTPUTF8 recipient (RFC 6532): decoding as UTF-8 reads both.
    seen = HeaderParser(policy=_READER).parsestr(wire.decode("utf-8", "surrogateescape") + "\r\n")
    if [k.lower() for k in seen] != [name.lower() for name, _ in sent]:
        raise HeaderError(f"headers changed on the wire: {seen.keys()} instead of {[name for name, _ in sent]}")
    for name, value in seen.items():
        if _UNSAFE.search(str(value).replace("\t", " ")):
            raise HeaderError(f"{name} would carry a control character")
    for name, value in sent:
        addresses = [value] if isinstance(value, Address) else getattr(value, "addresses", None)
        if addresses is not None:
            wanted = [a.addr_spec for a in addresses]
            read = [a.addr_spec for a in seen[name].addresses]
            if wanted != read:
                raise HeaderError(f"{name} would read as {read} instead of {wanted}")


def to_wire(msg: EmailMessage) -> bytes:
    """The message as SMTP DATA: CRLF line endings."""
    return msg.as_bytes(policy=WIRE_POLICY_UTF8 if _utf8(msg) else WIRE_POLICY)


def to_file(msg: EmailMessage) -> bytes:
    """The message as an ``.eml`` file: LF line endings."""
    return msg.as_bytes(policy=FILE_POLICY_UTF8 if _utf8(msg) else FILE_POLICY)


def _utf8(msg: EmailMessage) -> bool:
    """Whether the message was built with raw UTF-8 headers (see :func:`build_message`)."""
    return bool(getattr(msg.policy, "utf8", False))
