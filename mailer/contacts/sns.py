"""Amazon SNS messages posted to an HTTP endpoint: read the envelope and check its signature.

Pure: nothing here fetches or stores anything. The caller fetches the signing certificate named
by ``SigningCertURL`` (after :func:`url_allowed` said yes) and hands its PEM bytes to
:func:`verify`. The string SNS signs is built as AWS documents it ("Verifying the signatures of
Amazon SNS messages"): name and value of fixed fields, each followed by a newline, in byte order;
SignatureVersion 1 is RSA PKCS#1 v1.5 over SHA-1, version 2 over SHA-256.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mailer.errors import MailerError

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"

# The fields signed for each message type, in the (byte) order they are signed.
_SIGNED = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    UNSUBSCRIBE_CONFIRMATION: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}


class Malformed(MailerError):
    """Not an SNS message (the endpoint answers 400)."""


def json_object(text: str | bytes, subject: str = "", document: str = "a JSON document") -> dict[str, Any]:
    """The JSON object in a webhook's body (or in a field of it: ``subject``); raises Malformed saying why."""
    lead = f"{subject} is " if subject else ""
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Malformed(f"{lead}not {document}: {exc}") from None
    if not isinstance(data, dict):
        raise Malformed(f"{lead}not a JSON object")
    return data


class Unsigned(MailerError):
    """An SNS message without a signature (401)."""


class BadSignature(MailerError):
    """A signature that does not verify, or a certificate from a host nobody trusts (403)."""


@dataclass(frozen=True, slots=True)
class SnsMessage:
    type: str
    message_id: str
    topic_arn: str
    timestamp: datetime
    message: str  # for a Notification, the publisher's text: SES puts its JSON here
    fields: dict[str, str]  # every string field, as signed

    @property
    def subscribe_url(self) -> str:
        return self.fields.get("SubscribeURL", "")

    @property
    def signing_cert_url(self) -> str:
        return self.fields.get("SigningCertURL", "")


def parse(body: bytes) -> SnsMessage:
    """The SNS message in a POST body; raises Malformed naming what is missing or wrong."""
    data = json_object(body)
    kind = data.get("Type")
    if kind not in _SIGNED:
        raise Malformed(f"unknown SNS message Type {kind!r}")
    required = [name for name in _SIGNED[kind] if name != "Subject"]
    missing = [name for name in required if not isinstance(data.get(name), str)]
    if missing:
        raise Malformed(f"{kind} without {', '.join(missing)}")
    try:
        stamp = datetime.fromisoformat(data["Timestamp"].replace("Z", "+00:00"))
    except ValueError:
        raise Malformed(f"Timestamp is not a time: {data['Timestamp']!r}") from None
    if stamp.tzinfo is None:
        raise Malformed(f"Timestamp without a time zone: {data['Timestamp']!r}")
    fields = {name: value for name, value in data.items() if isinstance(value, str)}
    return SnsMessage(kind, data["MessageId"], data["TopicArn"], stamp, data["Message"], fields)


def string_to_sign(msg: SnsMessage) -> bytes:
    """The canonical text SNS signed: ``name\\nvalue\\n`` for each signed field present."""
    lines = []
    for name in _SIGNED[msg.type]:
        if name in msg.fields:  # only Subject may be absent
            lines += [name, msg.fields[name]]
    return ("\n".join(lines) + "\n").encode("utf-8")


def host_pattern(hosts: tuple[str, ...]) -> re.Pattern[str]:
    """One regular expression for host patterns in which each ``*`` stands for one DNS label."""
    one = [r"[a-z0-9-]+".join(re.escape(part) for part in host.lower().split("*")) for host in hosts]
    return re.compile("|".join(f"(?:{p})" for p in one))


def url_allowed(url: str, hosts: re.Pattern[str]) -> bool:
    """An https URL, without user info, on an allowed host (and port, when the pattern names one)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != "https" or parts.username is not None or parts.password is not None or not parts.hostname:
        return False
    where = parts.hostname if port is None else f"{parts.hostname}:{port}"
    return hosts.fullmatch(where) is not None


def certificate_url_allowed(url: str, hosts: re.Pattern[str]) -> bool:
    """Where SNS keeps signing certificates: an allowed https host and a ``.pem`` file, no query."""
    if not url_allowed(url, hosts):
        return False
    parts = urlsplit(url)  # url_allowed has parsed it once already, so this does not raise
    return parts.path.endswith(".pem") and not parts.query and not parts.fragment


def public_key(pem: bytes, now: datetime) -> rsa.RSAPublicKey:
    """The RSA key of a PEM certificate valid at ``now``; raises BadSignature otherwise."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise BadSignature(f"the signing certificate is not a PEM certificate: {exc}") from None
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise BadSignature(f"the signing certificate is not valid now (until {cert.not_valid_after_utc:%Y-%m-%d})")
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise BadSignature("the signing certificate holds no RSA key")
    return key


def verify(msg: SnsMessage, key: rsa.RSAPublicKey) -> None:
    """Raise Unsigned when the message carries no signature, BadSignature when it does not verify."""
    signature = msg.fields.get("Signature", "")
    if not signature:
        raise Unsigned("the message carries no Signature")
    algorithm = _HASHES.get(msg.fields.get("SignatureVersion", ""))
    if algorithm is None:
        raise BadSignature(f"unknown SignatureVersion {msg.fields.get('SignatureVersion')!r}")
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, string_to_sign(msg), padding.PKCS1v15(), algorithm())
    except (binascii.Error, InvalidSignature):
        raise BadSignature("the signature does not match the message") from None
