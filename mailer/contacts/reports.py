"""What came back: a bounce, a complaint, an unsubscribe, an automatic reply, or mail for a human.

Pure: :func:`classify` takes a parsed message and returns a :class:`Verdict`; it reads no
files and no database (mailer/service/inbox.py does that). Bounces are read from RFC 3464
delivery status notifications and complaints from RFC 5965 feedback reports, the two formats
Postfix, Exim, Gmail, Outlook and Yahoo send; anything in another shape is left for a human.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from email import message_from_string, policy
from email.message import Message
from email.utils import getaddresses, parseaddr
from enum import StrEnum


class Kind(StrEnum):
    BOUNCE = "bounce"  # a DSN with at least one permanent failure
    DELAY = "delay"  # a DSN with transient failures only (4.x.x, "delayed"): logged, nobody suppressed
    COMPLAINT = "complaint"  # an ARF feedback report: the recipient marked the message as spam
    UNSUBSCRIBE = "unsubscribe"  # mail to the List-Unsubscribe mailto: address
    AUTO_REPLY = "auto-reply"  # out of office and other machines answering: ignored
    HUMAN = "human"  # anything else: a person should read it
    MALFORMED = "malformed"  # claims to be a report but cannot be read as one


@dataclass(frozen=True, slots=True)
class Failure:
    """One recipient of a DSN that was not delivered."""

    address: str
    action: str  # "failed" or "delayed" (RFC 3464 2.3.3)
    status: str  # "5.1.1"
    diagnostic: str  # the remote server's words, e.g. "550 5.1.1 <ann@example.com>: user unknown"

    @property
    def permanent(self) -> bool:
        return self.action == "failed" and self.status.startswith("5.")


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Kind
    why: str = ""  # for a malformed report, what is wrong; else a few words for the log
    failures: tuple[Failure, ...] = ()  # BOUNCE and DELAY
    address: str = ""  # COMPLAINT: the complaining recipient (may be "" when redacted); UNSUBSCRIBE: the sender
    original_message_id: str = ""  # BOUNCE, DELAY, COMPLAINT: the Message-ID of the message we sent, without <>
    # The +tag of our address the message came to: for a report to the VERP bounce address, the left part
    # of the sent message's Message-ID; for an UNSUBSCRIBE, the signed token of the mailto: link.
    tag: str = ""


_OUT_OF_OFFICE = re.compile(
    r"out of (the )?office|automatic reply|auto[- ]?reply|autoreply|auto[- ]?response|on vacation|on holiday"
    r"|away from (my|the) (desk|office)|abwesenheit|absence|réponse automatique|respuesta automática",
    re.IGNORECASE,
)
_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")


def classify(msg: Message, unsubscribe_address: str, bounce_address: str = "") -> Verdict:
    """Say what ``msg`` is; ``unsubscribe_address`` is the ``mailto:`` of List-Unsubscribe.

    Reports come first (a DSN is also an automatic message), then automatic replies (a
    machine answering never unsubscribes anyone), then mail to the unsubscribe address.
    A report sent to ``bounce_address`` with a +tag (VERP) carries that tag.
    """
    if msg.get_content_type() == "multipart/report":
        report_type = str(msg.get_param("report-type", "") or "").lower()
        verdict = None
        if report_type == "delivery-status":
            verdict = _delivery_status(msg)
        if report_type == "feedback-report":
            verdict = _feedback_report(msg)
        if verdict is not None:
            tag = _tag(msg, bounce_address) if bounce_address else ""
            return replace(verdict, tag=tag) if tag and verdict.kind is not Kind.MALFORMED else verdict
    if _is_automatic(msg):
        return Verdict(Kind.AUTO_REPLY, why=str(msg.get("Subject", "")))
    if _sent_to(msg, unsubscribe_address):
        sender = parseaddr(str(msg.get("From", "")))[1]
        tag = _tag(msg, unsubscribe_address)
        if "@" not in sender and not tag:
            return Verdict(Kind.HUMAN, why="mail to the unsubscribe address without a From address")
        return Verdict(Kind.UNSUBSCRIBE, address=sender if "@" in sender else "", why=f"from {sender}", tag=tag)
    return Verdict(Kind.HUMAN)


def _is_automatic(msg: Message) -> bool:
    auto_submitted = str(msg.get("Auto-Submitted", "")).split(";")[0].strip().lower()
    precedence = str(msg.get("Precedence", "")).strip().lower()
    return (
        auto_submitted not in ("", "no")
        or msg.get("X-Autoreply") is not None
        or msg.get("X-Autorespond") is not None
        or precedence in ("auto_reply", "bulk", "junk")
        or bool(_OUT_OF_OFFICE.search(str(msg.get("Subject", ""))))
    )


# The headers that may name the address a message came to; the delivering server's first.
_RECIPIENT_FIELDS = ("Delivered-To", "X-Original-To", "Envelope-To", "To", "Cc")


def _recipients(msg: Message) -> list[str]:
    found = getaddresses([str(value) for name in _RECIPIENT_FIELDS for value in msg.get_all(name, [])])
    return [addr.lower() for _, addr in found if "@" in addr]


def _sent_to(msg: Message, address: str) -> bool:
    # The mailto: link carries a tag (unsubscribe+<token>@…); the mailbox is what matters.
    wanted = _without_tag(address.lower())
    return any(_without_tag(addr) == wanted for addr in _recipients(msg))


def _tag(msg: Message, address: str) -> str:
    """The +tag on ``address`` that the message was sent to ("" when it came to the bare address).

    The tag is what follows the last "+", so a configured address with a tag of its own still works.
    """
    wanted = _without_tag(address.lower())
    configured = address.lower().rpartition("@")[0]
    for addr in _recipients(msg):
        local = addr.rpartition("@")[0]
        if _without_tag(addr) == wanted and local != configured and "+" in local:
            return local.rpartition("+")[2]
    return ""


def _without_tag(address: str) -> str:
    local, at, domain = address.rpartition("@")
    return f"{local.split('+', 1)[0]}{at}{domain}"


def _delivery_status(msg: Message) -> Verdict:
    part = _first_part(msg, "message/delivery-status")
    if part is None:
        return Verdict(Kind.MALFORMED, why="a delivery-status report without a message/delivery-status part")
    blocks = _field_blocks(part)
    recipients = [b for b in blocks[1:] if b.get("Final-Recipient") or b.get("Original-Recipient")]
    if not recipients:
        return Verdict(Kind.MALFORMED, why="a delivery-status report naming no recipient")
    failures: list[Failure] = []
    for block in recipients:
        action = str(block.get("Action", "")).strip().lower()
        status = str(block.get("Status", "")).split()[0] if str(block.get("Status", "")).strip() else ""
        address = _typed_address(str(block.get("Original-Recipient") or block.get("Final-Recipient")))
        if "@" not in address:
            return Verdict(Kind.MALFORMED, why=f"not an address in Final-Recipient: {address!r}")
        if action not in ("failed", "delayed"):
            continue  # delivered, relayed, expanded: nothing went wrong for this recipient
        if not _STATUS.match(status):
            return Verdict(Kind.MALFORMED, why=f"no valid Status for {address}: {status!r}")
        diagnostic = _typed_value(str(block.get("Diagnostic-Code", "")))
        failures.append(Failure(address, action, status, diagnostic))
    message_id = _original_message_id(msg)
    if any(f.permanent for f in failures):
        return Verdict(Kind.BOUNCE, failures=tuple(failures), original_message_id=message_id)
    if failures:
        return Verdict(Kind.DELAY, failures=tuple(failures), original_message_id=message_id)
    return Verdict(Kind.AUTO_REPLY, why="a delivery report with nothing failed", original_message_id=message_id)


def _feedback_report(msg: Message) -> Verdict:
    part = _first_part(msg, "message/feedback-report")
    if part is None:
        return Verdict(Kind.MALFORMED, why="a feedback report without a message/feedback-report part")
    blocks = _field_blocks(part)
    fields = blocks[0] if blocks else {}
    if not fields.get("Feedback-Type"):
        return Verdict(Kind.MALFORMED, why="a feedback report without Feedback-Type")
    original = _original_headers(msg)
    address = _typed_address(str(fields.get("Original-Rcpt-To", "")))
    if "@" not in address and original is not None:
        address = parseaddr(str(original.get("To", "")))[1]
    return Verdict(
        Kind.COMPLAINT,
        why=str(fields["Feedback-Type"]).strip().lower(),
        address=address if "@" in address else "",
        original_message_id=_original_message_id(msg),
    )


def _first_part(msg: Message, content_type: str) -> Message | None:
    for part in msg.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def _field_blocks(part: Message) -> list[dict[str, str]]:
    """The header blocks of a report part (per-message fields, then one block per recipient).

    The email package parses message/delivery-status into a list of blocks and other
    message/* types into one embedded message; a part it left as text is parsed here.
    """
    payload = part.get_payload()
    if isinstance(payload, str):
        text = payload.replace("\r\n", "\n")
        payload = [message_from_string(block + "\n", policy=policy.compat32) for block in text.split("\n\n")]
    blocks: list[dict[str, str]] = []
    for block in payload if isinstance(payload, list) else []:
        if not isinstance(block, Message):
            continue
        fields = {str(k).title(): " ".join(str(v).split()) for k, v in block.items()}
        if fields:
            blocks.append(fields)
    return blocks


def _original_headers(msg: Message) -> Message | None:
    """The headers of the message we sent, from a message/rfc822 or text/rfc822-headers part."""
    for part in msg.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                inner = payload[0]
                return inner if isinstance(inner, Message) else None
        if kind in ("text/rfc822-headers", "text/global-headers"):
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                return message_from_string(text.decode("utf-8", "replace"), policy=policy.compat32)
    return None


def _original_message_id(msg: Message) -> str:
    original = _original_headers(msg)
    return normal_message_id(str(original.get("Message-ID", ""))) if original is not None else ""


def normal_message_id(value: str) -> str:
    """A Message-ID without its angle brackets and surrounding space, as compared with the send log."""
    return " ".join(value.split()).strip().removeprefix("<").removesuffix(">")


def _typed_address(value: str) -> str:
    """``rfc822; ann@example.com`` → ``ann@example.com`` (RFC 3464 address-type; value)."""
    return _typed_value(value).strip().strip("<>")


def _typed_value(value: str) -> str:
    kind, semicolon, rest = value.partition(";")
    return " ".join((rest if semicolon and " " not in kind.strip() else value).split())

