"""Customer locales: BCP 47 tags (``de``, ``de-AT``, ``pt-BR``) checked against Babel's CLDR data.

A locale is stored and written in its BCP 47 form (``de-AT``, not ``de_AT``), the
form template file names use (``subject.de-AT.txt``). The fallback chain of a
locale is the locale itself, then its language alone: ``de-AT → de``; the
default templates come after the chain.
"""

from __future__ import annotations

from functools import lru_cache

from babel import Locale, UnknownLocaleError


class LocaleProblem(ValueError):
    """A locale tag that is malformed or that Babel's CLDR data does not know."""


@lru_cache(maxsize=512)
def normalize_locale(tag: str) -> str:
    """``de_at`` or ``DE-at`` → ``de-AT``; raises LocaleProblem for a tag that is not a known locale."""
    text = tag.strip().replace("_", "-")
    if not text:
        raise LocaleProblem("is empty")
    try:
        parsed = Locale.parse(text, sep="-")
    except UnknownLocaleError:
        raise LocaleProblem(f"unknown locale {tag!r}: use a BCP 47 tag such as 'de', 'de-AT' or 'pt-BR'") from None
    except (ValueError, TypeError):
        raise LocaleProblem(f"not a BCP 47 locale tag: {tag!r} (expected e.g. 'de', 'de-AT' or 'pt-BR')") from None
    return "-".join(part for part in (parsed.language, parsed.script, parsed.territory) if part)


def fallback_chain(tag: str) -> tuple[str, ...]:
    """The locales whose templates a customer with ``tag`` may get, most specific first: ``de-AT`` → (de-AT, de)."""
    if not tag:
        return ()
    parts = tag.split("-")
    chain = ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]
    return tuple(dict.fromkeys(chain))


@lru_cache(maxsize=512)
def babel_locale(tag: str) -> Locale:
    """The Babel locale for a normalised tag (``de-AT`` → ``de_AT``)."""
    return Locale.parse(tag, sep="-")
