"""The preference page behind every unsubscribe link: leave one campaign, pause, unsubscribe, come back.

The page is ``_preferences.html`` in the templates folder, rendered by the same sandboxed Jinja
as the emails, so marketers can change its words; a project without one gets the shipped page,
and so does a visitor when an edited page fails to render (nobody must be kept from leaving).

Every change is a POST carrying a CSRF value: an HMAC of the link's token under the signing
secret, so only a page served for that very link can post a change, and a form on another site
cannot (it would have to know both). A GET never changes anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from mailer.compose.page import ACTIONS, PAGE, Visitor
from mailer.compose.render import Renderer, RenderError
from mailer.compose.tokens import Link
from mailer.config import Campaign, Settings
from mailer.contacts import optout, preferences
from mailer.service.project import SHIPPED_TEMPLATES

log = logging.getLogger(__name__)

_CSRF_CHARS = 32


class BadForm(ValueError):
    """A POST the page did not make: an unknown button or choice (400)."""


class ForgedForm(BadForm):
    """A POST without the CSRF value of its link's page (403)."""


def csrf_value(secret: str, token: str) -> str:
    """The CSRF value of the page for one link: the same on every load, unguessable without the secret."""
    digest = hmac.new(secret.encode(), f"csrf:{token}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:_CSRF_CHARS]


def check_csrf(secret: str, token: str, given: str | None) -> None:
    """Raise ForgedForm unless ``given`` is the CSRF value of this link (compared in constant time)."""
    if not given or not hmac.compare_digest(csrf_value(secret, token).encode(), given.encode("utf-8", "replace")):
        raise ForgedForm("the form's CSRF value is missing or wrong")


def apply(
    engine: Engine,
    settings: Settings,
    visitor: Visitor,
    link: Link,
    form: Mapping[str, str],
    now: datetime,
) -> str:
    """Carry out one button of the page; the notice the page then shows. Raises BadForm for a form it did not make."""
    action = form.get("do", "")
    if action not in ACTIONS:
        raise BadForm(f"unknown button {action[:40]!r}")
    who, row = visitor.id, link.send_log_id
    if action == "unsubscribe":
        change = optout.unsubscribe(engine, who, optout.Source.PAGE, now, send_log_id=row)
        return "You are unsubscribed" if change is optout.Change.CHANGED else "You are already unsubscribed"
    if action == "resubscribe":
        optout.resubscribe(engine, who, now)
        return "You are subscribed again"
    if action in ("leave", "rejoin"):
        campaign = _campaign(settings, form.get("campaign", ""))
        if action == "leave":
            preferences.opt_out_of_campaign(engine, who, campaign.name, optout.Source.PAGE, now, send_log_id=row)
            return f"You will get no more “{campaign.title}” emails"
        preferences.rejoin_campaign(engine, who, campaign.name)
        return f"You will get “{campaign.title}” emails again"
    if action == "pause":
        months = form.get("months", "")
        if months not in {str(m) for m in preferences.PAUSE_MONTHS}:
            raise BadForm(f"no pause of {months[:10]!r} months on offer")
        until = preferences.add_months(local_today(visitor, now), int(months))
        preferences.pause(engine, who, until, optout.Source.PAGE, now, send_log_id=row)
        return f"Your emails are paused until {until:%-d %B %Y}"
    if action == "resume":
        preferences.resume(engine, who)
        return "Your emails will start again"
    # "everything": undo every wish at once.
    optout.resubscribe(engine, who, now)
    preferences.resume(engine, who)
    for name in preferences.preferences_of(engine, who).opted_out:
        preferences.rejoin_campaign(engine, who, name)
    return "You will get all our emails again"


def _campaign(settings: Settings, name: str) -> Campaign:
    for campaign in settings.campaigns:
        if campaign.name == name:
            return campaign
    raise BadForm(f"no campaign named {name[:100]!r}")


def local_today(visitor: Visitor, now: datetime) -> date:
    """The visitor's calendar date (a pause ends on a date of theirs, as the policy compares it)."""
    return now.astimezone(ZoneInfo(visitor.timezone)).date()


class PageTemplate:
    """``_preferences.html`` from the project's templates folder, else the shipped one."""

    def __init__(self, templates_dir: Path) -> None:
        self.shipped = Renderer(SHIPPED_TEMPLATES, None)
        own = (templates_dir / PAGE).is_file()
        # Reloaded on edit, like the preview: a marketer's change shows without a restart.
        self.renderer = Renderer(templates_dir, None, auto_reload=True) if own else self.shipped

    def render(self, context: Mapping[str, Any]) -> str:
        """The page; a marketer's page that fails to render is logged and the shipped one shown instead."""
        try:
            return self.renderer.render_file(PAGE, context)
        except RenderError as exc:
            if self.renderer is self.shipped:
                raise
            log.error("the preference page does not render, showing the shipped one: %s", exc)
            return self.shipped.render_file(PAGE, context)
