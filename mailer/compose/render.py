"""Render one email from the three files marketers edit, in a sandbox.

``templates/<name>/subject.txt``, ``body.txt`` and ``body.html`` (the HTML
usually extends ``_layout.html``). Rendering uses Jinja2's sandbox (templates
are written by people who are not developers and must never reach Python
internals) with StrictUndefined (a missing variable is an error, never a blank
"Dear ,"). HTML is autoescaped and its CSS inlined; text and subject are not
escaped.

The sandbox is tightened for email templates, and what can be refused before
anything runs is refused at compile time, as a syntax error naming the line:
names starting with ``_`` (the way to ``__class__``, ``__globals__``,
``__subclasses__``), macros that call themselves, recursive loops, and
includes that are dynamic, absolute or climb out with ``..``. At run time every
render has a budget of :data:`MAX_STEPS` loop steps and calls, calls nest at
most :data:`MAX_DEPTH` deep, ``range`` and ``*`` build at most
:data:`MAX_ITEMS` items, and ``**`` refuses huge exponents: each is refused
before the work is done.

Templates are compiled once per Renderer (Jinja's cache; ``auto_reload`` only
for the preview, which wants edits at once) and premailer caches each parsed
stylesheet, so a pass pays for parsing once, not per message. The CSS is
inlined once per skeleton, not per message (:mod:`mailer.compose.skeleton`).
"""

from __future__ import annotations

import contextvars
import functools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mailer.compose import skeleton
from mailer.compose.formats import LOCALE_FILTERS, LOCALE_KEY, formatting_locale
from mailer.compose.inline import INLINERS, as_is
from mailer.compose.text import html_to_text, one_line, tidy_text
from mailer.config.locales import fallback_chain
from mailer.errors import MailerError

SUBJECT = "subject.txt"


TEXT = "body.txt"


HTML = "body.html"


PARTS = (SUBJECT, HTML, TEXT)


MAX_ITEMS = 10_000  # the longest range, repeated string or list a template may build


MAX_STEPS = 100_000  # loop iterations plus calls in one render


MAX_DEPTH = 40  # calls nested inside each other (macros calling macros)


MAX_EXPONENT = 100


MAX_ARGUMENT = 1_000_000  # a bigger number passed to a filter or method is a memory bomb (center, ljust…)


# A format string asking for a field a million characters wide ("%9999999s", "{:>9999999}").
_HUGE_WIDTH = re.compile(r"[%:][-#0 +<>^=,_]*\d{6,}")


class RenderError(MailerError):
    """A template is missing, broken, unsafe or refers to data that is not there."""


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str
    locale: str = ""  # the locale of the template files used ("" for the default ones)


def part_name(part: str, locale: str) -> str:
    """``subject.txt`` of the ``de`` variant is ``subject.de.txt``; the default variant's is ``subject.txt``."""
    if not locale:
        return part
    stem, _, suffix = part.rpartition(".")
    return f"{stem}.{locale}.{suffix}"


def _default(value: Any, fallback: Any = "", boolean: bool = False) -> Any:
    """Like Jinja's ``default``, but also for None and empty strings: data from a CSV is often blank."""
    if isinstance(value, jinja2.Undefined) or value is None or value == "":
        return fallback
    if boolean and not value:
        return fallback
    return value


def _plural(count: Any, singular: str = "", plural: str = "s") -> str:
    """``order{{ n | plural }}`` → "order" or "orders"; ``{{ n | plural("y", "ies") }}``."""
    return singular if count == 1 else plural


FILTERS: dict[str, Callable[..., Any]] = {
    "default": _default,
    "d": _default,
    "plural": _plural,
    **LOCALE_FILTERS,  # date, money, number and ordinal, in the reader's language (mailer.compose.formats)
}


@dataclass
class _Budget:
    steps: int = 0
    depth: int = 0


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("mailer_render_budget", default=None)


def _spend() -> _Budget:
    budget = _BUDGET.get()
    if budget is None:  # only reachable by calling a compiled template's internals directly
        raise SecurityError("templates render only through Template.render")
    budget.steps += 1
    if budget.steps > MAX_STEPS:
        raise SecurityError(f"more than {MAX_STEPS} loop steps and calls: a loop or macro runs without end")
    return budget


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _spend()
        yield item


def _bounded_range(*args: int) -> range:
    numbers_ = range(*args)
    if len(numbers_) > MAX_ITEMS:
        raise SecurityError(f"range of {len(numbers_)} items refused: at most {MAX_ITEMS}")
    return numbers_


def _check_arguments(args: Iterable[Any]) -> None:
    for value in args:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ARGUMENT:
            raise SecurityError(f"the number {value} is too large for a template (at most {MAX_ARGUMENT})")
        if isinstance(value, str) and ("%" in value or "{" in value) and _HUGE_WIDTH.search(value):
            raise SecurityError("a format field a million characters wide is refused")


def _guarded_filter(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)  # keeps Jinja's pass_context/pass_environment markers
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _check_arguments(args)
        _check_arguments(kwargs.values())
        return function(*args, **kwargs)

    return guarded


class _BoundedTemplate(jinja2.Template):
    """A template whose render carries a fresh step budget (shared with the files it includes)."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        if _BUDGET.get() is not None:
            return super().render(*args, **kwargs)
        token = _BUDGET.set(_Budget())
        try:
            return super().render(*args, **kwargs)
        except RecursionError:
            raise SecurityError("calls nest without end (a macro calling itself?)") from None
        finally:
            _BUDGET.reset(token)


class _FolderLoader(jinja2.FileSystemLoader):
    """Loads templates from one folder only: a symlink pointing outside it is not followed."""

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        root = Path(self.searchpath[0]).resolve()
        if not Path(filename).resolve().is_relative_to(root):
            raise jinja2.TemplateNotFound(template, f"{template}: points outside the templates folder")
        return source, filename, uptodate


class EmailEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, with the compile-time refusals and run-time budgets described in the module doc."""

    intercepted_binops = frozenset({"*", "**"})
    template_class = _BoundedTemplate

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Per file as last parsed: whether its output can be captured, and the files it extends or includes.
        self.skeleton_facts: dict[str, tuple[bool, tuple[str, ...]]] = {}

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        _refuse_unsafe(tree, name, filename)
        if name is not None:
            self.skeleton_facts[name] = (skeleton.captures_output(tree), skeleton.references(tree))
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "_counted", [], [], None, None, lineno=loop.iter.lineno)
        return tree

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"power with exponent {right} refused: at most {MAX_EXPONENT}")
            return left**right
        for sequence, count in ((left, right), (right, left)):
            if (
                isinstance(sequence, str | list | tuple)
                and isinstance(count, int)
                and len(sequence) * count > MAX_ITEMS
            ):
                raise SecurityError(f"repeating {len(sequence)} items {count} times refused: at most {MAX_ITEMS}")
        return left * right

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _spend()
        if budget.depth >= MAX_DEPTH:
            raise SecurityError(f"calls nested more than {MAX_DEPTH} deep: a macro calls itself?")
        _check_arguments(args)
        _check_arguments(kwargs.values())
        owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        if isinstance(owner, str):
            _check_arguments([owner])
        budget.depth += 1
        try:
            return super().call(__context, __obj, *args, **kwargs)
        finally:
            budget.depth -= 1


def _refuse_unsafe(tree: nodes.Template, name: str | None, filename: str | None) -> None:
    """Raise TemplateSyntaxError for what no email template needs and an attack would."""

    def refuse(node: nodes.Node, problem: str) -> None:
        raise jinja2.TemplateSyntaxError(problem, node.lineno, name, filename)

    for getattr_node in tree.find_all(nodes.Getattr):
        if getattr_node.attr.startswith("_"):
            refuse(getattr_node, f"'.{getattr_node.attr}' is not allowed: names starting with '_' are Python internals")
    for getitem in tree.find_all(nodes.Getitem):
        key = getitem.arg
        if isinstance(key, nodes.Const) and isinstance(key.value, str) and key.value.startswith("_"):
            refuse(getitem, f"'[{key.value!r}]' is not allowed: names starting with '_' are Python internals")
    for name_node in tree.find_all(nodes.Name):
        if name_node.name.startswith("__"):
            refuse(name_node, f"'{name_node.name}' is not allowed: names starting with '_' are Python internals")
    for loop in tree.find_all(nodes.For):
        if loop.recursive:
            refuse(loop, "recursive loops are not allowed in email templates")
    for node in tree.find_all((nodes.Include, nodes.Extends, nodes.Import, nodes.FromImport)):
        problem = _unsafe_reference(node.template)  # type: ignore[attr-defined]
        if problem:
            refuse(node, problem)
    cycle = _recursive_macro(tree)
    if cycle:
        refuse(cycle[0], f"macro '{cycle[1]}' calls itself: recursion is not allowed in email templates")


def _unsafe_reference(template: nodes.Expr) -> str | None:
    targets = template.items if isinstance(template, nodes.List | nodes.Tuple) else [template]
    for target in targets:
        if not (isinstance(target, nodes.Const) and isinstance(target.value, str)):
            return 'include, extend and import name a fixed file in quotes, such as "_footer.txt"'
        path = target.value
        if path.startswith(("/", "\\")) or "\\" in path or ".." in path.split("/") or re.match(r"^[A-Za-z]:", path):
            return f'{path!r} is outside the templates folder: name a file in it, such as "_footer.txt"'
    return None


def _recursive_macro(tree: nodes.Template) -> tuple[nodes.Node, str] | None:
    """The first macro that can reach itself through calls made in this file, or None."""
    macros = {macro.name: macro for macro in tree.find_all(nodes.Macro)}
    calls = {
        name: {
            c.node.name for c in macro.find_all(nodes.Call) if isinstance(c.node, nodes.Name) and c.node.name in macros
        }
        for name, macro in macros.items()
    }
    for start, macro in macros.items():
        seen: set[str] = set()
        frontier = list(calls[start])
        while frontier:
            current = frontier.pop()
            if current == start:
                return macro, start
            if current not in seen:
                seen.add(current)
                frontier.extend(calls[current])
    return None


def make_environment(templates_dir: Path, *, auto_reload: bool = False) -> EmailEnvironment:
    env = EmailEnvironment(
        loader=_FolderLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=lambda name: name is not None and name.endswith(".html"),
        keep_trailing_newline=False,
        auto_reload=auto_reload,
        finalize=skeleton.finalize,
    )
    env.filters.update(FILTERS)
    env.filters = {name: _guarded_filter(function) for name, function in env.filters.items()}
    env.filters["_counted"] = _counted
    env.globals["range"] = _bounded_range
    return env


class Renderer:
    """Renders named templates from one folder; each file is compiled once and cached.

    ``auto_reload`` makes Jinja look at file times on every render (the preview
    wants edits to show at once; a pass does not). ``inliner=None`` leaves the
    CSS in its <style> tag (checks that only read the words). ``skeletons`` is
    how many inlined skeletons are kept (0: inline every message on its own).
    """

    def __init__(
        self,
        templates_dir: Path,
        inliner: str | None = "premailer",
        *,
        auto_reload: bool = False,
        skeletons: int = skeleton.SIZE,
    ) -> None:
        self.templates_dir = templates_dir
        self.env = make_environment(templates_dir, auto_reload=auto_reload)
        self.inline = INLINERS[inliner] if inliner else as_is
        self.skeletons = skeleton.Skeletons(inliner, skeletons) if inliner and skeletons else None
        self._as_skeleton: dict[str, bool] = {}

    def names(self) -> list[str]:
        """Template folders (those starting with ``_`` are shared parts, not emails)."""
        if not self.templates_dir.is_dir():
            return []
        return sorted(p.name for p in self.templates_dir.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))

    def variant(self, name: str, locale: str) -> str:
        """The locale whose files ``name`` has for a reader of ``locale`` (de-AT → de → ""), "" for the default.

        A variant counts when it has its own subject and HTML (the text part may
        be derived, as for the default), so one email never mixes two languages.
        """
        folder = self.templates_dir / name
        for candidate in fallback_chain(locale):
            if all((folder / part_name(part, candidate)).is_file() for part in (SUBJECT, HTML)):
                return candidate
        return ""

    def render(
        self,
        name: str,
        context: Mapping[str, Any],
        locale: str = "",
        *,
        default_locale: str = "en",
        variant: str | None = None,
    ) -> Rendered:
        """Render subject, text and HTML in the reader's ``locale``; raises RenderError naming the file and line.

        The files are those of :meth:`variant` (or exactly ``variant`` when given,
        as the check does); dates and money are formatted for the reader.
        """
        folder = self.templates_dir / name
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or not folder.is_dir():
            raise RenderError(f"{folder}: no such template")
        used = self.variant(name, locale) if variant is None else variant
        context = {**context, LOCALE_KEY: formatting_locale(locale, used, default_locale)}
        subject_part, html_part, text_part = (part_name(p, used) for p in (SUBJECT, HTML, TEXT))
        subject = one_line(self.render_file(f"{name}/{subject_part}", context))
        if not subject:
            raise RenderError(f"{folder / subject_part}: the subject renders empty")
        inlined, html = self._html(f"{name}/{html_part}", context)
        if (folder / text_part).exists():
            text = tidy_text(self.render_file(f"{name}/{text_part}", context))
        else:
            text = html_to_text(html())
        return Rendered(subject=subject, text=text, html=inlined, locale=used)

    def _html(self, path: str, context: Mapping[str, Any]) -> tuple[str, Callable[[], str]]:
        """The HTML part with its CSS inlined, and a way to the HTML as Jinja renders it (the text may need it)."""
        if self.skeletons is None or not self.as_skeleton(path):
            html = self.render_file(path, context)
            return self.inline(html), lambda: html
        bones, values = skeleton.render_skeleton(lambda: self.render_file(path, context))
        return self.skeletons.inline_filled(bones, values), functools.partial(skeleton.fill_escaped, bones, values)

    def as_skeleton(self, path: str) -> bool:
        """Whether ``path`` and every file it extends or includes can be rendered as a skeleton."""
        if not self.env.auto_reload and path in self._as_skeleton:
            return self._as_skeleton[path]
        files, pending = set(), [path]
        answer = True
        while pending and answer:
            current = pending.pop()
            if current in files:
                continue
            files.add(current)
            try:
                self.env.get_template(current)  # parsed (again, if edited) before its facts are read
            except jinja2.TemplateError:
                answer = False  # the plain render reports it, or never reaches it
                break
            captures, referenced = self.env.skeleton_facts.get(current, (True, ()))
            answer = not captures
            pending.extend(referenced)
        self._as_skeleton[path] = answer
        return answer

    def render_file(self, path: str, context: Mapping[str, Any]) -> str:
        """Render one file of the folder; raises RenderError as ``FILE:LINE: problem``."""
        try:
            return self.env.get_template(path).render(context)
        except jinja2.TemplateNotFound as exc:
            raise RenderError(f"{self.templates_dir / (exc.name or path)}: missing") from None
        except jinja2.TemplateSyntaxError as exc:
            where = exc.filename or str(self.templates_dir / (exc.name or path))
            raise RenderError(f"{where}:{exc.lineno}: {exc.message}") from None
        except SecurityError as exc:
            raise RenderError(f"{_where(exc, self.templates_dir / path)}: refused: {exc}") from None
        except (jinja2.UndefinedError, jinja2.TemplateRuntimeError) as exc:
            raise RenderError(f"{_where(exc, self.templates_dir / path)}: {exc.message}") from None
        except (TypeError, ValueError, ArithmeticError, AttributeError, LookupError) as exc:
            raise RenderError(f"{_where(exc, self.templates_dir / path)}: {type(exc).__name__}: {exc}") from None


def _where(exc: BaseException, fallback: Path) -> str:
    """``file:line`` of the innermost template frame Jinja mapped into the traceback."""
    tb = exc.__traceback__
    where = f"{fallback}:?"
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith((".html", ".txt", ".css")) and os.path.exists(filename):
            where = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where
