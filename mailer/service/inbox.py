"""Reading the inbox: bounces, complaints and unsubscribe requests end in the opt-out columns.

One pass over a mailbox (a Maildir, mailer/service/maildirbox.py, or an IMAP folder,
mailer/service/imapbox.py: the mailbox is only where the bytes come from and where handled
mail goes). Each message is classified by mailer/contacts/reports.py and acted on with
mailer/contacts/optout.py (a bounced send-log row with mailer/outbox/returns.py, temporary
failures with mailer/contacts/softbounces.py); handled messages move to the processed folder
(never deleted), the rest stay where they are, untouched. Every change is conditional, so a
second pass over the same mail (a crash between acting and moving) changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy

from sqlalchemy import Engine

from mailer.compose.tokens import BadToken, read_mailto_token
from mailer.config import InboxSettings, Settings
from mailer.contacts import optout, softbounces
from mailer.contacts.reports import Failure, Kind, Verdict, classify
from mailer.outbox import returns
from mailer.service.imapbox import ImapBox
from mailer.service.letters import Letter, Mailbox
from mailer.service.maildirbox import MaildirBox
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


def mailbox_for(inbox: InboxSettings) -> AbstractContextManager[Mailbox]:
    """The mailbox ``[inbox]`` names, not yet opened."""
    if inbox.imap is not None:
        return ImapBox(inbox.imap)
    assert inbox.path is not None and inbox.processed is not None  # the config requires them for a Maildir
    return MaildirBox(inbox.path, inbox.processed)


def process(
    engine: Engine, mailbox: AbstractContextManager[Mailbox], settings: Settings, now: datetime | None = None
) -> InboxReport:
    """Read every message in the mailbox once, act on it, and move the handled ones to the processed folder.

    Raises what the mailbox raises when it cannot be read (MailerError; ``Unreachable`` for a server).
    """
    reader = _Reader(engine, settings, now or utcnow())
    report = InboxReport()
    with mailbox as box:
        for letter in box.letters():
            kind = reader.act(letter)
            report.counts[kind] += 1
            if kind in HANDLED:
                box.file_away(letter)
        where = box.where
    log.info("inbox %s: %s", where, report.summary())
    return report


class _Reader:
    """Classifies one message and does what its verdict asks."""

    def __init__(self, engine: Engine, settings: Settings, now: datetime) -> None:
        self.engine = engine
        self.settings = settings
        self.now = now
        self._secret: str | None = None

    @property
    def secret(self) -> str:
        if self._secret is None:
            self._secret = self.settings.sender.secret.reveal()
        return self._secret

    def act(self, letter: Letter) -> Kind:
        """Do what the message asks; the kind it was counted as (an unsubscribe nobody matches goes to a human)."""
        sender = self.settings.sender
        msg = message_from_bytes(letter.data, policy=policy.compat32)
        verdict = classify(msg, sender.unsubscribe_mailto, sender.bounce_address if sender.verp else "")
        name = letter.name
        if verdict.kind is Kind.BOUNCE or verdict.kind is Kind.DELAY:
            message_id = self._message_id(verdict)
            for failure in verdict.failures:
                self._failed(failure, message_id, letter)
        elif verdict.kind is Kind.COMPLAINT:
            message_id = self._message_id(verdict)
            address = verdict.address or (returns.address_of(self.engine, message_id) if message_id else "")
            if not address:
                log.warning("inbox %s: malformed: a complaint naming no recipient and no message we sent", name)
                return Kind.MALFORMED
            self._suppress(address, "complaint", name)
        elif verdict.kind is Kind.UNSUBSCRIBE:
            return self._unsubscribe(verdict, name)
        elif verdict.kind is Kind.MALFORMED:
            log.warning("inbox %s: malformed: %s", name, verdict.why)
        elif verdict.kind is Kind.AUTO_REPLY:
            log.info("inbox %s: automatic reply ignored: %s", name, verdict.why)
        return verdict.kind

    def _message_id(self, verdict: Verdict) -> str:
        """The sent message's Message-ID: from the returned headers, else from the VERP tag of the bounce address."""
        if verdict.original_message_id or not verdict.tag:
            return verdict.original_message_id
        return returns.message_id_by_tag(self.engine, verdict.tag)

    def _failed(self, failure: Failure, message_id: str, letter: Letter) -> None:
        name = letter.name
        what = f"{failure.status} {failure.diagnostic}".strip()
        if not failure.permanent:
            log.info("inbox %s: %s for %s: %s", name, failure.action, failure.address, what)
            # One message counts once however many warnings come about it; a report we cannot tie to
            # a message counts as itself (its digest is the same when it is read again).
            digest = hashlib.sha256(letter.data).hexdigest()[:40]
            key = f"msg:{message_id.strip('<>')}" if message_id else f"report:{digest}"
            rule = self.settings.soft_bounces
            reason = softbounces.note(
                self.engine, failure.address, key, failure.status, failure.diagnostic, self.now, rule
            )
            if reason:
                log.info("inbox %s: %s suppressed: %s", name, failure.address, reason)
            return
        self._suppress(failure.address, f"bounce: {what}", name)
        if not message_id:
            log.info("inbox %s: the bounce for %s names no Message-ID; no send-log row marked", name, failure.address)
            return
        if returns.bounce_later(self.engine, message_id, what, self.now):
            log.info("inbox %s: send-log row of <%s> bounced: %s", name, message_id.strip("<>"), what)

    def _suppress(self, address: str, reason: str, name: str) -> None:
        try:
            optout.suppress_address(self.engine, address, reason, self.now)
        except optout.UnknownAddress:
            log.info("inbox %s: %s for %s, whom no customer has", name, reason, address)

    def _unsubscribe(self, verdict: Verdict, name: str) -> Kind:
        """By the signed token in the address the mail came to, else by its From address."""
        if verdict.tag:
            try:
                customer_id = read_mailto_token(self.secret, verdict.tag)
            except BadToken as exc:
                log.warning("inbox %s: the unsubscribe address's token is not ours (%s); trying the sender", name, exc)
            else:
                change = optout.unsubscribe(self.engine, customer_id, optout.Source.MAILTO, self.now)
                if change is not optout.Change.UNKNOWN:
                    return Kind.UNSUBSCRIBE
                log.warning("inbox %s: the unsubscribe token names customer %s, who is gone", name, customer_id)
        if not verdict.address:
            log.warning("inbox %s: an unsubscribe request with no valid token and no From address", name)
            return Kind.HUMAN
        try:
            optout.unsubscribe_address(self.engine, verdict.address, optout.Source.MAILTO)
        except optout.UnknownAddress:
            log.warning("inbox %s: an unsubscribe request from %s, whom no customer has", name, verdict.address)
            return Kind.HUMAN
        return Kind.UNSUBSCRIBE
