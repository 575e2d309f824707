"""``mailer templates check``: catch a marketer's mistakes before a customer sees them.

Every problem names a file and a line (``templates/email/NAME/FILE:LINE:
problem``). The check compiles every file in the sandbox (syntax errors and
refused constructs), holds variables to the documented set in
:data:`mailer.compose.context.VARIABLES` without running anything (the template's
syntax tree is walked, with a "did you mean" for typos), requires subject,
HTML and text, then renders each email for the built-in sample customers and
requires the unsubscribe link and the postal address in both parts.
:func:`spam_problems` scores each email with SpamAssassin, when it is installed.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from html import unescape
from pathlib import Path

import jinja2
from jinja2 import meta, nodes

from mailer.compose import page
from mailer.compose.answers import ANSWER_PAGE, PAGE_VARIABLES, notice_envelope, page_samples, sample_ask
from mailer.compose.context import (
    VARIABLES,
    Variable,
    sample_customers,
    sample_gift,
    sample_occasion,
    template_context,
)
from mailer.compose.inline import INLINERS
from mailer.compose.maker import envelope_for
from mailer.compose.message import HeaderError
from mailer.compose.render import HTML, PARTS, SUBJECT, TEXT, Renderer, RenderError, part_name
from mailer.compose.spamscore import SPAM_ABOVE, WARN_ABOVE, score_messages
from mailer.compose.text import html_to_text
from mailer.compose.variants import (
    attribute_columns,
    columns_beyond_default,
    missing_versions,
    variant_naming_problems,
    variants,
)
from mailer.compose.wire import serialize
from mailer.config import OCCASION_KINDS, Campaign, Secret, SenderSettings
from mailer.config.settings import suggest
from mailer.outbox.feedback import NOTICE_KIND, NOTICE_TEMPLATE

CHECK_UNSUBSCRIBE_URL = "https://unsubscribe.example/u/CHECK-TOKEN"
CHECK_DAY = date(2026, 6, 15)
# Used when no mailer.toml is at hand (checking a folder on its own).
PLACEHOLDER_SENDER = SenderSettings(
    company="Example Company",
    from_address="hello@company.example",
    postal_address="1 Example Street, Exampletown",
    unsubscribe_url="https://company.example/mailer",
    secret=Secret(env="MAILER_SECRET"),
)
_LOCATED = re.compile(r"^(?P<file>.+?):(?P<line>\d+|\?): (?P<problem>.*)$", re.S)
_IMG = re.compile(r"<img\b[^>]*>", re.I | re.S)
_ALT = re.compile(r"\balt\s*=\s*(\"[^\"]+\"|'[^']+'|[^\s\"'>]+)", re.I)


@dataclass(frozen=True, order=True)
class Problem:
    """One thing to fix, at ``path:line`` (line 0: the whole email, shown as ``path: message``).

    A warning is worth a look but does not stop the email from being sent.
    """

    path: Path
    line: int
    message: str
    warning: bool = False

    def format(self, relative_to: Path | None = None) -> str:
        shown = self.path
        if relative_to is not None and self.path.is_relative_to(relative_to):
            shown = self.path.relative_to(relative_to)
        return f"{shown}:{self.line}: {self.message}" if self.line else f"{shown}: {self.message}"


def template_kinds(name: str, campaigns: Sequence[Campaign]) -> tuple[str, ...]:
    """The occasions a template is sent for: from the campaigns using it, else its name, else unknown (())."""
    if name == NOTICE_TEMPLATE:
        return (NOTICE_KIND,)
    kinds = sorted({c.occasion for c in campaigns if c.template == name})
    if kinds:
        return tuple(kinds)
    return (name,) if name in OCCASION_KINDS else ()


def check_templates(
    templates_dir: Path,
    campaigns: Sequence[Campaign] = (),
    sender: SenderSettings = PLACEHOLDER_SENDER,
    inliner: str = "premailer",
) -> list[Problem]:
    """Every problem found in ``templates_dir``, sorted by file and line; empty when all is well."""
    if not templates_dir.is_dir():
        return [Problem(templates_dir, 1, "no such templates folder")]
    renderer = Renderer(templates_dir, None, auto_reload=True)  # words only: each email is inlined once below
    problems: set[Problem] = set()
    names = renderer.names()
    if not names:
        problems.add(
            Problem(templates_dir, 1, "no templates: each email is a folder with subject.txt, body.html and body.txt")
        )
    for shared in sorted(p for p in templates_dir.iterdir() if p.is_file() and p.name.startswith("_")):
        if shared.name == page.PAGE:
            problems.update(check_page(renderer, shared, campaigns, sender))
        else:
            problems.update(check_file(renderer, shared, kinds=()))
    for name in names:
        problems.update(check_email(renderer, name, template_kinds(name, campaigns), campaigns, sender, inliner))
    problems.update(check_answer_page(renderer, campaigns, sender))
    for campaign in campaigns:
        if campaign.template not in names:
            hint = suggest(campaign.template, names)
            problems.add(
                Problem(
                    templates_dir / campaign.template,
                    1,
                    f"campaign {campaign.name!r} uses template {campaign.template!r}, which does not exist{hint}",
                )
            )
    return sorted(problems)


def check_email(
    renderer: Renderer,
    name: str,
    kinds: tuple[str, ...],
    campaigns: Sequence[Campaign],
    sender: SenderSettings,
    inliner: str = "premailer",
) -> list[Problem]:
    folder = renderer.templates_dir / name
    problems: list[Problem] = []
    for part in PARTS:
        path = folder / part
        if not path.is_file():
            problems.append(Problem(path, 1, f"missing: every email needs {', '.join(PARTS)}"))
        else:
            problems.extend(check_file(renderer, path, kinds))
    versions = check_versions(renderer, name, kinds, campaigns, sender, inliner)
    if problems:
        return problems + versions  # rendering a broken or incomplete template would only repeat these
    return _check_renders(renderer, name, kinds, campaigns, sender, inliner) + versions


def check_versions(
    renderer: Renderer,
    name: str,
    kinds: tuple[str, ...],
    campaigns: Sequence[Campaign],
    sender: SenderSettings,
    inliner: str = "premailer",
) -> list[Problem]:
    """Each language version of ``name`` checked as the default is (files, syntax, variables, rendering),
    and for customer columns the default version does not read (see :mod:`mailer.compose.variants`)."""
    folder = renderer.templates_dir / name
    default_columns = {c for part in PARTS for c in _attribute_columns(renderer, folder / part)}
    problems: list[Problem] = []
    for locale, parts in sorted(variants(folder).items()):
        naming = [Problem(path, 1, message) for path, message in variant_naming_problems(folder, locale, parts)]
        files = [folder / part_name(part, locale) for part in PARTS]
        found = naming or [p for path in files for p in check_file(renderer, path, kinds)]
        for path in files:
            beyond = columns_beyond_default(_attribute_columns(renderer, path), default_columns)
            found.extend(Problem(path, line, message) for line, message in beyond)
        problems.extend(found or _check_renders(renderer, name, kinds, campaigns, sender, inliner, variant=locale))
    return problems


def _attribute_columns(renderer: Renderer, path: Path) -> dict[str, int]:
    try:
        return attribute_columns(renderer.env.parse(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, jinja2.TemplateSyntaxError):
        return {}  # reported by check_file


def missing_version_warnings(
    templates_dir: Path, locale_counts: Mapping[str, int], default_locale: str
) -> list[Problem]:
    """A warning per email that has no version for locales the customers have (``locale_counts``: customers each).

    The owner's notice is read by the business, in the sender's language, whatever its customer reads.
    """
    names = [name for name in Renderer(templates_dir, None).names() if name != NOTICE_TEMPLATE]
    found = missing_versions(templates_dir, names, locale_counts, default_locale)
    return [Problem(folder, 0, message, warning=True) for folder, message in found]


def check_page(
    renderer: Renderer, path: Path, campaigns: Sequence[Campaign], sender: SenderSettings
) -> list[Problem]:
    """The preference page: rendered for a subscribed, a paused and an unsubscribed visitor, each form checked."""
    problems: set[Problem] = set()
    for state, context in page.sample_contexts(sender, campaigns).items():
        try:
            html = renderer.render_file(page.PAGE, context)
        except RenderError as exc:
            problems.add(_located(exc, path, f" (the page for {state})"))
            continue
        found = page.page_problems(html, sender)
        problems.update(Problem(path, 0, f"{problem} (the page for {state})") for problem in found)
    return sorted(problems)


def check_file(renderer: Renderer, path: Path, kinds: tuple[str, ...]) -> list[Problem]:
    """Compile one file and check the variables it uses, without rendering it."""
    name = path.relative_to(renderer.templates_dir).as_posix()
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return [Problem(path, 1, "not UTF-8 text: save the file as UTF-8")]
    try:
        tree = renderer.env.parse(source, name, str(path))
        renderer.env.compile(tree, name, str(path))
    except jinja2.TemplateSyntaxError as exc:
        return [Problem(path, exc.lineno or 1, exc.message or "syntax error")]
    problems = [Problem(path, line, message) for line, message in unknown_variables(tree, renderer.env, kinds)]
    if path.suffix == ".html":
        problems.extend(_images_without_alt(path, source))
    return problems


def unknown_variables(
    tree: nodes.Template, env: jinja2.Environment, kinds: tuple[str, ...] = ()
) -> list[tuple[int, str]]:
    """(line, problem) for every variable the template uses that is not documented.

    Static: walks the syntax tree (names, ``a.b`` and ``a["b"]`` chains),
    nothing is rendered. ``kinds`` (when known) also catches occasion fields
    that the template's occasions do not have.
    """
    found: list[tuple[int, str]] = []
    top_level = meta.find_undeclared_variables(tree)
    for name_node in tree.find_all(nodes.Name):
        name = name_node.name
        if name_node.ctx != "load" or name not in top_level or name in VARIABLES or name in env.globals:
            continue
        hint = suggest(name, [*VARIABLES, *env.globals])
        found.append((name_node.lineno, f"unknown variable '{name}'{hint}"))
    for used in tree.find_all((nodes.Filter, nodes.Test)):
        known = env.filters if isinstance(used, nodes.Filter) else env.tests
        if used.name not in known:
            what = "filter" if isinstance(used, nodes.Filter) else "test"
            public = [n for n in known if not n.startswith("_")]
            found.append((used.lineno, f"unknown {what} '{used.name}'{suggest(used.name, public)}"))
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        path = _chain(node)
        if path is None or path[0] not in top_level:
            continue
        problem = _check_path(path, kinds)
        if problem:
            found.append((node.lineno, problem))
    return sorted(set(found))


def _chain(node: nodes.Expr) -> tuple[str, ...] | None:
    """``occasion.interaction.kind`` → ("occasion", "interaction", "kind"); None when not a plain chain."""
    parts: list[str] = []
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            parts.append(node.arg.value)
        else:
            return None
        node = node.node
    if not isinstance(node, nodes.Name):
        return None
    return (node.name, *reversed(parts))


def _check_path(path: tuple[str, ...], kinds: tuple[str, ...]) -> str | None:
    variable: Variable | None = VARIABLES.get(path[0])
    if variable is None:
        return None  # reported as an unknown name already
    for depth in range(1, len(path)):
        if variable.free or not variable.fields:
            return None  # a value's own methods, or custom columns: not ours to list
        parent, part = ".".join(path[:depth]), path[depth]
        child = variable.fields.get(part)
        if child is None:
            return (
                f"unknown variable '{parent}.{part}'{suggest(part, list(variable.fields), prefix=parent + '.')}"
            )
        if kinds and child.occasions and not set(kinds) & set(child.occasions):
            only = " or ".join(child.occasions)
            return f"'{parent}.{part}' exists only in {only} emails; this template is sent for {', '.join(kinds)}"
        variable = child
    return None


def _images_without_alt(path: Path, source: str) -> list[Problem]:
    problems = []
    for match in _IMG.finditer(source):
        if not _ALT.search(match.group(0)):
            line = source.count("\n", 0, match.start()) + 1
            problems.append(Problem(path, line, 'image without alt text: add alt="what the picture shows"'))
    return problems


def _check_renders(
    renderer: Renderer,
    name: str,
    kinds: tuple[str, ...],
    campaigns: Sequence[Campaign],
    sender: SenderSettings,
    inliner: str,
    variant: str = "",
) -> list[Problem]:
    """Render for every sample customer and occasion; then look for the unsubscribe link and address."""
    folder = renderer.templates_dir / name
    text_part, html_part, subject_part = (part_name(part, variant) for part in (TEXT, HTML, SUBJECT))
    by_kind = {c.occasion: c for c in campaigns if c.template == name}
    errors: dict[str, list[Problem]] = {}
    rendered = None
    for kind in kinds or OCCASION_KINDS:
        errors[kind] = []
        for customer in sample_customers().values():
            occasion = sample_occasion(kind, customer, CHECK_DAY, by_kind.get(kind))
            ask = sample_ask(by_kind.get(kind), sender.unsubscribe_url)
            # With a gift and without: a template reads well whether or not its campaign gives one.
            gift = None if customer.external_id == "sample-email-only" else sample_gift(CHECK_DAY)
            context = template_context(customer, occasion, sender, CHECK_UNSUBSCRIBE_URL, ask, gift=gift)
            try:
                result = renderer.render(name, context, variant, variant=variant, default_locale=sender.locale)
            except RenderError as exc:
                errors[kind].append(_located(exc, folder / html_part, f" ({kind} email for {customer.external_id})"))
                continue
            if customer.external_id == "sample-full":
                rendered = result
    if kinds:
        problems = sorted({p for found in errors.values() for p in found})
    else:  # not tied to an occasion: it must render for at least one kind
        problems = [] if any(not found for found in errors.values()) else sorted(set(errors[OCCASION_KINDS[0]]))
    if problems or rendered is None:
        return problems
    address = " ".join(sender.postal_address.split())
    text_words = " ".join(rendered.text.split())
    html_words = " ".join(html_to_text(rendered.html).split())
    if kinds == (NOTICE_KIND,):  # mail for the team, not the customer: no unsubscribe link (it would be theirs)
        pass
    elif CHECK_UNSUBSCRIBE_URL not in rendered.text:
        problems.append(
            Problem(folder / text_part, 1, 'no unsubscribe link: add {{ unsubscribe_url }} (or include "_footer.txt")')
        )
    if kinds != (NOTICE_KIND,) and not re.search(
        r"<a\b[^>]*\bhref=[\"']" + re.escape(CHECK_UNSUBSCRIBE_URL) + r"[\"']", rendered.html
    ):
        problems.append(
            Problem(
                folder / html_part,
                1,
                'no unsubscribe link: add <a href="{{ unsubscribe_url }}">Unsubscribe</a> (the layout has one)',
            )
        )
    if address not in text_words:
        problems.append(
            Problem(
                folder / text_part, 1, 'no postal address: add {{ company.postal_address }} (or include "_footer.txt")'
            )
        )
    if address not in unescape(html_words):
        problems.append(
            Problem(folder / html_part, 1, "no postal address: add {{ company.postal_address }} (the layout has it)")
        )
    if not rendered.subject:
        problems.append(Problem(folder / subject_part, 1, "the subject renders empty"))
    try:
        INLINERS[inliner](rendered.html)
    except Exception as exc:  # an inliner's parse errors have no common type; each is reported, none ignored
        problems.append(Problem(folder / html_part, 1, f"the CSS inliner ({inliner}) failed: {exc}"))
    return problems


def check_answer_page(renderer: Renderer, campaigns: Sequence[Campaign], sender: SenderSettings) -> list[Problem]:
    """The answer page of "how did we do?": compiles, uses only its own variables, renders, keeps its form."""
    path = renderer.templates_dir / ANSWER_PAGE
    if not path.is_file():
        if any(c.ask for c in campaigns):
            return [Problem(path, 1, "missing: the built-in answer page is used (copy it from a new `mailer init`)",
                            warning=True)]
        return []
    try:
        source = path.read_text(encoding="utf-8")
        tree = renderer.env.parse(source, ANSWER_PAGE, str(path))
    except UnicodeDecodeError:
        return [Problem(path, 1, "not UTF-8 text: save the file as UTF-8")]
    except jinja2.TemplateSyntaxError as exc:
        return [Problem(path, exc.lineno or 1, exc.message or "syntax error")]
    problems = [
        Problem(path, 1, f"unknown variable '{name}'{suggest(name, PAGE_VARIABLES)}")
        for name in sorted(meta.find_undeclared_variables(tree) - set(PAGE_VARIABLES) - set(renderer.env.globals))
    ]
    if problems:
        return problems
    for context in page_samples(sender, [c for c in campaigns if c.ask]):
        try:
            html = renderer.render_file(ANSWER_PAGE, context)
        except RenderError as exc:
            return [_located(exc, path, "")]
        for needed, why in (
            ('method="post"', 'the form must post: <form method="post" action="{{ action }}">'),
            ('name="stamp"', 'keep <input type="hidden" name="stamp" value="{{ stamp }}">: without it Send fails'),
            ('name="answer"', 'keep the answers as <input type="radio" name="answer" value="{{ answer.value }}">'),
            (str(context["action"]), 'the form must post to {{ action }}'),
        ):
            if needed not in html:
                return [Problem(path, 1, why)]
    return []


def _located(exc: RenderError, fallback: Path, note: str) -> Problem:
    match = _LOCATED.match(str(exc))
    if not match:
        return Problem(fallback, 1, f"{exc}{note}")
    line = match.group("line")
    return Problem(Path(match.group("file")), int(line) if line.isdigit() else 1, match.group("problem") + note)


def spam_problems(
    templates_dir: Path,
    spamassassin: str,
    campaigns: Sequence[Campaign] = (),
    sender: SenderSettings = PLACEHOLDER_SENDER,
    inliner: str = "premailer",
    found: Collection[Problem] = (),
) -> list[Problem]:
    """Score each email with SpamAssassin: a warning above 0.5, a problem above 5.

    Each is written for the ``sample-full`` customer by the message writer of
    real sends, and all are scored by one SpamAssassin process. Emails with a
    problem in ``found`` (what :func:`check_templates` returned) are left out.
    Raises SpamAssassinError when SpamAssassin cannot score them.
    """
    if not templates_dir.is_dir():
        return []
    flawed = {p.path.relative_to(templates_dir).parts[0] for p in found if p.path.is_relative_to(templates_dir)}
    renderer = Renderer(templates_dir, inliner, auto_reload=True)
    names = [name for name in renderer.names() if name not in flawed]
    messages: dict[str, bytes] = {}
    for name in names:
        written = _sample_message(renderer, name, template_kinds(name, campaigns), campaigns, sender)
        if written is not None:
            messages[name] = written
    scores = score_messages(list(messages.values()), spamassassin)
    problems = []
    for name, score in zip(messages, scores, strict=True):
        if score.points > WARN_ABOVE:
            problems.append(
                Problem(templates_dir / name, 0, f"spam score {score.describe()}", warning=score.points <= SPAM_ABOVE)
            )
    return problems


def _sample_message(
    renderer: Renderer, name: str, kinds: tuple[str, ...], campaigns: Sequence[Campaign], sender: SenderSettings
) -> bytes | None:
    """The whole message a sample customer would get, as the wire carries it; None when it does not render."""
    customer = sample_customers()["sample-full"]
    by_kind = {c.occasion: c for c in campaigns if c.template == name}
    unsubscribe_url = f"{sender.unsubscribe_url}/u/CHECK-TOKEN"
    for kind in kinds or OCCASION_KINDS:
        occasion = sample_occasion(kind, customer, CHECK_DAY, by_kind.get(kind))
        ask = sample_ask(by_kind.get(kind), sender.unsubscribe_url)
        try:
            rendered = renderer.render(name, template_context(customer, occasion, sender, unsubscribe_url, ask))
        except RenderError:
            continue  # check_templates reports it; another kind of occasion may render
        # The envelope a real send gives it: to the customer, or for the owner's notice to the owner.
        if kind == NOTICE_KIND:
            envelope = notice_envelope(customer, sender, "")
        else:
            envelope = envelope_for(customer, sender, unsubscribe_url)
        try:
            return serialize(rendered, envelope, sender).data
        except HeaderError:
            return None  # a subject no header can carry; sending would fail the row the same way
    return None
