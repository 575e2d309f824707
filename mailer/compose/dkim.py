"""Optional DKIM signing (RFC 6376, dkimpy) of the exact bytes a transport sends or writes.

Signing happens last, on the serialised message, so nothing can refold or
re-encode a header after the signature was computed. Canonicalisation is
relaxed/relaxed, so a relay that refolds a header at its whitespace does not
break the signature. RFC 8058 asks that List-Unsubscribe and
List-Unsubscribe-Post be covered; they, From, To, Subject and Reply-To are
signed once more than they occur ("oversigned"), so nobody down the line can
add a second one to a signed message.
"""

from __future__ import annotations

from collections.abc import Callable

import dkim
from dkim.crypto import UnparsableKeyError, parse_pem_private_key

from mailer.addresses import ascii_domain
from mailer.config import ConfigError, SenderSettings

Sign = Callable[[bytes], bytes]

SIGNED = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "mime-version",
    "content-type",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "auto-submitted",
)
OVERSIGNED = ("from", "to", "subject", "reply-to", "list-unsubscribe", "list-unsubscribe-post")


class DkimSigner:
    """Adds a ``DKIM-Signature`` header to serialised messages (CRLF or LF line ends alike)."""

    def __init__(self, selector: str, domain: str, private_key: bytes) -> None:
        try:
            parse_pem_private_key(private_key)
        except UnparsableKeyError as exc:
            raise ValueError(f"not a PEM RSA private key: {exc}") from None
        self.selector = selector.encode("ascii")
        self.domain = ascii_domain(domain).encode("ascii")  # the d= domain as the From header spells it
        self._key = private_key
        self._headers = [h.encode() for h in (*SIGNED, *OVERSIGNED)]

    def __call__(self, data: bytes) -> bytes:
        head_end = data.find(b"\n")
        linesep = b"\r\n" if head_end > 0 and data[head_end - 1 : head_end] == b"\r" else b"\n"
        signature = dkim.sign(
            data,
            self.selector,
            self.domain,
            self._key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=self._headers,
            linesep=linesep,
        )
        return bytes(signature) + data


def signer_for(sender: SenderSettings) -> Sign | None:
    """The signer ``[sender] dkim_selector``/``dkim_key_file`` ask for, or None when DKIM is off.

    Raises ConfigError naming the key file when it cannot be read or is not a key.
    """
    if not sender.dkim_selector or sender.dkim_key_file is None:
        return None
    where = f"[sender] dkim_key_file: {sender.dkim_key_file}"
    try:
        key = sender.dkim_key_file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it: {exc.strerror}") from None
    try:
        return DkimSigner(sender.dkim_selector, sender.domain, key)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
