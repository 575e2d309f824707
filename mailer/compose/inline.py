"""CSS inlined into the HTML part: premailer (each stylesheet parsed once per process) or css-inline (faster).

Each inliner parses the HTML and writes it out again with its own escaping;
:data:`SERIALISERS` says how each writes a text or attribute value it parsed,
so that :mod:`mailer.compose.skeleton` can write values back into an inlined
skeleton with the same bytes.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_PREMAILER_OPTIONS: dict[str, Any] = {
    "keep_style_tags": False,  # @media rules (phones, dark mode) are kept in a <style> regardless
    "remove_classes": False,
    "strip_important": False,
    "allow_network": False,
    "disable_validation": True,
    "cache_css_parsing": True,  # the shared stylesheet is parsed once per process, not per message
    # No HTML attributes made up from CSS (a width="100%" over the layout's width="560"): the
    # layout sets the attributes old clients need itself, and css-inline adds none either.
    "disable_basic_attributes": ["align", "valign", "bgcolor", "width", "height"],
    "cssutils_logging_level": logging.CRITICAL,
}


def _inline_with_premailer(html: str) -> str:
    result: str = _premailer_class()(html, **_PREMAILER_OPTIONS).transform()
    return result


@functools.cache
def _premailer_class() -> Any:
    import premailer

    class _Leftover(list[Any]):
        """A stylesheet's rules that stay in a ``<style>`` (media queries), with their text once made."""

        text: str | None = None

    @functools.lru_cache(maxsize=64)
    def stylesheet_rules(css_body: str, ruleset_index: int) -> tuple[tuple[Any, ...], _Leftover]:
        rules, leftover = premailer.Premailer._parse_style_rules(prototype, css_body, ruleset_index)
        return tuple(rules), _Leftover(leftover)

    class StylesheetOnce(premailer.Premailer):  # type: ignore[misc]
        """premailer, turning each stylesheet into rules (and its media queries into text) once per process.

        Every message of a pass carries the same stylesheet, and premailer
        re-derived its rules and re-serialised its media queries with cssutils
        for each one: two thirds of its time. Both depend only on the
        stylesheet and the options, which are the same for every message.
        """

        def _parse_style_rules(self, css_body: str, ruleset_index: int) -> tuple[list[Any], list[Any]]:
            rules, leftover = stylesheet_rules(css_body, ruleset_index)
            return list(rules), leftover

        def _css_rules_to_string(self, rules: list[Any]) -> str:
            if not isinstance(rules, _Leftover):
                return str(super()._css_rules_to_string(rules))
            if rules.text is None:
                rules.text = str(super()._css_rules_to_string(rules))
            return rules.text

    prototype = premailer.Premailer("", **_PREMAILER_OPTIONS)
    return StylesheetOnce


@functools.cache
def _css_inliner() -> Any:
    import css_inline

    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def _inline_with_css_inline(html: str) -> str:
    result: str = _css_inliner().inline(html)
    return result


def as_is(html: str) -> str:
    return html


INLINERS: dict[str, Callable[[str], str]] = {
    "premailer": _inline_with_premailer,
    "css-inline": _inline_with_css_inline,
}


@dataclass(frozen=True, slots=True)
class Serialiser:
    """How an inliner writes back a value it parsed: in text, and as a whole quoted attribute value."""

    text: Callable[[str], str]
    # (element, attribute, value) → the value with its quotes; None for a value it writes in a way not known here
    attribute: Callable[[str, str, str], str | None]
    leading_blanks_trimmed: Callable[[str, str], bool]  # (element, attribute) → whether leading blanks are dropped


def _html5ever_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("\xa0", "&nbsp;").replace("<", "&lt;").replace(">", "&gt;")


def _html5ever_attribute(element: str, attribute: str, value: str) -> str | None:
    return '"' + value.replace("&", "&amp;").replace("\xa0", "&nbsp;").replace('"', "&quot;") + '"'


def _never(element: str, attribute: str) -> bool:
    return False


def _libxml2_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _libxml2_uri(element: str, attribute: str) -> bool:
    """libxml2 writes these as URIs (HTML 4's appendix B.2.1): leading blanks dropped, the rest %-escaped."""
    return attribute in ("href", "action", "src") or (attribute == "name" and element == "a")


_NOT_PRINTABLE_ASCII = re.compile(r"[^\x21-\x7e]+")


def _percent_escaped(match: re.Match[str]) -> str:
    return "".join(f"%{byte:02X}" for byte in match.group().encode("utf-8"))


def _libxml2_attribute(element: str, attribute: str, value: str) -> str | None:
    if "<!--" in value:  # kept as written, as a server-side include, up to its "-->"
        return None
    if _libxml2_uri(element, attribute):
        value = _NOT_PRINTABLE_ASCII.sub(_percent_escaped, value.lstrip(" \t\n\r"))
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if '"' not in value:
        return f'"{value}"'
    if "'" not in value:
        return f"'{value}'"
    return '"' + value.replace('"', "&quot;") + '"'


SERIALISERS: dict[str, Serialiser] = {
    # lxml's libxml2 (2.14), as premailer calls it: text and attributes escaped, URIs %-escaped.
    "premailer": Serialiser(_libxml2_text, _libxml2_attribute, _libxml2_uri),
    # css-inline's html5ever-style serialiser.
    "css-inline": Serialiser(_html5ever_text, _html5ever_attribute, _never),
}
