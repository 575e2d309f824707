"""What SES and Mailgun webhooks report, read into one Feedback per recipient (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mailer.contacts.feedback import (
    Feedback,
    Kind,
    mailgun_call,
    mailgun_feedback,
    mailgun_signed,
    ses_feedback,
)
from mailer.contacts.sns import Malformed, Unsigned
from tests.support import webhooks

MID = "<anniversary.2026.c17.x1@northwind.example>"


def test_an_ses_permanent_bounce_names_each_recipient_and_our_message_id() -> None:
    message = webhooks.ses_bounce("ann@example.com", MID)
    message["bounce"]["bouncedRecipients"].append({"emailAddress": "Bob <bob@example.com>"})
    assert ses_feedback(json.dumps(message)) == [
        Feedback(
            Kind.BOUNCE, "ann@example.com", MID.strip("<>"), "5.1.1 smtp; 550 5.1.1 <ann@example.com>... User unknown"
        ),
        Feedback(Kind.BOUNCE, "bob@example.com", MID.strip("<>"), "Permanent General"),
    ]


@pytest.mark.parametrize("bounce_type", ["Transient", "Undetermined"])
def test_an_ses_bounce_that_is_not_permanent_is_a_delay(bounce_type: str) -> None:
    [found] = ses_feedback(json.dumps(webhooks.ses_bounce("ann@example.com", MID, bounce_type)))
    assert found.kind is Kind.DELAY


def test_the_message_id_comes_from_the_headers_else_the_common_headers_else_none() -> None:
    message = webhooks.ses_bounce("ann@example.com", MID)
    del message["mail"]["headers"]
    assert ses_feedback(json.dumps(message))[0].message_id == MID.strip("<>")
    del message["mail"]["commonHeaders"]
    assert ses_feedback(json.dumps(message))[0].message_id == ""


def test_an_ses_complaint_and_an_event_publishing_record_are_read_alike() -> None:
    message = webhooks.ses_complaint("ann@example.com", MID)
    assert ses_feedback(json.dumps(message)) == [Feedback(Kind.COMPLAINT, "ann@example.com", MID.strip("<>"), "abuse")]
    published: dict[str, Any] = {"eventType": message.pop("notificationType"), **message}
    assert ses_feedback(json.dumps(published)) == ses_feedback(json.dumps(message | {"notificationType": "Complaint"}))


def test_an_ses_unsubscribe_from_everything_unsubscribes_the_recipient_and_a_topic_preference_does_not() -> None:
    mail = webhooks.ses_bounce("ann@example.com", MID)["mail"]
    event = {
        "eventType": "Subscription",
        "mail": mail,
        "subscription": {
            "contactList": "customers",
            "source": "UnsubscribeHeader",
            "newTopicPreferences": {"unsubscribeAll": True, "topicSubscriptionStatus": []},
            "oldTopicPreferences": {"unsubscribeAll": False, "topicSubscriptionStatus": []},
        },
    }
    assert ses_feedback(json.dumps(event)) == [
        Feedback(Kind.UNSUBSCRIBE, "ann@example.com", MID.strip("<>"), "UnsubscribeHeader")
    ]
    event["subscription"]["newTopicPreferences"]["unsubscribeAll"] = False
    assert [f.kind for f in ses_feedback(json.dumps(event))] == [Kind.OTHER]


def test_deliveries_and_other_ses_events_need_nothing() -> None:
    delivery = {"notificationType": "Delivery", "mail": webhooks.ses_bounce("a@example.com", MID)["mail"]}
    assert ses_feedback(json.dumps(delivery)) == [Feedback(Kind.OTHER, "", MID.strip("<>"), "Delivery")]


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ("not json", "not SES JSON"),
        ('"text"', "not a JSON object"),
        ('{"mail": {}}', "without notificationType or eventType"),
        ('{"notificationType": "Bounce", "mail": {}}', "no bounce object"),
        ('{"notificationType": "Bounce", "mail": {}, "bounce": {"bouncedRecipients": []}}', "no bouncedRecipients"),
        ('{"notificationType": "Complaint", "mail": {}, "complaint": {"complainedRecipients": [{"emailAddress": 1}]}}',
         "emailAddress is not an address"),
    ],
)
def test_an_ses_message_in_another_shape_is_malformed(message: str, problem: str) -> None:
    with pytest.raises(Malformed, match=problem):
        ses_feedback(message)


def test_a_mailgun_call_is_signed_by_hmac_of_timestamp_and_token_under_the_signing_key() -> None:
    call = mailgun_call(webhooks.mailgun_call("key-1", {"event": "delivered"}, timestamp=1795428312, token="t" * 50))
    assert (call.timestamp, call.token) == ("1795428312", "t" * 50)
    assert mailgun_signed("key-1", call)
    assert not mailgun_signed("key-2", call)
    with pytest.raises(Unsigned):
        mailgun_call(json.dumps({"event-data": {"event": "failed"}, "signature": {"token": "t"}}).encode())


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"event": "failed", "severity": "permanent", "recipient": "a@example.com",
          "delivery-status": {"code": 550, "enhanced-code": "5.1.1", "message": "No such user"}},
         Feedback(Kind.BOUNCE, "a@example.com", "m@x", "550 5.1.1 No such user")),
        ({"event": "failed", "severity": "permanent", "reason": "suppress-bounce", "recipient": "a@example.com"},
         Feedback(Kind.BOUNCE, "a@example.com", "m@x", "suppress-bounce")),
        ({"event": "failed", "severity": "temporary", "recipient": "a@example.com",
          "delivery-status": {"code": 452, "description": "mailbox full"}},
         Feedback(Kind.DELAY, "a@example.com", "m@x", "452 mailbox full")),
        ({"event": "complained", "recipient": "a@example.com"},
         Feedback(Kind.COMPLAINT, "a@example.com", "m@x", "abuse")),
        ({"event": "unsubscribed", "recipient": "a@example.com"},
         Feedback(Kind.UNSUBSCRIBE, "a@example.com", "m@x", "unsubscribed")),
        ({"event": "opened", "recipient": "a@example.com"}, Feedback(Kind.OTHER, "", "m@x", "opened")),
    ],
)
def test_mailgun_events(event: dict[str, Any], expected: Feedback) -> None:
    assert mailgun_feedback({**event, "message": {"headers": {"message-id": "m@x"}}}) == expected


def test_a_mailgun_event_without_a_recipient_or_a_name_is_malformed() -> None:
    with pytest.raises(Malformed, match="recipient is not an address"):
        mailgun_feedback({"event": "complained"})
    with pytest.raises(Malformed, match="without event"):
        mailgun_feedback({"recipient": "a@example.com"})
