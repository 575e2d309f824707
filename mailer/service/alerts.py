"""``[alerts]``: tell someone once when ``mailer status`` starts needing a human, and once when it stops.

What needs a human is :func:`mailer.service.monitor.problems`, the same rule that makes
``mailer status`` exit 1. Whether that is so, and whether the latest change has been told, is
kept in the store (``alert_state``), so several workers, restarts and every pass in between
send one alert and one "resolved", never one per pass. A notice that could not be sent is
tried again at the next check.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from sqlalchemy import Engine, insert, select, update
from sqlmodel import Session, col

from mailer.config import ConfigError, Settings
from mailer.delivery.transport import Outcome, make_transport
from mailer.service import monitor
from mailer.service.posting import PostFailed, post_json
from mailer.service.schedule import next_pass
from mailer.store.tables import AlertState, utcnow

log = logging.getLogger(__name__)

NAME = "status"
# How long one worker holds the right to send a notice before another may try.
CLAIM = timedelta(minutes=2)


@dataclass(frozen=True)
class Notice:
    """One change to tell: it began (``firing``) or it ended."""

    firing: bool
    problems: list[str]
    since: datetime
    host: str
    config: str

    def text(self) -> str:
        when = self.since.strftime("%Y-%m-%d %H:%M UTC")
        if not self.firing:
            return f"mailer on {self.host} is fine again (since {when}): nothing needs a human any more."
        lines = "\n".join(f"• {problem}" for problem in self.problems)
        return (
            f"mailer on {self.host} needs attention (since {when}):\n{lines}\n"
            f"See it with `mailer --config {self.config} status`."
        )

    def subject(self) -> str:
        first = self.problems[0] if self.problems else ""
        head = f"needs attention: {first}" if self.firing else "resolved: nothing needs a human any more"
        # One line, whatever a problem's text holds: no CR/LF may reach a header.
        return " ".join(f"[mailer {self.host}] {head}".split())[:200]


Tell = Callable[[Notice], None]


def check(engine: Engine, settings: Settings, now: datetime | None = None, tell: Tell | None = None) -> Notice | None:
    """Compare what status finds with the stored state; send the notice for a change not yet told.

    Returns the notice sent, or None. Raises nothing for a receiver that fails: that is logged,
    kept in ``alert_state.last_error`` and tried again at the next check.
    """
    moment = now or utcnow()
    with Session(engine) as session:
        facts = monitor.gather(session, moment, lambda after: next_pass(settings, after))
    _record(engine, bool(facts.problems), facts.problems, moment)
    if not settings.watch.alerts.configured and tell is None:
        return None
    claimed = _claim(engine, moment)
    if claimed is None:
        return None
    notice = Notice(claimed.firing, list(claimed.problems), claimed.changed_at, socket.gethostname(),
                    str(settings.path))
    try:
        (tell or _teller(settings))(notice)
    except PostFailed as exc:
        log.warning("alert not sent (tried again at the next check): %s", exc)
        _release(engine, claimed.firing, str(exc))
        return None
    _told(engine, claimed.firing)
    log.info("alert sent: %s", notice.subject())
    return notice


def _record(engine: Engine, firing: bool, problems: list[str], now: datetime) -> None:
    """Note a change of state; a change back before the first was told cancels both."""
    with Session(engine) as session:
        state = session.get(AlertState, NAME)
        if state is None:
            # The very first check: today's state is where we start, nothing to tell yet.
            session.execute(insert(AlertState).values(
                name=NAME, firing=firing, problems=problems, changed_at=now, notified=not firing, last_error=""
            ).prefix_with("OR IGNORE", dialect="sqlite"))
            session.commit()
            return
        if state.firing == firing:
            if firing and state.problems != problems:
                session.execute(update(AlertState).where(col(AlertState.name) == NAME).values(problems=problems))
                session.commit()
            return
        # Conditional on the state read: of two workers seeing the change, one records it.
        session.execute(
            update(AlertState)
            .where(col(AlertState.name) == NAME, col(AlertState.firing) == state.firing)
            .values(firing=firing, problems=problems, changed_at=now, notified=not state.notified,
                    notifying_until=None)
        )
        session.commit()


def _claim(engine: Engine, now: datetime) -> AlertState | None:
    with Session(engine, expire_on_commit=False) as session:
        claimed = session.execute(
            update(AlertState)
            .where(
                col(AlertState.name) == NAME,
                col(AlertState.notified).is_(False),
                (col(AlertState.notifying_until).is_(None)) | (col(AlertState.notifying_until) < now),
            )
            .values(notifying_until=now + CLAIM)
            .returning(col(AlertState.firing), col(AlertState.problems), col(AlertState.changed_at))
        ).first()
        session.commit()
    if claimed is None:
        return None
    return AlertState(name=NAME, firing=claimed[0], problems=claimed[1], changed_at=claimed[2])


def _told(engine: Engine, firing: bool) -> None:
    with Session(engine) as session:
        session.execute(
            update(AlertState)
            .where(col(AlertState.name) == NAME, col(AlertState.firing) == firing)
            .values(notified=True, notifying_until=None, last_error="")
        )
        session.commit()


def _release(engine: Engine, firing: bool, error: str) -> None:
    with Session(engine) as session:
        session.execute(
            update(AlertState)
            .where(col(AlertState.name) == NAME, col(AlertState.firing) == firing)
            .values(notifying_until=None, last_error=error[:1000])
        )
        session.commit()


def state(engine: Engine) -> AlertState | None:
    """The stored alert state (for ``mailer status``), or None before the first check."""
    with Session(engine, expire_on_commit=False) as session:
        return session.execute(select(AlertState).where(col(AlertState.name) == NAME)).scalar_one_or_none()


def _teller(settings: Settings) -> Tell:
    alerts = settings.watch.alerts

    def tell(notice: Notice) -> None:
        """Every channel is tried; the notice counts as told when one took it (an email cannot go out while
        the relay is down, and the webhook must not be repeated because of that). Raises when none did."""
        errors: list[str] = []
        told = False
        if alerts.webhook_url.is_set:
            # Slack's incoming-webhook format; Mattermost, Rocket.Chat and Teams' Slack mode read it too.
            body = json.dumps({"text": notice.text()}).encode()
            try:
                post_json(alerts.webhook_url.reveal(), body, ca_file=alerts.ca_file)
                told = True
            except (PostFailed, ConfigError) as exc:
                errors.append(f"webhook: {exc}")
        for address in alerts.email:
            try:
                _mail(settings, address, notice)
                told = True
            except PostFailed as exc:
                errors.append(str(exc))
        if errors and told:
            log.warning("alert sent, but not everywhere: %s", "; ".join(errors))
        elif errors:
            raise PostFailed("; ".join(errors))

    return tell


def _mail(settings: Settings, address: str, notice: Notice) -> None:
    msg = EmailMessage()
    msg["From"] = settings.sender.from_address
    msg["To"] = address
    msg["Subject"] = notice.subject()
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=settings.sender.domain)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to an alert
    msg.set_content(notice.text())
    with make_transport(settings.transport) as transport:
        result = transport.send(settings.sender.bounce_address or settings.sender.from_address, address, msg)
    if result.outcome is not Outcome.DELIVERED:
        raise PostFailed(f"alert email to {address}: {result.reply}")
