"""Write a message straight to SMTP DATA bytes: the bytes of ``to_wire(build_message(...))``, fast.

Building an ``EmailMessage`` and serialising it costs milliseconds per
message, almost all of it in the email package parsing, refolding and
re-reading headers that are plain ASCII and need none of it; on a busy day
that, not the wire, limited how fast a pass could send. This module writes
the same bytes directly:

- a header whose value is plain printable ASCII (no encoded-word marker, short
  enough never to fold) is written as ``Name: value``; an address header the
  same when its display name and address need no quoting beyond a pair of
  double quotes;
- any other header (a name with an accent, a subject with an emoji, a very
  long value) is folded by the email package exactly as ``build_message``
  would, and the folded lines are parsed back and compared, as
  :func:`mailer.compose.message.check_headers` does for a whole message;
- each body is quoted-printable per line: a line of safe ASCII is cut into
  pieces of 75 characters and a soft break, as the encoder would; any other
  line goes through the email package's encoder (which encodes each line on
  its own).

``tests/compose/test_wire.py`` holds this module to byte-identity with
``build_message`` + ``to_wire`` on the shipped templates and on generated
hostile headers and bodies. Both take their headers, cleaned and checked, from
:func:`mailer.compose.message.header_fields`.
"""

from __future__ import annotations

import functools
import random
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from email import quoprimime
from email.headerregistry import Address
from email.utils import make_msgid

from mailer.addresses import ascii_domain
from mailer.compose.message import (
    _HEADERS,
    WIRE_POLICY,
    Envelope,
    build_message,
    check_read_back,
    header_fields,
    needs_utf8_headers,
    to_wire,
)
from mailer.compose.render import Rendered
from mailer.config import SenderSettings

CRLF = b"\r\n"
_MAX_LINE = 998  # the header policy's max_line_length: a longer line would be folded
_QP_LINE = 76  # RFC 2045; the body policy's max_line_length

# Printable ASCII: what a header value may hold to be written as it is.
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
# Display names written bare, or in double quotes when they hold a special (no quote or backslash to escape).
_BARE_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")
_QUOTABLE_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ .,:;@<>()\[\]-]*")
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# A body line the quoted-printable encoder escapes nothing in: safe characters (no ``=``), not ending in a space or tab.
_QP_PLAIN = re.compile(rb"(?:[\x20-\x3c\x3e-\x7e\t]*[\x21-\x3c\x3e-\x7e])?")

_PART_HEAD = b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'


@dataclass(frozen=True, slots=True)
class WireMessage:
    """A message as SMTP DATA (CRLF line ends), with what the send log records about it."""

    data: bytes
    subject: str
    message_id: str
    locale: str = ""  # the locale of the templates it was written from (set by the message maker)


def serialize(
    rendered: Rendered,
    envelope: Envelope,
    sender: SenderSettings,
    *,
    now: datetime | None = None,
    message_id: str | None = None,
    boundary: str | None = None,
) -> WireMessage:
    """The message ``build_message`` makes of these, as ``to_wire`` writes it; raises HeaderError."""
    message_id = message_id or make_msgid(domain=ascii_domain(sender.domain))
    if needs_utf8_headers(envelope, sender):
        # Raw UTF-8 headers (RFC 6532) for the rare address with no ASCII form: the email package writes them.
        msg = build_message(rendered, envelope, sender, now=now, message_id=message_id)
        return WireMessage(to_wire(msg), str(msg["Subject"]), message_id)
    boundary = boundary or _boundary()
    fields = header_fields(rendered, envelope, sender, now or datetime.now(UTC), message_id)
    head = [_address_line(name, value) if isinstance(value, Address) else _field(name, value) for name, value in fields]
    head.append(_field("Content-Type", f'multipart/alternative; boundary="{boundary}"'))
    delimiter = b"--" + boundary.encode("ascii")
    data = b"".join(
        [
            *head,
            CRLF,
            delimiter + CRLF,
            _PART_HEAD % b"plain",
            quoted_printable(rendered.text),
            CRLF + delimiter + CRLF,
            _PART_HEAD % b"html",
            quoted_printable(rendered.html),
            CRLF + delimiter + b"--" + CRLF,
        ]
    )
    return WireMessage(data, str(dict(fields)["Subject"]), message_id)


def _boundary() -> str:
    """A boundary as the email package makes one; no quoted-printable body can contain it.

    (Quoted-printable writes every ``=`` of the text as ``=3D``, so a line of
    fifteen ``=`` never occurs in an encoded part.)
    """
    width = len(repr(sys.maxsize - 1))
    return "=" * 15 + f"{random.randrange(sys.maxsize):0{width}d}" + "=="


def _field(name: str, value: str) -> bytes:
    """One header line (or folded lines), exactly as the email package would write it."""
    if value and len(name) + 2 + len(value) <= _MAX_LINE and "=?" not in value and _PRINTABLE.fullmatch(value):
        return f"{name}: {value}\r\n".encode("ascii")
    return _folded(name, value)


def _address_line(name: str, parsed: Address) -> bytes:
    """An address header, from the parts :func:`mailer.compose.message.address` cleaned and checked."""
    return _address_parts_line(name, parsed.display_name, parsed.username, parsed.domain)


@functools.lru_cache(maxsize=1024)  # From and Reply-To repeat on every message of a pass
def _address_parts_line(name: str, display: str, local: str, domain: str) -> bytes:
    if _DOT_ATOM.fullmatch(local) and _DOT_ATOM.fullmatch(domain) and "=?" not in display:
        spec = f"{local}@{domain}"
        if not display:
            value = spec
        elif _BARE_NAME.fullmatch(display) and display == display.strip():
            value = f"{display} <{spec}>"
        elif _QUOTABLE_NAME.fullmatch(display) and display == display.strip():
            value = f'"{display}" <{spec}>'
        else:
            value = ""
        if value and len(name) + 2 + len(value) <= _MAX_LINE:
            return f"{name}: {value}\r\n".encode("ascii")
    return _folded(name, Address(display_name=display, username=local, domain=domain))


def _folded(name: str, value: str | Address) -> bytes:
    """The email package's folding of one header, read back and checked as ``check_headers`` checks a message."""
    folded = WIRE_POLICY.fold_binary(name, _HEADERS(name, value))
    check_read_back(folded, [(name, value)])
    return folded


def quoted_printable(text: str) -> bytes:
    """``text`` as the email package encodes a UTF-8 quoted-printable part, with CRLF line ends."""
    out = []
    for line in text.encode("utf-8").splitlines() or [b""]:
        if not _QP_PLAIN.fullmatch(line):
            out.append(quoprimime.body_encode(line.decode("latin-1"), _QP_LINE, eol="\r\n").encode("ascii"))
            continue
        # Nothing to escape: the encoder only breaks the line into pieces of 75 characters and a soft break.
        while len(line) > _QP_LINE:
            out.append(line[: _QP_LINE - 1] + b"=")
            line = line[_QP_LINE - 1 :]
        out.append(line)
    out.append(b"")
    return CRLF.join(out)
