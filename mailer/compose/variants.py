"""The language versions of an email (``subject.de.txt``, ``body.de.html``, ``body.de.txt``) and what to check in them.

Pure file-name and syntax-tree work for ``mailer templates check``: which
versions a template folder has, which are incomplete or named with a locale
Babel does not know, which use a customer column the default version does not
(a customer without it would get no email), and which locales the customers
have that an email has no version for (a warning, with counts).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from jinja2 import nodes

from mailer.compose.render import HTML, PARTS, SUBJECT, part_name
from mailer.config.locales import LocaleProblem, fallback_chain, normalize_locale

_VARIANT_FILE = re.compile(r"^(?P<stem>subject|body)\.(?P<locale>[A-Za-z0-9-]+)\.(?P<suffix>txt|html)$")


def variants(folder: Path) -> dict[str, set[str]]:
    """Locale → the parts (``subject.txt``, ``body.html``, ``body.txt``) its files stand for, as written on disk."""
    found: dict[str, set[str]] = {}
    if not folder.is_dir():
        return found
    for path in folder.iterdir():
        match = _VARIANT_FILE.match(path.name)
        if match and path.is_file():
            found.setdefault(match["locale"], set()).add(f"{match['stem']}.{match['suffix']}")
    return found


def variant_naming_problems(folder: Path, locale: str, parts: set[str]) -> list[tuple[Path, str]]:
    """(file, problem) for a version whose locale is unknown or not in BCP 47 form, or that lacks a part."""
    try:
        normal = normalize_locale(locale)
    except LocaleProblem as exc:
        return [(folder / part_name(SUBJECT, locale), f"{exc} (in the file name)")]
    if normal != locale:
        return [(folder / part_name(SUBJECT, locale), f"write the locale as {normal!r} in the file names")]
    missing = [part for part in PARTS if part not in parts]
    return [
        (folder / part_name(part, locale), f"missing: the {locale} version has {', '.join(sorted(parts))} but not this")
        for part in missing
    ]


def attribute_columns(tree: nodes.Template) -> dict[str, int]:
    """``customer.attributes.<column>`` names the template reads, with the first line each is read on."""
    found: dict[str, int] = {}
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        inner = node.node
        if not (isinstance(inner, nodes.Getattr) and inner.attr == "attributes"):
            continue
        if not (isinstance(inner.node, nodes.Name) and inner.node.name == "customer"):
            continue
        if isinstance(node, nodes.Getattr):
            column = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            column = node.arg.value
        else:
            continue
        found.setdefault(column, node.lineno)
    return found


def columns_beyond_default(variant: Mapping[str, int], default: Iterable[str]) -> list[tuple[int, str]]:
    """(line, problem) for each customer column a version reads that the default version never does."""
    known = set(default)
    return [
        (
            line,
            f"'customer.attributes.{column}' is used here but not by the default version: a customer without "
            f"that column gets no email in this language (use '| default(...)' or add it to the default too)",
        )
        for column, line in sorted(variant.items(), key=lambda item: item[1])
        if column not in known
    ]


def missing_versions(
    templates_dir: Path, names: Iterable[str], locale_counts: Mapping[str, int], default_locale: str
) -> list[tuple[Path, str]]:
    """(folder, warning) for each email lacking a version for locales customers have, with how many customers."""
    warnings = []
    for name in names:
        folder = templates_dir / name
        have = {locale for locale, parts in variants(folder).items() if {SUBJECT, HTML} <= parts}
        lacking = {
            locale: count
            for locale, count in locale_counts.items()
            if not set(fallback_chain(locale)) & have and default_locale not in fallback_chain(locale)
        }
        if lacking:
            listed = ", ".join(
                f"{locale} ({count} customer{'s' if count != 1 else ''})"
                for locale, count in sorted(lacking.items(), key=lambda item: (-item[1], item[0]))
            )
            total = sum(lacking.values())
            who = "1 customer gets" if total == 1 else f"{total} customers get"
            warnings.append((folder, f"no version for {listed}: {who} the default ({default_locale}) text"))
    return warnings


