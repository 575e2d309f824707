"""CSS inlined into the HTML part: premailer (each stylesheet parsed once per process) or css-inline (faster)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
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
