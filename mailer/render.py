"""Render one email from the three files marketers edit, in a sandbox.

``templates/<name>/subject.txt``, ``body.txt`` and ``body.html`` (the HTML
usually extends ``_layout.html``). Rendering uses Jinja2's
SandboxedEnvironment (templates are written by people who are not developers
and must never reach Python internals) with StrictUndefined (a missing
variable is an error, never a blank "Dear ,"). HTML is autoescaped and its CSS
inlined; text and subject are not escaped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from mailer.errors import MailerError

SUBJECT = "subject.txt"
TEXT = "body.txt"
HTML = "body.html"


class RenderError(MailerError):
    """A template is missing, broken, unsafe or refers to data that is not there."""


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


def _default(value: Any, fallback: Any = "", boolean: bool = False) -> Any:
    """Like Jinja's ``default``, but also for None and empty strings: data from a CSV is often blank."""
    if isinstance(value, jinja2.Undefined) or value is None or value == "":
        return fallback
    if boolean and not value:
        return fallback
    return value


def _ordinal(value: int) -> str:
    """1 → "1st", 12 → "12th", 23 → "23rd"."""
    number = int(value)
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _format_date(value: date | datetime | None, fmt: str = "%-d %B %Y") -> str:
    if value is None:
        return ""
    return value.strftime(fmt)


FILTERS: dict[str, Callable[..., Any]] = {
    "default": _default,
    "d": _default,
    "ordinal": _ordinal,
    "date": _format_date,
}


def make_environment(templates_dir: Path) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=lambda name: name is not None and name.endswith(".html"),
        keep_trailing_newline=False,
        auto_reload=True,
    )
    env.filters.update(FILTERS)
    return env


def _inline_with_premailer(html: str) -> str:
    import premailer

    inliner = premailer.Premailer(
        html,
        keep_style_tags=False,  # @media rules (phones, dark mode) are kept in a <style> regardless
        remove_classes=False,
        strip_important=False,
        allow_network=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
    )
    result: str = inliner.transform()
    return result


def _inline_with_css_inline(html: str) -> str:
    import css_inline

    result: str = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False).inline(html)
    return result


INLINERS: dict[str, Callable[[str], str]] = {
    "premailer": _inline_with_premailer,
    "css-inline": _inline_with_css_inline,
}


class Renderer:
    """Renders named templates from one folder; compiled templates are cached by Jinja."""

    def __init__(self, templates_dir: Path, inliner: str = "premailer") -> None:
        self.templates_dir = templates_dir
        self.env = make_environment(templates_dir)
        self.inline = INLINERS[inliner]

    def names(self) -> list[str]:
        """Template folders (those starting with ``_`` are shared parts, not emails)."""
        if not self.templates_dir.is_dir():
            return []
        return sorted(
            p.name for p in self.templates_dir.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))
        )

    def render(self, name: str, context: Mapping[str, Any]) -> Rendered:
        """Render subject, text and HTML; raises RenderError naming the file and line."""
        folder = self.templates_dir / name
        if not folder.is_dir():
            raise RenderError(f"{folder}: no such template")
        subject = one_line(self._render_file(f"{name}/{SUBJECT}", context))
        if not subject:
            raise RenderError(f"{folder / SUBJECT}: the subject renders empty")
        html = self._render_file(f"{name}/{HTML}", context)
        if (folder / TEXT).exists():
            text = self._render_file(f"{name}/{TEXT}", context).strip() + "\n"
        else:
            text = html_to_text(html)
        return Rendered(subject=subject, text=text, html=self.inline(html))

    def _render_file(self, path: str, context: Mapping[str, Any]) -> str:
        try:
            return self.env.get_template(path).render(context)
        except jinja2.TemplateNotFound as exc:
            raise RenderError(f"{self.templates_dir / exc.name}: missing") from None
        except jinja2.TemplateSyntaxError as exc:
            where = self.templates_dir / (exc.name or path)
            raise RenderError(f"{where}:{exc.lineno}: {exc.message}") from None
        except jinja2.exceptions.SecurityError as exc:
            raise RenderError(f"{self.templates_dir / path}:{_template_line(exc)}: unsafe: {exc}") from None
        except jinja2.UndefinedError as exc:
            raise RenderError(f"{self.templates_dir / path}:{_template_line(exc)}: {exc.message}") from None
        except (TypeError, ValueError, ArithmeticError, AttributeError, LookupError) as exc:
            raise RenderError(f"{self.templates_dir / path}:{_template_line(exc)}: {type(exc).__name__}: {exc}") from None


def _template_line(exc: BaseException) -> str:
    """The template line Jinja mapped into the traceback, or "?"."""
    tb = exc.__traceback__
    line = "?"
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith((".html", ".txt")):
            line = str(tb.tb_lineno)
        tb = tb.tb_next
    return line


_SPACE = re.compile(r"\s+")


def one_line(value: str) -> str:
    """Collapse every run of whitespace (line breaks included) into one space."""
    return _SPACE.sub(" ", value.replace("\0", " ")).strip()


class _TextExtractor(HTMLParser):
    _BLOCKS = frozenset({"p", "div", "br", "tr", "h1", "h2", "h3", "h4", "li", "table", "hr"})
    _HIDDEN = frozenset({"style", "script", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0
        self.href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self.hidden += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n\n" if tag == "p" else "\n")
        elif tag == "a":
            self.href = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag == "a" and self.href:
            self.parts.append(f" <{self.href}>")
            self.href = None

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(_SPACE.sub(" ", data))


def html_to_text(html: str) -> str:
    """A readable plain-text version of an HTML body, links kept as ``<url>``."""
    parser = _TextExtractor()
    parser.feed(html)
    lines = [line.strip() for line in "".join(parser.parts).splitlines()]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text + "\n"
