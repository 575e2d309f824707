"""Signed unsubscribe tokens: ``<customer id>.<HMAC>``.

The purpose is bound into the signature, so a token minted for one purpose
never verifies for another, and nobody can unsubscribe a customer whose
token they were not sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

UNSUBSCRIBE = "unsubscribe"
_SIGNATURE_CHARS = 32  # 192 bits of HMAC-SHA256, short enough for one header line


class BadToken(ValueError):
    """The token is malformed, forged, truncated or for another purpose."""


def _signature(secret: str, customer_id: int, purpose: str) -> str:
    digest = hmac.new(secret.encode(), f"{purpose}:{customer_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:_SIGNATURE_CHARS]


def make_token(secret: str, customer_id: int, purpose: str = UNSUBSCRIBE) -> str:
    return f"{customer_id}.{_signature(secret, customer_id, purpose)}"


def read_token(secret: str, token: str, purpose: str = UNSUBSCRIBE) -> int:
    """Return the customer id the token was signed for; raises BadToken otherwise."""
    head, dot, signature = token.partition(".")
    if not dot or not head.isdigit() or len(head) > 18:
        raise BadToken("malformed token")
    customer_id = int(head)
    expected = _signature(secret, customer_id, purpose)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise BadToken("bad signature")
    return customer_id
