"""Reading SNS messages and checking their signatures (pure: the certificate is handed in)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from mailer.contacts import sns
from tests.support.webhooks import sign_sns, signing_identity, sns_notification, sns_subscription

NOW = datetime.now(UTC)


def test_the_string_to_sign_of_a_notification_is_the_one_in_the_aws_documentation() -> None:
    msg = sns.parse(json.dumps({
        "Type": "Notification",
        "MessageId": "4d4dc071-ddbf-465d-bba8-08f81c89da64",
        "TopicArn": "arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P",
        "Subject": "My subject",
        "Message": "My Test Message",
        "Timestamp": "2019-01-31T04:37:04.321Z",
        "SignatureVersion": "1",
        "Signature": "x",
        "SigningCertURL": "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-abc.pem",
        "UnsubscribeURL": "https://sns.us-east-2.amazonaws.com/?Action=Unsubscribe",
    }).encode())
    assert sns.string_to_sign(msg) == (
        b"Message\nMy Test Message\nMessageId\n4d4dc071-ddbf-465d-bba8-08f81c89da64\nSubject\nMy subject\n"
        b"Timestamp\n2019-01-31T04:37:04.321Z\n"
        b"TopicArn\narn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P\nType\nNotification\n"
    )


def test_a_subscription_confirmation_signs_its_link_and_token_and_a_notification_without_subject_leaves_it_out() -> (
    None
):
    fields = sns_subscription("https://sns.example", "https://c/x.pem")
    signed = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
    expected = "".join(f"{name}\n{fields[name]}\n" for name in signed)
    assert sns.string_to_sign(sns.parse(json.dumps(fields).encode())).decode() == expected
    plain = sns_notification({}, "https://c/x.pem", subject=None)
    signed = ("Message", "MessageId", "Timestamp", "TopicArn", "Type")
    expected = "".join(f"{name}\n{plain[name]}\n" for name in signed)
    assert sns.string_to_sign(sns.parse(json.dumps(plain).encode())).decode() == expected


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_signature_verifies_with_the_signing_certificate_and_fails_when_anything_changes(version: str) -> None:
    key, pem = signing_identity()
    fields = sign_sns(sns_notification({"notificationType": "Delivery"}, "https://c/x.pem"), key, version)
    sns.verify(sns.parse(json.dumps(fields).encode()), sns.public_key(pem, NOW))
    for name, value in (("Message", "{}"), ("Subject", "other"), ("TopicArn", "arn:aws:sns:x:1:y"),
                        ("SignatureVersion", "2" if version == "1" else "1")):
        changed = sns.parse(json.dumps({**fields, name: value}).encode())
        with pytest.raises(sns.BadSignature):
            sns.verify(changed, sns.public_key(pem, NOW))
    with pytest.raises(sns.BadSignature):
        sns.verify(sns.parse(json.dumps(fields).encode()), sns.public_key(signing_identity()[1], NOW))
    with pytest.raises(sns.Unsigned):
        sns.verify(sns.parse(json.dumps({**fields, "Signature": ""}).encode()), sns.public_key(pem, NOW))
    with pytest.raises(sns.BadSignature, match="not valid now"):
        sns.public_key(pem, NOW + timedelta(days=90))


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem", True),
        ("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem", True),
        ("https://SNS.EU-WEST-1.AMAZONAWS.COM/SimpleNotificationService-abc.pem", True),
        ("http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem", False),
        ("https://sns.eu-west-1.amazonaws.com.evil.example/a.pem", False),
        ("https://evil.example/sns.eu-west-1.amazonaws.com/a.pem", False),
        ("https://sns.amazonaws.com/a.pem", False),
        ("https://sns.a.b.amazonaws.com/a.pem", False),
        ("https://me@sns.eu-west-1.amazonaws.com/a.pem", False),
        ("https://sns.eu-west-1.amazonaws.com:8443/a.pem", False),
        ("https://sns.eu-west-1.amazonaws.com/a.txt", False),
        ("https://sns.eu-west-1.amazonaws.com/a.pem?x=1", False),
        ("https://[::1/a.pem", False),
    ],
)
def test_certificates_come_only_from_sns_hosts_over_https(url: str, allowed: bool) -> None:
    hosts = sns.host_pattern(("sns.*.amazonaws.com", "sns.*.amazonaws.com.cn"))
    assert sns.certificate_url_allowed(url, hosts) is allowed


def test_a_host_pattern_with_a_port_allows_that_loopback_server_only() -> None:
    hosts = sns.host_pattern(("127.0.0.1:*",))
    assert sns.url_allowed("https://127.0.0.1:8443/?Action=ConfirmSubscription", hosts)
    assert not sns.url_allowed("https://127.0.0.1/x", hosts)
    assert not sns.url_allowed("https://127.0.0.10:8443/x", hosts)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"\xff", "not a JSON document"),
        (b"[]", "not a JSON object"),
        (b'{"Type": "Other"}', "unknown SNS message Type 'Other'"),
        (b'{"Type": "Notification", "Message": "m"}', "Notification without MessageId, Timestamp, TopicArn"),
        (json.dumps({**sns_notification({}, "u"), "Timestamp": "yesterday"}).encode(), "Timestamp is not a time"),
        (json.dumps({**sns_notification({}, "u"), "Timestamp": "2026-11-23T10:00:00"}).encode(), "without a time zone"),
    ],
)
def test_what_is_not_an_sns_message_is_malformed_with_its_reason(body: bytes, problem: str) -> None:
    with pytest.raises(sns.Malformed, match=problem):
        sns.parse(body)
