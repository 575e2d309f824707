"""Provider calls signed by test keys: SNS messages (the certificate served over verified TLS on
loopback, from a trustme CA) and Mailgun webhooks (HMAC with a test signing key)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from mailer.contacts import sns

TOPIC = "arn:aws:sns:eu-west-1:123456789012:mailer-feedback"
CERT_PATH = "/SimpleNotificationService-test.pem"


def signing_identity(name: str = "sns.test") -> tuple[rsa.RSAPrivateKey, bytes]:
    """A fresh RSA key and a self-signed certificate for it, valid around now (PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class CertServer:
    """An https server on 127.0.0.1 serving the SNS signing certificate and answering SubscribeURLs."""

    ca_file: Path
    base: str  # https://127.0.0.1:PORT
    fetched: list[str] = field(default_factory=list)  # request paths, in order

    @property
    def cert_url(self) -> str:
        return self.base + CERT_PATH


@contextmanager
def cert_server(folder: Path, cert_pem: bytes) -> Iterator[CertServer]:
    ca = trustme.CA()
    ca_file = folder / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    fetched: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fetched.append(self.path)
            if self.path == CERT_PATH:
                body, kind = cert_pem, "application/x-x509-ca-cert"
            elif self.path.startswith("/?Action=ConfirmSubscription"):
                body, kind = b"<ConfirmSubscriptionResponse/>", "text/xml"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield CertServer(ca_file, f"https://127.0.0.1:{server.server_address[1]}", fetched)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def sign_sns(fields: dict[str, str], key: rsa.RSAPrivateKey, version: str = "2") -> dict[str, str]:
    """``fields`` with SignatureVersion and the Signature SNS would give them."""
    msg = sns.parse(json.dumps(fields).encode())
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(sns.string_to_sign(msg), padding.PKCS1v15(), algorithm)
    return {**fields, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode()}


def sns_notification(message: dict[str, Any], cert_url: str, *, topic: str = TOPIC, at: datetime | None = None,
                     subject: str | None = "Amazon SES Email Event Notification") -> dict[str, str]:
    """An unsigned SNS Notification carrying ``message`` (SES JSON) as its text."""
    fields = {
        "Type": "Notification",
        "MessageId": secrets.token_hex(16),
        "TopicArn": topic,
        "Message": json.dumps(message),
        "Timestamp": _stamp(at),
        "SigningCertURL": cert_url,
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
    }
    if subject is not None:
        fields["Subject"] = subject
    return fields


def sns_subscription(base: str, cert_url: str, *, topic: str = TOPIC) -> dict[str, str]:
    token = secrets.token_hex(32)
    return {
        "Type": "SubscriptionConfirmation",
        "MessageId": secrets.token_hex(16),
        "Token": token,
        "TopicArn": topic,
        "Message": f"You have chosen to subscribe to the topic {topic}.\nTo confirm the subscription, visit the "
        "SubscribeURL included in this message.",
        "SubscribeURL": f"{base}/?Action=ConfirmSubscription&TopicArn={topic}&Token={token}",
        "Timestamp": _stamp(None),
        "SigningCertURL": cert_url,
    }


def _stamp(at: datetime | None) -> str:
    return (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def ses_bounce(address: str, message_id: str, bounce_type: str = "Permanent") -> dict[str, Any]:
    """An SES bounce notification as AWS documents it, with the original headers included."""
    status = "5.1.1" if bounce_type == "Permanent" else "4.4.7"
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {"emailAddress": address, "action": "failed", "status": status,
                 "diagnosticCode": f"smtp; 550 {status} <{address}>... User unknown"}
            ],
            "timestamp": "2026-11-23T09:05:38.237Z",
            "feedbackId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000",
            "reportingMTA": "dsn; a4-8.smtp-out.eu-west-1.amazonses.com",
        },
        "mail": _mail(address, message_id),
    }


def ses_complaint(address: str, message_id: str) -> dict[str, Any]:
    return {
        "notificationType": "Complaint",
        "complaint": {
            "userAgent": "AnyCompany Feedback Loop (V0.01)",
            "complainedRecipients": [{"emailAddress": address}],
            "complaintFeedbackType": "abuse",
            "arrivalDate": "2026-11-23T10:12:33.000Z",
            "timestamp": "2026-11-23T10:12:34.000Z",
            "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000",
        },
        "mail": _mail(address, message_id),
    }


def _mail(address: str, message_id: str) -> dict[str, Any]:
    return {
        "timestamp": "2026-11-23T09:05:37.000Z",
        "source": "hello@northwind.example",
        "sourceArn": "arn:aws:ses:eu-west-1:123456789012:identity/northwind.example",
        "messageId": "0102015fd91a5ca3-93c245fe-e333-46ae-8fed-96160d20cfab-000000",
        "destination": [address],
        "headersTruncated": False,
        "headers": [
            {"name": "From", "value": "Northwind <hello@northwind.example>"},
            {"name": "To", "value": address},
            {"name": "Message-ID", "value": message_id},
        ],
        "commonHeaders": {"from": ["Northwind <hello@northwind.example>"], "to": [address], "messageId": message_id},
    }


def mailgun_call(key: str, event: dict[str, Any], *, timestamp: int | None = None, token: str | None = None) -> bytes:
    """A Mailgun webhook body for ``event``, signed with ``key``."""
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    token = token or secrets.token_hex(25)
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {"signature": {"timestamp": stamp, "token": token, "signature": signature}, "event-data": event}
    ).encode()


def mailgun_event(name: str, address: str, message_id: str, **extra: Any) -> dict[str, Any]:
    """Mailgun ``event-data``; its message-id header comes without angle brackets, as Mailgun sends it."""
    return {
        "event": name,
        "id": secrets.token_hex(11),
        "timestamp": time.time(),
        "recipient": address,
        "message": {"headers": {"message-id": message_id.strip("<>"), "to": address}},
        **extra,
    }
