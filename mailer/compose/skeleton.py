"""CSS inlined once per skeleton instead of once per message, with the same bytes.

A *skeleton* is the HTML part of a template as rendered for one customer, with
every plain ``{{ value }}`` written as a placeholder token (the values are kept
aside). Conditions and loops run on the real values, so two customers whose
emails differ only in names, dates and signed links share a skeleton, and the
inliner runs on it once: each further message is the cached inlined skeleton
with its own values written back in, escaped exactly as the inliner's
serialiser would have written them (:class:`mailer.compose.inline.Serialiser`).
Markup values (``|safe``) stay in the skeleton as they are.

Identity with inlining each message is kept by refusing, never by guessing.
A skeleton is used only if every token comes out of the inliner exactly once,
in the same element (and attribute) it went in, in text of an ordinary element
or in an attribute no stylesheet can look at (never ``class``, ``style``,
``id``, a tag or attribute name, a comment, ``<style>`` or ``<script>``), under
a stylesheet whose selectors cannot depend on text (``:empty``, ``:contains``
…); and only after it gave the very bytes of inlining a real message. A
message is inlined on its own when one of its values holds a character the
parsers rewrite (a control character, CR, a noncharacter) or when a text run
would be left with nothing but white space (the parsers drop or move such runs).
Templates whose output can be captured and looked at (macros, ``{% set %}`` and
``{% filter %}`` blocks, imports, ``caller``, ``self`` or ``super()`` other than
``{{ super() }}``) are rendered and inlined per message as before.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import html
import logging
import re
import secrets
import string
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import jinja2
from jinja2 import nodes
from markupsafe import Markup, escape

from mailer.compose.inline import INLINERS, SERIALISERS, Serialiser

log = logging.getLogger(__name__)

# Letters and digits only, so neither parser nor serialiser touches a token; random per process,
# so no template text and no customer's value can spell one.
PREFIX: Final = f"q{secrets.token_hex(8)}t"
_TOKEN = re.compile(PREFIX + r"(\d+)x")

SIZE = 128  # skeletons kept per renderer (a pass has a few dozen: templates, languages, branches)

_VALUES: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("mailer_skeleton_values", default=None)


@jinja2.pass_eval_context
def finalize(eval_ctx: nodes.EvalContext, value: Any) -> Any:
    """Jinja's ``finalize``: while a skeleton is rendered, a plain escaped value becomes a token."""
    values = _VALUES.get()
    if values is None or not eval_ctx.autoescape or hasattr(value, "__html__"):
        return value
    values.append(str(value))  # what escape() would have escaped (and raising as it would)
    return Markup(f"{PREFIX}{len(values) - 1}x")


def render_skeleton(render: Callable[[], str]) -> tuple[str, list[str]]:
    """Run ``render`` (one template's render) collecting its plain values: the skeleton and the values."""
    values: list[str] = []
    reset = _VALUES.set(values)
    try:
        return render(), values
    finally:
        _VALUES.reset(reset)


def fill_escaped(skeleton: str, values: list[str]) -> str:
    """The HTML the template renders without tokens: each token replaced by its value as Jinja escapes it."""
    pieces = _TOKEN.split(skeleton)
    for i in range(1, len(pieces), 2):
        pieces[i] = escape(values[int(pieces[i])])
    return "".join(pieces)


# ---- which templates may be rendered as skeletons (decided when Jinja parses each file) ----------------

_CAPTURING = (nodes.Macro, nodes.CallBlock, nodes.AssignBlock, nodes.FilterBlock, nodes.Import, nodes.FromImport)
_CAPTURED_NAMES = frozenset({"self", "super", "caller", "varargs", "kwargs"})


def captures_output(tree: nodes.Template) -> bool:
    """Whether the file can hold rendered output in a value and look at it.

    Such output would hold tokens where the real text belongs, and a condition
    or filter on it (``{% if self.x()|length %}``) could go the other way.
    ``{{ super() }}`` and ``{{ self.block() }}`` only write it out.
    """
    if any(True for _ in tree.find_all(_CAPTURING)):
        return True
    written: set[int] = set()
    for output in tree.find_all(nodes.Output):
        for child in output.nodes:
            if isinstance(child, nodes.Call) and not (child.args or child.kwargs or child.dyn_args or child.dyn_kwargs):
                callee = child.node
                if isinstance(callee, nodes.Name) and callee.name == "super":
                    written.add(id(callee))
                elif (
                    isinstance(callee, nodes.Getattr)
                    and isinstance(callee.node, nodes.Name)
                    and callee.node.name == "self"
                ):
                    written.add(id(callee.node))
    return any(name.name in _CAPTURED_NAMES and id(name) not in written for name in tree.find_all(nodes.Name))


def references(tree: nodes.Template) -> tuple[str, ...]:
    """The files this one extends or includes (the sandbox allows fixed names only)."""
    found: list[str] = []
    for node in tree.find_all((nodes.Include, nodes.Extends)):
        target = node.template  # type: ignore[attr-defined]
        for item in target.items if isinstance(target, nodes.List | nodes.Tuple) else [target]:
            if isinstance(item, nodes.Const) and isinstance(item.value, str):
                found.append(item.value)
    return tuple(found)


# ---- where each token sits, in the skeleton and in the inliner's output -----------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_VOID = _words("area base br col embed hr img input link meta param source track wbr basefont bgsound frame keygen")
_RAW = _words("script style xmp iframe noembed noframes noscript textarea title plaintext")
# A comment, a doctype or processing instruction, or a tag (whose quoted values may hold ">").
_MARKUP = re.compile(r"""<!--.*?(?:-->|\Z)|<[!?][^>]*>?|<(/?)([A-Za-z][^\s/>]*)((?:[^>"']|"[^"]*"|'[^']*')*)>""", re.S)
_ATTRIBUTE = re.compile(r"""([^\s"'>/=]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s>]*))?""")

# Text here is parsed the same whatever it says (as long as it is not blank): no table, head,
# select or pre-like element, whose parsing moves, drops or trims text.
_TEXT_PARENTS = _words(
    "a abbr address article aside b bdi bdo big blockquote button caption center cite code dd del details "
    "dfn div dt em figcaption figure font footer h1 h2 h3 h4 h5 h6 header i ins kbd label legend li main "
    "mark nav p q s samp section small span strike strong sub summary sup td th time title tt u var"
)
# Attributes a token may sit in: read by no selector of the shipped kind and rewritten by no inliner.
_ATTRIBUTES = _words("href src alt title action value name placeholder cite datetime aria-label aria-description")
_NO_TOKEN_ELEMENTS = frozenset({"style", "script", "link", "meta", "base", "html", "head", "body"})
# Selectors that look at text or at attribute values a token could be in.
_CONTENT_SELECTOR = re.compile(r":(?:-[a-z]+-)?(?:empty|contains|has|blank|lang|dir|only-whitespace)\b", re.I)
_ATTRIBUTE_SELECTOR = re.compile(r"\[\s*([^\s\]=~|^$*]+)")
_STYLE_ELEMENT = re.compile(r"<style\b[^>]*>(.*?)</style", re.I | re.S)
_UNFILLABLE = re.compile(
    "[\x00-\x08\x0b-\x1f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff"
    + "".join(chr(plane << 16 | 0xFFFE) + chr(plane << 16 | 0xFFFF) for plane in range(1, 17))
    + "]"
)
_BLANK = " \t\n\r\f"
_ESCAPED_BLANK = ("%20", "%09", "%0A", "%0D")


@dataclass(frozen=True, slots=True)
class _Place:
    """A stretch of HTML holding tokens: a text run, a quoted attribute value, or somewhere no token may be."""

    kind: str  # "text", "attribute" or "other"
    element: str
    attribute: str
    start: int
    end: int


def _places(markup: str) -> Iterator[_Place]:
    """Every text run, quoted attribute value and other stretch of ``markup`` that holds the token prefix."""
    stack: list[str] = []  # open elements, as written (implied ends are not worked out: only the parent counts)
    size = len(markup)
    text_start = skip = 0
    for tag in _MARKUP.finditer(markup):
        lt, end = tag.span()
        if lt < skip:  # inside a <style>, <script> or <title>
            continue
        if markup.find(PREFIX, text_start, lt) >= 0:
            yield _Place("text", stack[-1] if stack else "", "", text_start, lt)
        text_start = end
        if tag.group(2) is None:  # a comment, doctype or processing instruction
            if markup.find(PREFIX, lt, end) >= 0:
                yield _Place("other", "", "", lt, end)
            continue
        name = tag.group(2).lower()
        if PREFIX in name:
            yield _Place("other", name, "", tag.start(2), tag.end(2))
        if tag.group(1):
            if name in stack:
                while stack.pop() != name:
                    pass
            if PREFIX in tag.group(3):
                yield _Place("other", name, "", tag.start(3), tag.end(3))
            continue
        if PREFIX in tag.group(3):
            yield from _attribute_places(markup, name, tag.group(3), tag.start(3))
        if name in _RAW:
            close = re.compile(rf"</{re.escape(name)}[\s/>]", re.I).search(markup, end)
            stop = size if close is None else close.start()
            if markup.find(PREFIX, end, stop) >= 0:
                yield _Place("text" if name == "title" else "other", name, "", end, stop)
            text_start = skip = stop
        elif name not in _VOID:
            stack.append(name)
    if markup.find(PREFIX, text_start, size) >= 0:
        yield _Place("text", stack[-1] if stack else "", "", text_start, size)


def _attribute_places(markup: str, element: str, attributes: str, offset: int) -> Iterator[_Place]:
    covered = 0
    for match in _ATTRIBUTE.finditer(attributes):
        if PREFIX in attributes[covered : match.start()]:
            yield _Place("other", element, "", offset + covered, offset + match.start())
        covered = match.end()
        name, value = match.group(1).lower(), match.group(2)
        if PREFIX in name:
            yield _Place("other", element, name, offset + match.start(1), offset + match.end(1))
        if value is not None and PREFIX in value:
            kind = "attribute" if value[:1] in ("'", '"') else "other"
            yield _Place(kind, element, name, offset + match.start(2), offset + match.end(2))
    if PREFIX in attributes[covered:]:
        yield _Place("other", element, "", offset + covered, offset + len(attributes))


def _tokens(markup: str, place: _Place) -> list[tuple[int, int, int]]:
    """(value index, start, end) of each token in ``place``."""
    return [(int(m.group(1)), m.start(), m.end()) for m in _TOKEN.finditer(markup, place.start, place.end)]


# ---- a cached inlined skeleton and how each message's values go back into it -----------------------------

_TextSlot = int  # the value's index
_AttributeSlot = tuple[str, str, tuple[str | int, ...]]  # element, attribute, literal text and value indices


@dataclass(slots=True)
class _Skeleton:
    """An inlined skeleton cut at its tokens: ``parts[0] slot parts[1] slot … parts[-1]``."""

    parts: tuple[str, ...]
    slots: tuple[_TextSlot | _AttributeSlot, ...]
    serialiser: Serialiser
    blank_runs: tuple[tuple[int, ...], ...]  # text runs that are white space but for their values
    lead_guards: tuple[tuple[int, ...], ...]  # values one of which must stop a URI attribute's trimming
    proven: bool = False  # filled once with a message's values, it gave that message's inlined bytes

    def fill(self, values: list[str]) -> str | None:
        """The inlined HTML with ``values`` in it, or None when they would not be parsed as the tokens were."""
        if _UNFILLABLE.search("".join(values)):
            return None
        for run in self.blank_runs:
            if not any(values[i].strip(_BLANK) for i in run):
                return None
        for guard in self.lead_guards:
            if not any(values[i].lstrip(_BLANK) for i in guard):
                return None
        text, attribute = self.serialiser.text, self.serialiser.attribute
        out: list[str] = []
        for part, slot in zip(self.parts, self.slots, strict=False):
            out.append(part)
            if isinstance(slot, int):
                out.append(text(values[slot]))
                continue
            element, name, pieces = slot
            written = attribute(element, name, "".join(p if isinstance(p, str) else values[p] for p in pieces))
            if written is None:
                return None
            out.append(written)
        out.append(self.parts[-1])
        return "".join(out)


def _cut(skeleton: str, inlined: str, serialiser: Serialiser) -> _Skeleton | str:
    """The inlined skeleton ready to fill, or why it cannot be used (the tokens went somewhere unsafe)."""
    expected = {int(m.group(1)) for m in _TOKEN.finditer(skeleton)}
    if skeleton.count(PREFIX) != len(expected) or len(_TOKEN.findall(skeleton)) != len(expected):
        return "a token appears twice"
    css = " ".join(_STYLE_ELEMENT.findall(skeleton))
    if PREFIX in css:
        return "a value inside a <style>"
    if _CONTENT_SELECTOR.search(css):
        return "the stylesheet has a selector that reads text"
    read_by_css = {name.lower() for name in _ATTRIBUTE_SELECTOR.findall(css)}
    before = {i: (p.kind, p.element, p.attribute) for p in _places(skeleton) for i, _, _ in _tokens(skeleton, p)}
    if inlined.count(PREFIX) != len(expected) or len(before) != len(expected):
        return "a token was dropped, doubled or misread by the inliner"
    parts: list[str] = []
    slots: list[_TextSlot | _AttributeSlot] = []
    blank_runs: list[tuple[int, ...]] = []
    lead_guards: list[tuple[int, ...]] = []
    done = 0
    for place in _places(inlined):
        found = _tokens(inlined, place)
        for index, _, _ in found:
            if before.get(index) != (place.kind, place.element, place.attribute):
                return f"value {index} moved from {before.get(index)} to {place.kind} of <{place.element}>"
        if place.kind == "text":
            if place.element not in _TEXT_PARENTS:
                return f"a value in text of <{place.element}>"
            literal = _TOKEN.sub("", inlined[place.start : place.end])
            if not literal.strip(_BLANK):
                blank_runs.append(tuple(index for index, _, _ in found))
            for index, start, end in found:
                parts.append(inlined[done:start])
                slots.append(index)
                done = end
        elif place.kind == "attribute":
            if (
                (place.attribute not in _ATTRIBUTES and not place.attribute.startswith("data-"))
                or place.attribute in read_by_css
                or place.element in _NO_TOKEN_ELEMENTS
            ):
                return f"a value in the {place.attribute} attribute of <{place.element}>"
            pieces = _attribute_pieces(inlined, place, found)
            literal = "".join(piece for piece in pieces if isinstance(piece, str))
            if serialiser.attribute(place.element, place.attribute, literal) is None:
                return f"the {place.attribute} attribute of <{place.element}> holds what the inliner keeps as it is"
            guard = serialiser.leading_blanks_trimmed(place.element, place.attribute) and _lead_guard(pieces)
            if guard:
                lead_guards.append(guard)
            parts.append(inlined[done : place.start])
            slots.append((place.element, place.attribute, pieces))
            done = place.end
        else:
            return f"a value inside <{place.element}> markup itself"
    parts.append(inlined[done:])
    return _Skeleton(tuple(parts), tuple(slots), serialiser, tuple(blank_runs), tuple(lead_guards))


def _attribute_pieces(inlined: str, place: _Place, found: list[tuple[int, int, int]]) -> tuple[str | int, ...]:
    """The attribute's value as parsed (the serialiser's entities undone), cut at its tokens."""
    pieces: list[str | int] = []
    done = place.start + 1  # after the opening quote
    for index, start, end in found:
        pieces.append(html.unescape(inlined[done:start]))
        pieces.append(index)
        done = end
    pieces.append(html.unescape(inlined[done : place.end - 1]))
    return tuple(piece for piece in pieces if piece != "")


def _lead_guard(pieces: tuple[str | int, ...]) -> tuple[int, ...]:
    """Values that must not all be blank for trimming to stop where it does in the real value.

    The serialiser trims leading blanks off the whole value. The skeleton's own
    literal text is already escaped (a blank is ``%20``), so when every value
    before it is blank, the real value would be trimmed into the literal, the
    filled one not.
    """
    leading: list[int] = []
    for piece in pieces:
        if isinstance(piece, int):
            leading.append(piece)
        elif piece.startswith(_ESCAPED_BLANK) or piece[0] in _BLANK:
            return tuple(leading)
        else:
            return ()
    return ()


# Values that make serialisers differ (entities, quotes of either kind, no-break spaces, URIs'
# %-escapes and trimming), put through a small document once per process before any skeleton is
# trusted: an inliner upgraded to write them otherwise turns reuse off instead of changing emails.
_PROBE_VALUES = (
    "a&b<c>d\"e'f",
    "&amp; &nbsp; &#34; \u00a0x\u00a0",
    " \t\nlead and trail \t\n",
    "Zoë 王芳 😀 \u05e9\u05dc\u05d5\u05dd \u202eRTL\u202c",
    "100% {{ x }} <!--c--> ?a=1&b=2#f",
    'only"double',
    "only'single",
    "",
)
_PROBE = (
    "<!DOCTYPE html><html><head><title>{0}</title><style>p {{ color: red }} td a {{ color: blue }}</style></head>"
    '<body><table><tr><td>x {1}<a href="{2}" title="{3}">go {4}</a><img src="{5}" alt="{6}"></td></tr></table>'
    '<p>{7}: <a href="https://x.example/{8}?q={9}" name="n{10}">{11}</a></p><form action="{12}"></form></body></html>'
)


@functools.cache
def serialiser_matches(inliner: str) -> bool:
    """Whether filling gives what the installed ``inliner`` writes, for every probe value in every place."""
    inline, serialiser = INLINERS[inliner], SERIALISERS[inliner]
    count = sum(1 for _, field, _, _ in string.Formatter().parse(_PROBE) if field is not None)
    bones = _PROBE.format(*(f"{PREFIX}{i}x" for i in range(count)))
    cut = _cut(bones, inline(bones), serialiser)
    if isinstance(cut, str):
        log.warning("%s: inlining every message (the probe skeleton cannot be used: %s)", inliner, cut)
        return False
    for shift in range(len(_PROBE_VALUES)):
        values = [_PROBE_VALUES[(shift + i) % len(_PROBE_VALUES)] or "x" for i in range(count)]
        filled = cut.fill(values)  # None (inlined per message) is always safe
        if filled is not None and filled != inline(fill_escaped(bones, values)):
            log.warning("%s: inlining every message (it escapes values unlike mailer.compose.inline says)", inliner)
            return False
    return True


_UNSEEN: Final = object()


class Skeletons:
    """A bounded LRU of inlined skeletons for one inliner, and the counts a benchmark reads.

    A skeleton is worked out on its second sighting (a one-off costs nothing
    extra) and kept only if filling it gave the bytes of inlining that message.
    """

    def __init__(self, inliner: str, size: int = SIZE) -> None:
        self.inliner = inliner
        self.inline = INLINERS[inliner]
        self.serialiser = SERIALISERS[inliner]
        self.size = size
        self._kept: OrderedDict[str, _Skeleton | None] = OrderedDict()  # None: cannot be filled
        self._seen: OrderedDict[int, None] = OrderedDict()
        self.hits = self.messages = 0

    def __len__(self) -> int:
        """Skeletons kept (those found unusable included)."""
        return len(self._kept)

    def inline_filled(self, skeleton: str, values: list[str]) -> str:
        """What inlining the real HTML (the skeleton with its values) gives, from the cache when it can."""
        self.messages += 1
        kept = self._kept.get(skeleton, _UNSEEN)
        if kept is _UNSEEN:
            return self._miss(skeleton, values)
        with contextlib.suppress(KeyError):  # dropped meanwhile by another thread's message
            self._kept.move_to_end(skeleton)
        filled = kept.fill(values) if isinstance(kept, _Skeleton) else None
        if filled is None:
            return self.inline(fill_escaped(skeleton, values))
        assert isinstance(kept, _Skeleton)
        if not kept.proven:
            return self._prove(skeleton, kept, filled, values)
        self.hits += 1
        return filled

    def _miss(self, skeleton: str, values: list[str]) -> str:
        key = hash(skeleton)
        if key not in self._seen:
            self._seen[key] = None
            if len(self._seen) > 4 * self.size:
                self._seen.popitem(last=False)
            return self.inline(fill_escaped(skeleton, values))
        if not serialiser_matches(self.inliner):
            self._keep(skeleton, None)
            return self.inline(fill_escaped(skeleton, values))
        cut = _cut(skeleton, self.inline(skeleton), self.serialiser)
        if isinstance(cut, str):
            log.debug("inlining per message for a skeleton: %s", cut)
            self._keep(skeleton, None)
            return self.inline(fill_escaped(skeleton, values))
        self._keep(skeleton, cut)
        filled = cut.fill(values)
        if filled is None:  # proven by a later message whose values can go in
            return self.inline(fill_escaped(skeleton, values))
        return self._prove(skeleton, cut, filled, values)

    def _prove(self, skeleton: str, cut: _Skeleton, filled: str, values: list[str]) -> str:
        """Inline the message itself; keep the skeleton only if filling it gave the same bytes."""
        inlined = self.inline(fill_escaped(skeleton, values))
        if filled == inlined:
            cut.proven = True
        else:
            log.warning("inlining per message for a skeleton whose filled copy differed from the real one")
            self._keep(skeleton, None)
        return inlined

    def _keep(self, skeleton: str, cut: _Skeleton | None) -> None:
        self._kept[skeleton] = cut
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)
