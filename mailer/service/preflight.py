"""Start-up checks: every configuration problem that would otherwise surface mid-pass, found first.

Commands that send or serve refuse to start, having written nothing, while :func:`check` finds any.

What each command needs: a pass (``mailer run``, ``mailer daemon``, ``mailer retry``) renders, signs
and sends, so it needs every enabled campaign's template to exist and pass ``mailer templates
check``, the unsubscribe-signing secret, the DKIM key when configured, and for SMTP the CA file and
(with ``[transport] username``) the password. A dry run renders and signs the same messages but
connects to nothing: no SMTP password or CA file. ``mailer serve`` signs and reads unsubscribe
links and renders no email (its pages are its own, and ``--preview`` shows template problems on
the page), so it needs the secret only. ``mailer daemon`` also reads the ``[inbox]``, so an IMAP
inbox's password must be readable too.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from mailer.compose import dkim
from mailer.compose.checker import Problem, check_templates
from mailer.compose.render import Renderer
from mailer.config import ConfigError, Secret, Settings
from mailer.config.settings import suggest
from mailer.outbox.feedback import NOTICE_TEMPLATE


@dataclass(frozen=True)
class Needs:
    """What a command will use once started, hence what must be sound before it starts."""

    templates: bool = True  # every enabled campaign's template, and the DKIM key that signs what they render
    secret: bool = True  # [sender] secret: unsubscribe links
    smtp: bool = True  # [transport] password (with a username) and ca_file, when kind = "smtp"
    webhooks: bool = False  # [webhooks.mailgun] signing key and [webhooks.ses] ca_file, when configured
    inbox: bool = False  # [inbox] password, when kind = "imap": the daemon reads the inbox on its own


SEND = Needs()
DAEMON = Needs(inbox=True)
DRY_RUN = Needs(smtp=False)
SERVE = Needs(templates=False, smtp=False, webhooks=True)


def check(settings: Settings, needs: Needs = SEND, *, shown_from: Path | None = None) -> list[str]:
    """Every problem, one line each (all of them, not just the first); empty when the command can start.

    Reads template files, secrets and key files; opens no store, connects to nothing, writes
    nothing. Paths inside ``shown_from`` are shown relative to it.
    """
    problems: list[str] = []
    if needs.templates:
        problems += template_problems(settings, shown_from)
        problems += _dkim_problems(settings)
    if needs.secret:
        problems += _unreadable(settings.sender.secret)
    transport = settings.transport
    if needs.smtp and transport.kind == "smtp":
        if transport.username:
            problems += _unreadable(transport.password)
        if transport.ca_file is not None:
            problems += _ca_file_problems(settings.path.name, transport.ca_file, shown_from)
    if needs.inbox and settings.inbox is not None and settings.inbox.imap is not None:
        problems += _unreadable(settings.inbox.imap.password)
    if needs.webhooks:
        problems += _webhook_problems(settings, shown_from)
    return problems


def _webhook_problems(settings: Settings, shown_from: Path | None) -> list[str]:
    ses, mailgun = settings.webhooks.ses, settings.webhooks.mailgun
    problems = _unreadable(mailgun.signing_key) if mailgun is not None else []
    if ses is not None and ses.ca_file is not None:
        problems += _ca_file_problems(settings.path.name, ses.ca_file, shown_from, "[webhooks.ses]")
    return problems


def template_problems(settings: Settings, shown_from: Path | None = None) -> list[str]:
    """A missing template of an enabled campaign, then what ``mailer templates check`` finds in the ones they use.

    Problems in templates no enabled campaign uses are left to ``mailer templates check``:
    they cannot fail a pass. Shared parts (``_*`` files) count, since any email may include them.
    """
    folder = settings.render.templates
    campaigns = [c for c in settings.campaigns if c.enabled]
    if not campaigns:
        return []
    config = settings.path.name
    if not folder.is_dir():
        return [f"{config}: [render] templates: no such folder {_shown(folder, shown_from)}/"]
    names = Renderer(folder, None).names()
    missing = [c for c in campaigns if c.template not in names]
    lines = [
        f"{config}: [[campaign]] {c.name}: template {c.template!r} not found in {_shown(folder, shown_from)}/"
        f"{suggest(c.template, names)}"
        for c in missing
    ]
    used = {c.template for c in campaigns} - {c.template for c in missing}
    asking = [c for c in campaigns if c.ask]
    if asking:  # "how did we do?": an unhappy answer is told to the owner with the notice, the page is shown
        used |= {NOTICE_TEMPLATE, "_pages"}
        if NOTICE_TEMPLATE not in names:
            lines.append(
                f"{config}: [[campaign]] {asking[0].name}: asks \"how did we do?\", but the owner's notice template "
                f"{NOTICE_TEMPLATE!r} is not in {_shown(folder, shown_from)}/ (copy it from a new `mailer init`)"
            )
    found = check_templates(folder, campaigns, settings.sender, settings.render.inliner)
    lines += [p.format(shown_from) for p in found if not p.warning and _concerns(p, folder, used)]
    return lines


def _concerns(problem: Problem, folder: Path, used: set[str]) -> bool:
    # The checker also reports missing templates (said above, in the config's terms) and unused ones.
    if problem.path.parent == folder and problem.path.name.startswith("_"):
        return True
    return any(problem.path.is_relative_to(folder / name) for name in used)


def _dkim_problems(settings: Settings) -> list[str]:
    try:
        dkim.signer_for(settings.sender)
    except ConfigError as exc:
        return [f"{settings.path.name}: {exc}"]
    return []


def _unreadable(secret: Secret) -> list[str]:
    try:
        secret.reveal()
    except ConfigError as exc:
        return [str(exc)]
    return []


def _ca_file_problems(config: str, ca_file: Path, shown_from: Path | None, section: str = "[transport]") -> list[str]:
    # The same call the SMTP transport makes for every connection, where a bad file would fail each row.
    try:
        ssl.create_default_context(cafile=str(ca_file))
    except OSError as exc:  # ssl.SSLError included: a file that holds no certificate
        reason = exc.strerror or str(exc)
        return [f"{config}: {section} ca_file: {_shown(ca_file, shown_from)}: {reason}"]
    return []


def _shown(path: Path, base: Path | None) -> str:
    return str(path.relative_to(base)) if base is not None and path.is_relative_to(base) else str(path)
