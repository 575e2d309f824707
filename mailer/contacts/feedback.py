"""What a relay's webhook reports: bounces, delays, complaints and unsubscribes, one per recipient.

Pure: :func:`ses_feedback` reads the JSON that Amazon SES publishes to SNS (notifications and
event publishing alike), :func:`mailgun_call` reads a Mailgun webhook body,
:func:`mailgun_signed` checks its HMAC and :func:`mailgun_feedback` reads its event; nothing
here touches the store or the network (mailer/web/webhooks.py does). Unknown fields are ignored, as both providers ask.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mailer.contacts.reports import normal_message_id
from mailer.contacts.sns import Malformed, Unsigned, json_object


class Kind(StrEnum):
    BOUNCE = "bounce"  # permanent: suppress the address, mark the row bounced
    DELAY = "delay"  # transient: logged only
    COMPLAINT = "complaint"  # the recipient reported the message as spam: suppress
    UNSUBSCRIBE = "unsubscribe"  # the recipient unsubscribed at the provider: unsubscribe
    OTHER = "other"  # deliveries, opens, clicks…: nothing to do


@dataclass(frozen=True, slots=True)
class Feedback:
    kind: Kind
    address: str  # the recipient ("" for OTHER)
    message_id: str = ""  # the Message-ID of the message we sent, without <>, when the report carries it
    detail: str = ""  # status and diagnostic, complaint type, event name: a few words for the log and the reason


# ---- Amazon SES -----------------------------------------------------------------------------------


def ses_feedback(message: str) -> list[Feedback]:
    """The events in one SES message (an SNS Notification's ``Message``); raises Malformed."""
    data = json_object(message, "the SNS Message", "SES JSON")
    # Feedback notifications say notificationType; event publishing (configuration sets) says eventType.
    kind = data.get("notificationType") or data.get("eventType")
    if not isinstance(kind, str):
        raise Malformed("an SES message without notificationType or eventType")
    mail = _object(data, "mail")
    message_id = _message_id(mail)
    if kind == "Bounce":
        return _ses_bounce(_object(data, "bounce"), message_id)
    if kind == "Complaint":
        return _ses_complaint(_object(data, "complaint"), message_id)
    if kind == "Subscription":
        return _ses_subscription(_object(data, "subscription"), mail, message_id)
    return [Feedback(Kind.OTHER, "", message_id, kind)]


def _ses_bounce(bounce: dict[str, Any], message_id: str) -> list[Feedback]:
    bounce_type = str(bounce.get("bounceType", ""))
    # Only a Permanent bounce means the address is gone; Transient and Undetermined may pass.
    kind = Kind.BOUNCE if bounce_type == "Permanent" else Kind.DELAY
    found = []
    for recipient in _list(bounce, "bouncedRecipients"):
        address = _address(recipient, "emailAddress")
        status = str(recipient.get("status") or "")
        diagnostic = str(recipient.get("diagnosticCode") or "")
        words = " ".join(w for w in (status, diagnostic) if w) or f"{bounce_type} {bounce.get('bounceSubType', '')}"
        found.append(Feedback(kind, address, message_id, " ".join(words.split())))
    return found


def _ses_complaint(complaint: dict[str, Any], message_id: str) -> list[Feedback]:
    what = str(complaint.get("complaintFeedbackType") or "abuse")
    return [
        Feedback(Kind.COMPLAINT, _address(r, "emailAddress"), message_id, what)
        for r in _list(complaint, "complainedRecipients")
    ]


def _ses_subscription(subscription: dict[str, Any], mail: dict[str, Any], message_id: str) -> list[Feedback]:
    """SES list management: an unsubscribe from everything unsubscribes; a single topic is not ours to map."""
    preferences = subscription.get("newTopicPreferences")
    if not isinstance(preferences, dict) or preferences.get("unsubscribeAll") is not True:
        return [Feedback(Kind.OTHER, "", message_id, "Subscription (topic preferences)")]
    source = str(subscription.get("source") or "list management")
    destination = mail.get("destination")
    if not isinstance(destination, list) or not all(isinstance(a, str) and "@" in a for a in destination):
        raise Malformed("a Subscription event without the recipient in mail.destination")
    return [Feedback(Kind.UNSUBSCRIBE, a, message_id, source) for a in destination]


def _message_id(mail: dict[str, Any]) -> str:
    """Our Message-ID: SES replaces the header on the wire but reports the original one."""
    for header in mail.get("headers") or []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
            return normal_message_id(str(header.get("value", "")))
    common = mail.get("commonHeaders")
    if isinstance(common, dict) and isinstance(common.get("messageId"), str):
        return normal_message_id(common["messageId"])
    return ""


# ---- Mailgun --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MailgunCall:
    timestamp: str
    token: str
    signature: str
    event: dict[str, Any]  # read with mailgun_feedback once the signature is checked


def mailgun_call(body: bytes) -> MailgunCall:
    """A Mailgun webhook's JSON body; raises Malformed, or Unsigned when the signature is missing."""
    data = json_object(body)
    signature = data.get("signature")
    if not isinstance(signature, dict) or not all(
        isinstance(signature.get(k), str | int) and str(signature.get(k)) for k in ("timestamp", "token", "signature")
    ):
        raise Unsigned("no signature (timestamp, token, signature)")
    return MailgunCall(
        timestamp=str(signature["timestamp"]),
        token=str(signature["token"]),
        signature=str(signature["signature"]),
        event=_object(data, "event-data"),
    )


def mailgun_signed(key: str, call: MailgunCall) -> bool:
    """Whether ``signature`` is HMAC-SHA256 of timestamp + token under the webhook signing key."""
    expected = hmac.new(key.encode(), (call.timestamp + call.token).encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, call.signature.lower())


def mailgun_feedback(event: dict[str, Any]) -> Feedback:
    """What one Mailgun ``event-data`` reports; raises Malformed."""
    name = str(event.get("event") or "")
    if not name:
        raise Malformed("event-data without event")
    message = event.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    message_id = normal_message_id(str(headers.get("message-id") or "")) if isinstance(headers, dict) else ""
    if name == "failed":
        status = event.get("delivery-status")
        words = ""
        if isinstance(status, dict):
            text = status.get("message") or status.get("description")
            parts = (status.get("code"), status.get("enhanced-code"), text)
            words = " ".join(str(p) for p in parts if p not in (None, ""))
        words = " ".join((words or str(event.get("reason") or "")).split())
        kind = Kind.BOUNCE if event.get("severity") == "permanent" else Kind.DELAY
        return Feedback(kind, _address(event, "recipient"), message_id, words)
    if name == "complained":
        return Feedback(Kind.COMPLAINT, _address(event, "recipient"), message_id, "abuse")
    if name == "unsubscribed":
        return Feedback(Kind.UNSUBSCRIBE, _address(event, "recipient"), message_id, "unsubscribed")
    return Feedback(Kind.OTHER, "", message_id, name)


# ---- shapes ---------------------------------------------------------------------------------------


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise Malformed(f"no {key} object")
    return value


def _list(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise Malformed(f"no {key} list")
    return value


def _address(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or "@" not in value:
        raise Malformed(f"{key} is not an address: {value!r}")
    # SES may quote a display name ("Ann <ann@example.com>"); the mailbox is what matters.
    return value.rpartition("<")[2].rstrip(">").strip()
