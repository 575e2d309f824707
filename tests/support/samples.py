"""The shipped project's settings (what `mailer init` writes), for tests of the shipped templates."""

from __future__ import annotations

import tomllib

from mailer.compose.checker import template_kinds
from mailer.compose.render import Renderer
from mailer.config import Settings, parse_settings
from mailer.outbox.feedback import NOTICE_TEMPLATE
from mailer.service.project import CONFIG_TEMPLATE, SHIPPED_TEMPLATES

# A config beside the shipped templates, so [render] templates resolves to them.
SHIPPED: Settings = parse_settings(
    tomllib.loads(CONFIG_TEMPLATE.format(secret_file=".mailer-secret")), SHIPPED_TEMPLATES.parent.parent / "mailer.toml"
)
SENDER = SHIPPED.sender
# The emails customers get (the owner's notice about an unhappy answer is staff mail: tests/compose/test_answers.py).
NAMES = [name for name in Renderer(SHIPPED_TEMPLATES).names() if name != NOTICE_TEMPLATE]


def kind_of(name: str) -> str:
    """The occasion the shipped campaigns send template ``name`` for."""
    kinds = template_kinds(name, SHIPPED.campaigns)
    assert kinds, f"no shipped campaign uses template {name!r}"
    return kinds[0]
