"""How an address goes on the wire: the domain as IDNA A-labels, UTF-8 only where nothing else will do.

An address is stored as the customer gave it (``anna@bücher.example`` or
``anna@xn--bcher-kva.example``). Any relay can carry a domain once it is
written in A-labels, so both spellings go out as ``xn--…`` in the envelope and
the headers; only a non-ASCII local part (``jürgen@…``) has no ASCII form and
needs a relay that offers SMTPUTF8 (RFC 6531) and raw UTF-8 headers (RFC 6532).
"""

from __future__ import annotations

import functools

import idna


class AddressError(ValueError):
    """An address whose domain cannot be written in IDNA A-labels."""


@functools.lru_cache(maxsize=4096)
def ascii_domain(domain: str) -> str:
    """``domain`` in A-labels (``bücher.example`` → ``xn--bcher-kva.example``); ASCII domains lower-cased.

    UTS #46 mapping first, as browsers and mail clients do, so ``BÜCHER.example``
    and ``bücher.example`` are the same domain. Raises AddressError.
    """
    if domain.isascii():
        return domain.lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise AddressError(f"domain {domain!r} cannot be written in IDNA: {exc}") from None


def wire_address(address: str) -> str:
    """The address as the envelope and the headers carry it: the local part as given, the domain in A-labels."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    return f"{local}@{ascii_domain(domain)}"


def needs_smtputf8(address: str) -> bool:
    """Whether the address can only travel over SMTPUTF8: its local part is not ASCII (the domain always can)."""
    return not address.rpartition("@")[0].isascii()

