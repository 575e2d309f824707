"""Template filters that write dates, money and numbers the way the reader's language does (Babel, CLDR data).

Each filter reads the locale a render is formatting for from the template
context (see :func:`formatting_locale`): ``{{ customer.customer_since | date("long") }}``
is "14 March 2021" for an English reader and "14. März 2021" for a German one,
``{{ amount | money("EUR") }}`` "€1,234.50" and "1.234,50 €". Without an argument
the filters keep the house style of the English templates ("14 March 2021",
"1,234.50"). The ``Date`` header is not written here: it stays RFC 5322.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import jinja2
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal

from mailer.config.locales import babel_locale, fallback_chain

LOCALE_KEY = "_locale"  # where a render's formatting locale sits in the context (templates cannot name it)

DATE_STYLES = ("short", "medium", "long", "full")

_CURRENCY = re.compile(r"[A-Z]{3}")

# Languages that write an ordinal as the number and a full stop ("5." for "fifth").
_ORDINAL_DOT = frozenset(
    {"de", "da", "nb", "nn", "no", "fi", "cs", "sk", "sl", "hr", "sr", "bs", "hu", "et", "lv", "is"}
)


def formatting_locale(customer_locale: str, variant: str, default_locale: str) -> str:
    """The locale a message formats in: the customer's when the text is in their language, else the text's own.

    ``variant`` is the locale of the templates used ("" for the default ones,
    which are in ``default_locale``). A de-AT customer reading German text gets
    Austrian dates ("Jänner"); reading the English default, English ones.
    """
    text_locale = variant or default_locale
    if customer_locale and text_locale in fallback_chain(customer_locale):
        return customer_locale
    return text_locale


def _locale_of(context: Any) -> str:
    value = context.get(LOCALE_KEY) if context is not None else None
    return value if isinstance(value, str) and value else "en"


def _blank(value: Any) -> bool:
    return value is None or value == "" or isinstance(value, jinja2.Undefined)


@jinja2.pass_context
def format_date_filter(context: Any, value: date | datetime | str | None, fmt: str | None = None) -> str:
    """``date`` → "14 March 2021"; ``date("long")`` (short, medium, long, full), a CLDR pattern, or strftime ``%``."""
    if _blank(value):
        return ""
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    assert value is not None
    if fmt is not None and "%" in fmt:
        return value.strftime(fmt)  # the older strftime style, kept for templates written with it
    locale = _locale_of(context)
    day = value.date() if isinstance(value, datetime) else value
    if fmt is None:
        fmt = "d MMMM y" if locale.split("-")[0] == "en" else "long"
    return format_date(day, fmt, locale=babel_locale(locale))


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None


@jinja2.pass_context
def money_filter(context: Any, value: Any, currency: str = "") -> str:
    """``money("EUR")`` → "1.234,50 €" in German; ``money("£")`` puts the symbol first; ``money`` → "1,234.50"."""
    if _blank(value):
        return ""
    locale = _locale_of(context)
    amount = _decimal(value)
    if _CURRENCY.fullmatch(currency):
        return format_currency(amount, currency, locale=babel_locale(locale))
    if locale.split("-")[0] == "en":
        return f"{currency}{float(amount):,.2f}"
    return f"{currency}{format_decimal(amount, '#,##0.00', locale=babel_locale(locale))}"


@jinja2.pass_context
def number_filter(context: Any, value: Any, decimals: int | None = None) -> str:
    """``number`` → "1,234.5" / "1.234,5"; ``number(2)`` always two decimals."""
    if _blank(value):
        return ""
    pattern = None if decimals is None else "#,##0" + ("." + "0" * max(0, min(int(decimals), 6)) if decimals else "")
    return format_decimal(_decimal(value), pattern, locale=babel_locale(_locale_of(context)))


@jinja2.pass_context
def ordinal_filter(context: Any, value: Any) -> str:
    """1 → "1st" in English, "1." in German, "1er" in French; languages without a written form get the number."""
    number = int(value)
    language = _locale_of(context).split("-")[0]
    if language == "en":
        suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
        return f"{number}{suffix}"
    if language in _ORDINAL_DOT:
        return f"{number}."
    if language == "fr":
        return f"{number}er" if number == 1 else f"{number}e"
    return str(number)


LOCALE_FILTERS: dict[str, Callable[..., Any]] = {
    "date": format_date_filter,
    "money": money_filter,
    "number": number_filter,
    "ordinal": ordinal_filter,
}
