"""Signed tokens for the unsubscribe endpoint: ``<customer id>.<HMAC>`` or ``<id>.<issued>.<HMAC>``.

A message's link carries ``<customer id>.<send-log id>.<HMAC>`` (:func:`make_message_token`),
so the page knows which campaign's email someone left from.

The purpose is bound into the signature, so a token minted for one purpose
(unsubscribe) never verifies for another (resubscribe), and nobody can act on
a customer whose token they were not sent. Unsubscribe tokens never expire:
the link in a two-year-old email must still work. Tokens minted with an
``issued`` time (the undo link on the confirmation page) expire after
``max_age``, so a stale page cannot re-enrol someone months later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

UNSUBSCRIBE = "unsubscribe"
RESUBSCRIBE = "resubscribe"
_SIGNATURE_CHARS = 32  # 192 bits of HMAC-SHA256, short enough for one header line
_MAX_DIGITS = 18  # ids and timestamps fit a signed 64-bit integer


class BadToken(ValueError):
    """The token is malformed, forged, truncated, expired or for another purpose."""


def _signature(secret: str, purpose: str, fields: tuple[int, ...]) -> str:
    message = ":".join((purpose, *map(str, fields))).encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:_SIGNATURE_CHARS]


def make_token(
    secret: str, customer_id: int, purpose: str = UNSUBSCRIBE, *, issued: datetime | None = None
) -> str:
    """A URL-safe token for ``customer_id``; with ``issued`` it can be checked for age."""
    fields = (customer_id,) if issued is None else (customer_id, int(issued.timestamp()))
    return ".".join((*map(str, fields), _signature(secret, purpose, fields)))


def make_message_token(secret: str, customer_id: int, send_log_id: int) -> str:
    """The unsubscribe token of one message: ``<customer id>.<send-log id>.<HMAC>``.

    It unsubscribes the customer like :func:`make_token`'s and also names the
    message whose link was used, so opt-outs can be counted per campaign. It
    never expires either.
    """
    fields = (customer_id, send_log_id)
    return ".".join((*map(str, fields), _signature(secret, _MESSAGE_PURPOSE, fields)))


_MESSAGE_PURPOSE = f"{UNSUBSCRIBE}@message"  # its own purpose: never mistaken for an issued-time token


@dataclass(frozen=True, slots=True)
class Link:
    """Whom an unsubscribe link is for, and the send-log row of the message it came in (if it names one)."""

    customer_id: int
    send_log_id: int | None = None


def read_link(secret: str, token: str) -> Link:
    """Read an unsubscribe token of either form (:func:`make_token` or :func:`make_message_token`).

    Raises BadToken as :func:`read_token` does.
    """
    if token.count(".") == 2:
        *head, signature = token.split(".")
        if not all(_is_number(part) for part in head):
            raise BadToken("malformed token")
        customer_id, send_log_id = (int(part) for part in head)
        expected = _signature(secret, _MESSAGE_PURPOSE, (customer_id, send_log_id))
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            raise BadToken("bad signature")
        return Link(customer_id, send_log_id)
    return Link(read_token(secret, token, UNSUBSCRIBE))


def read_token(
    secret: str,
    token: str,
    purpose: str = UNSUBSCRIBE,
    *,
    max_age: timedelta | None = None,
    now: datetime | None = None,
) -> int:
    """Return the customer id the token was signed for; raises BadToken otherwise.

    With ``max_age`` the token must carry its issue time and be younger than that.
    The signature is compared in constant time.
    """
    *head, signature = token.split(".")
    if len(head) != (1 if max_age is None else 2) or not all(_is_number(part) for part in head):
        raise BadToken("malformed token")
    fields = tuple(int(part) for part in head)
    expected = _signature(secret, purpose, fields)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise BadToken("bad signature")
    if max_age is not None:
        issued = datetime.fromtimestamp(fields[1], UTC)
        age = (now or datetime.now(UTC)) - issued
        if age > max_age or age < -timedelta(minutes=5):
            raise BadToken("expired token")
    return fields[0]


def occasion_ref(secret: str, customer_id: int, campaign: str, occasion_key: str) -> str:
    """An opaque, stable name for one customer's occasion: the same for every attempt, revealing nothing.

    It names the message in its Message-ID and ``X-Mailer-Occasion`` header,
    so a retry or a requeued resend carries the Message-ID of the first
    attempt and a receiver (or the relay) can drop a second copy.
    """
    message = "\0".join(("occasion", str(customer_id), campaign, occasion_key)).encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()[:20]
    return base64.b32encode(digest).decode("ascii").lower()


def _is_number(text: str) -> bool:
    # str.isdigit() alone accepts "²" and other non-ASCII digits that int() refuses.
    return text.isascii() and text.isdigit() and 0 < len(text) <= _MAX_DIGITS


MAILTO = "unsubscribe-mailto"


def mailto_token(secret: str, customer_id: int) -> str:
    """A token for the +tag of the unsubscribe address: ``<id>-<signature>``, lower-case base32.

    An address's local part may be lower-cased by the mail servers on the way, so, unlike
    :func:`make_token`, this signature survives any change of case.
    """
    return f"{customer_id}-{_address_signature(secret, customer_id)}"


def read_mailto_token(secret: str, token: str) -> int:
    """The customer id of a :func:`mailto_token` (any case); raises BadToken otherwise."""
    head, dash, signature = token.strip().lower().partition("-")
    if not dash or not _is_number(head):
        raise BadToken("malformed token")
    customer_id = int(head)
    if not hmac.compare_digest(_address_signature(secret, customer_id).encode(), signature.encode("utf-8", "replace")):
        raise BadToken("bad signature")
    return customer_id


def _address_signature(secret: str, customer_id: int) -> str:
    digest = hmac.new(secret.encode(), f"{MAILTO}:{customer_id}".encode(), hashlib.sha256).digest()[:20]
    return base64.b32encode(digest).decode("ascii").lower()  # 160 bits in 32 characters
# ---- answer links ("how did we do?") and the owner's "mark handled" link ------------------------

ANSWER = "answer"
HANDLED = "feedback-handled"
ANSWER_FORM = "answer-form"


def make_answer_token(secret: str, row_id: int, answer: int, issued: datetime) -> str:
    """``<send-log row>.<answer>.<issued>.<HMAC>``: one answer to the question one message asked."""
    fields = (row_id, answer, int(issued.timestamp()))
    return ".".join((*map(str, fields), _signature(secret, ANSWER, fields)))


def read_answer_token(secret: str, token: str, *, max_age: timedelta, now: datetime) -> tuple[int, int]:
    """(send-log row id, answer) the token was signed for; raises BadToken when forged, altered or expired."""
    *head, signature = token.split(".")
    if len(head) != 3 or not all(_is_number(part) for part in head):
        raise BadToken("malformed token")
    fields = tuple(int(part) for part in head)
    if not hmac.compare_digest(_signature(secret, ANSWER, fields).encode(), signature.encode("utf-8", "replace")):
        raise BadToken("bad signature")
    age = now - datetime.fromtimestamp(fields[2], UTC)
    if age > max_age or age < -timedelta(minutes=5):
        raise BadToken("expired token")
    return fields[0], fields[1]


def form_stamp(secret: str, token: str, issued: datetime) -> str:
    """The answer page's hidden form field: proof that the POST comes from the page this server showed.

    ``<issued>.<HMAC over the page's own token>``; see :func:`check_form_stamp`.
    """
    moment = int(issued.timestamp())
    message = "\0".join((ANSWER_FORM, token, str(moment))).encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return f"{moment}.{base64.urlsafe_b64encode(digest).decode().rstrip('=')[:_SIGNATURE_CHARS]}"


def check_form_stamp(secret: str, token: str, stamp: str, *, max_age: timedelta, now: datetime) -> None:
    """Raise BadToken unless ``stamp`` was made by :func:`form_stamp` for ``token`` within ``max_age``."""
    moment, _, _signature_part = stamp.partition(".")
    if not _is_number(moment):
        raise BadToken("malformed form stamp")
    issued = datetime.fromtimestamp(int(moment), UTC)
    if not hmac.compare_digest(form_stamp(secret, token, issued).encode(), stamp.encode("utf-8", "replace")):
        raise BadToken("bad form stamp")
    age = now - issued
    if age > max_age or age < -timedelta(minutes=5):
        raise BadToken("expired form: load the page again")
