"""Computed inline styles per element, normalised, so two CSS inliners can be compared by what they mean."""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Where parsers differ without changing the rendering: html5ever adds <tbody>; <head> content may move.
_IGNORED = frozenset({"tbody", "html", "head", "meta", "title", "style"})


def _colour(value: str) -> str:
    return re.sub(
        r"#([0-9a-fA-F])([0-9a-fA-F])([0-9a-fA-F])\b", lambda m: "#" + "".join(c * 2 for c in m.groups()), value
    )


def parse_style(style: str | None) -> dict[str, str]:
    """``"margin: 0;color:#FFF"`` → ``{"margin": "0", "color": "#ffffff"}`` (later declarations win)."""
    found: dict[str, str] = {}
    for declaration in (style or "").split(";"):
        name, colon, value = declaration.partition(":")
        if not colon:
            continue
        value = _colour(" ".join(value.replace("'", '"').split())).lower()
        value = re.sub(r"\s*,\s*", ", ", value)
        found[name.strip().lower()] = value
    return found


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _IGNORED:
            return
        attributes = tuple(sorted((k, v or "") for k, v in attrs if k != "style"))
        style = tuple(sorted(parse_style(dict(attrs).get("style")).items()))
        self.elements.append((tag, attributes, style))


def computed_styles(html: str) -> list[tuple[str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]]:
    """Every body element in document order: (tag, other attributes, normalised inline style)."""
    parser = _Elements()
    parser.feed(html)
    return parser.elements
