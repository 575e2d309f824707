"""Reading the inbox: bounces, complaints and unsubscribe requests end in the opt-out columns.

One pass over the ``[inbox]`` Maildir (``new/`` and ``cur/``): each message is classified by
mailer/contacts/reports.py and acted on with mailer/contacts/optout.py (a bounced send-log row
with mailer/outbox/returns.py); handled messages move to the ``processed`` Maildir (never
deleted), the rest stay where they are, untouched. Every change is conditional, so a second pass
over the same mail (a crash between acting and moving) changes nothing.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from pathlib import Path

from sqlalchemy import Engine

from mailer.config import InboxSettings
from mailer.contacts import optout
from mailer.contacts.reports import Failure, Kind, Verdict, classify
from mailer.errors import MailerError
from mailer.outbox import returns
from mailer.store.tables import utcnow

log = logging.getLogger(__name__)

# The order the summary names them in.
SUMMARY = (
    (Kind.BOUNCE, "bounces"),
    (Kind.COMPLAINT, "complaints"),
    (Kind.UNSUBSCRIBE, "unsubscribes"),
    (Kind.AUTO_REPLY, "auto-replies"),
    (Kind.HUMAN, "left for a human"),
)
EXTRA = ((Kind.DELAY, "delays"), (Kind.MALFORMED, "malformed"))  # named only when there are some
HANDLED = frozenset({Kind.BOUNCE, Kind.DELAY, Kind.COMPLAINT, Kind.UNSUBSCRIBE, Kind.AUTO_REPLY})


@dataclass
class InboxReport:
    counts: Counter[Kind] = field(default_factory=Counter)

    def summary(self) -> str:
        parts = [f"{label} {self.counts[kind]}" for kind, label in SUMMARY]
        parts += [f"{label} {self.counts[kind]}" for kind, label in EXTRA if self.counts[kind]]
        return ", ".join(parts)


def process(
    engine: Engine, inbox: InboxSettings, unsubscribe_address: str, now: datetime | None = None
) -> InboxReport:
    """Read every message in the inbox once, act on it, and move the handled ones to ``processed``.

    Raises MailerError when ``inbox.path`` is not a Maildir folder.
    """
    if not (inbox.path / "new").is_dir() or not (inbox.path / "cur").is_dir():
        raise MailerError(f"[inbox] path: {inbox.path} is not a Maildir folder (it needs new/ and cur/)")
    report = InboxReport()
    for file in _messages(inbox.path):
        verdict = classify(message_from_bytes(file.read_bytes(), policy=policy.compat32), unsubscribe_address)
        kind = _act(engine, verdict, file.name, now or utcnow())
        report.counts[kind] += 1
        if kind in HANDLED:
            _move(file, inbox.processed)
    log.info("inbox %s: %s", inbox.path, report.summary())
    return report


def _messages(folder: Path) -> list[Path]:
    # Dot files are not messages (Maildir++ keeps subfolders, like the default processed one, as .Name).
    return [
        file
        for sub in ("new", "cur")
        for file in sorted((folder / sub).iterdir())
        if file.is_file() and not file.name.startswith(".")
    ]


def _act(engine: Engine, verdict: Verdict, name: str, now: datetime) -> Kind:
    """Do what the verdict asks; the kind it was counted as (an unsubscribe nobody matches goes to a human)."""
    if verdict.kind is Kind.BOUNCE or verdict.kind is Kind.DELAY:
        for failure in verdict.failures:
            _failed(engine, failure, verdict.original_message_id, name, now)
    elif verdict.kind is Kind.COMPLAINT:
        address = verdict.address or _row_address(engine, verdict.original_message_id)
        if not address:
            log.warning("inbox %s: malformed: a complaint naming no recipient and no message we sent", name)
            return Kind.MALFORMED
        _suppress(engine, address, "complaint", name, now)
    elif verdict.kind is Kind.UNSUBSCRIBE:
        try:
            optout.unsubscribe_address(engine, verdict.address, optout.Source.MAILTO)
        except optout.UnknownAddress:
            log.warning("inbox %s: an unsubscribe request from %s, whom no customer has", name, verdict.address)
            return Kind.HUMAN
    elif verdict.kind is Kind.MALFORMED:
        log.warning("inbox %s: malformed: %s", name, verdict.why)
    elif verdict.kind is Kind.AUTO_REPLY:
        log.info("inbox %s: automatic reply ignored: %s", name, verdict.why)
    return verdict.kind


def _failed(engine: Engine, failure: Failure, message_id: str, name: str, now: datetime) -> None:
    if not failure.permanent:
        log.info("inbox %s: %s for %s: %s %s", name, failure.action, failure.address, failure.status,
                 failure.diagnostic)
        return
    what = f"{failure.status} {failure.diagnostic}".strip()
    _suppress(engine, failure.address, f"bounce: {what}", name, now)
    if not message_id:
        log.info("inbox %s: the bounce for %s names no Message-ID; no send-log row marked", name, failure.address)
        return
    if returns.bounce_later(engine, message_id, what, now):
        log.info("inbox %s: send-log row of <%s> bounced: %s", name, message_id, what)


def _suppress(engine: Engine, address: str, reason: str, name: str, now: datetime) -> None:
    try:
        optout.suppress_address(engine, address, reason, now)
    except optout.UnknownAddress:
        log.info("inbox %s: %s for %s, whom no customer has", name, reason, address)


def _row_address(engine: Engine, message_id: str) -> str:
    """The address a message went to, found by its Message-ID (providers may redact a complaint's recipient)."""
    return returns.address_of(engine, message_id) if message_id else ""


def _move(file: Path, processed: Path) -> None:
    """Move a handled message into the processed Maildir's cur/, marked seen; the bytes are kept as they are."""
    for sub in ("new", "cur", "tmp"):
        (processed / sub).mkdir(parents=True, exist_ok=True)
    name = file.name if ":2," in file.name else f"{file.name}:2,S"
    shutil.move(file, processed / "cur" / name)
