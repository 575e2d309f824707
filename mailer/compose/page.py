"""PURE: what the preference page template (``_preferences.html``) is given, and what it must keep.

The page lives with the emails so that marketers edit it the same way; ``mailer serve`` renders
it (mailer.web.preferences) and ``mailer templates check`` renders it for sample visitors
(:func:`page_problems`), so a broken edit is caught before a customer meets it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from mailer.config import Campaign, SenderSettings
from mailer.contacts.preferences import PAUSE_MONTHS, Preferences
from mailer.planning.policy import in_segment

PAGE = "_preferences.html"
# What each button of the page does (the form's ``do`` field).
ACTIONS = ("unsubscribe", "resubscribe", "leave", "rejoin", "pause", "resume", "everything")


@dataclass(frozen=True, slots=True)
class Visitor:
    """The customer a link is for, as the page needs them."""

    id: int
    email: str
    unsubscribed: bool
    timezone: str
    tags: frozenset[str] = frozenset()


def mask(email: str) -> str:
    """Enough of an address for its owner to know it, not to harvest it: ``al•••@example.com``."""
    local, at, domain = email.rpartition("@")
    if not at:
        return "•••"
    return f"{local[: 1 if len(local) <= 4 else 2]}•••@{domain}"


def listed_campaigns(campaigns: Sequence[Campaign], visitor: Visitor, wishes: Preferences) -> list[Campaign]:
    """The campaigns the page offers: the enabled ones that address this customer, and any they left (to rejoin)."""
    return [c for c in campaigns if (c.enabled and in_segment(visitor.tags, c)) or c.name in wishes.opted_out]


def page_context(
    sender: SenderSettings,
    campaigns: Sequence[Campaign],
    visitor: Visitor,
    wishes: Preferences,
    *,
    action: str,
    csrf: str,
    notice: str = "",
) -> dict[str, Any]:
    """The variables ``_preferences.html`` sees (README: "The preference page")."""
    offered = [
        {"name": c.name, "label": c.title, "opted_out": c.name in wishes.opted_out}
        for c in listed_campaigns(campaigns, visitor, wishes)
    ]
    return {
        "company": sender.company,
        "postal_address": sender.postal_address,
        "website": sender.website or "",
        "email": mask(visitor.email),
        "notice": notice,
        "unsubscribed": visitor.unsubscribed,
        "paused_until": f"{wishes.paused_until:%-d %B %Y}" if wishes.paused_until else "",
        "campaigns": offered,
        "pause_months": list(PAUSE_MONTHS),
        "restricted": visitor.unsubscribed or bool(wishes.paused_until) or bool(wishes.opted_out),
        "action": action,
        "csrf": csrf,
    }


CHECK_ACTION = "/u/CHECK-TOKEN"
CHECK_CSRF = "CHECK-CSRF-VALUE"


def sample_contexts(sender: SenderSettings, campaigns: Sequence[Campaign]) -> dict[str, dict[str, Any]]:
    """The page for each state a visitor can be in, to render it with every branch taken."""
    visitor = Visitor(0, "sample@example.com", False, "UTC")
    first = [c.name for c in campaigns[:1]]
    states = {
        "a subscribed visitor": (visitor, Preferences(), ""),
        "a paused visitor who left a campaign": (
            visitor, Preferences(dict.fromkeys(first, "page"), date(2027, 3, 1)), "Your emails are paused",
        ),
        "an unsubscribed visitor": (
            Visitor(0, "sample@example.com", True, "UTC"), Preferences(), "You are unsubscribed",
        ),
    }
    return {
        name: page_context(sender, campaigns, who, wishes, action=CHECK_ACTION, csrf=CHECK_CSRF, notice=notice)
        for name, (who, wishes, notice) in states.items()
    }


_FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.I | re.S)


def page_problems(html: str, sender: SenderSettings) -> list[str]:
    """What a rendered page lacks: every form must POST to the link with the CSRF value; no script; the address."""
    problems: list[str] = []
    forms = _FORM.findall(html)
    if not forms:
        problems.append("no form: the page must offer its buttons")
    for attributes, body in forms:
        if not re.search(r'method\s*=\s*"post"', attributes, re.I):
            problems.append('a form without method="post": a GET must never change anything')
        if CHECK_ACTION not in attributes:
            problems.append('a form without action="{{ action }}"')
        if CHECK_CSRF not in body:
            problems.append('a form without <input type="hidden" name="csrf" value="{{ csrf }}">: it would be refused')
    if re.search(r"<script\b", html, re.I):
        problems.append("a <script>: the page must work without JavaScript (and the server forbids scripts)")
    for what, value in (("company name", sender.company), ("postal address", sender.postal_address)):
        if value not in html:
            problems.append(f"no {what}: show {{{{ {'company' if what == 'company name' else 'postal_address'} }}}}")
    return sorted(set(problems))
