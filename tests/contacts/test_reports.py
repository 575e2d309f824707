"""The classifier of returned mail, on samples of the shapes real servers send and on hand-made edge cases."""

from __future__ import annotations

from email import message_from_string, policy

import pytest

from mailer.contacts.reports import Failure, Kind, Verdict, classify
from tests.support.inbox import sample

UNSUBSCRIBE = "unsubscribe@northwind.example"
SENT_ID = "<occasion-ref@northwind.example>"


@pytest.mark.parametrize(
    ("name", "status", "diagnostic"),
    [
        ("postfix-bounce", "5.1.1",
         "550 5.1.1 <ann@example.com>: Recipient address rejected: User unknown in virtual mailbox table"),
        ("exim-bounce", "5.0.0", "550 5.1.1 The email account that you tried to reach does not exist"),
        ("gmail-bounce", "5.1.1", "550-5.1.1 The email account that you tried to reach does not exist."),
    ],
)
def test_a_permanent_dsn_names_the_recipient_status_diagnostic_and_the_sent_message(
    name: str, status: str, diagnostic: str
) -> None:
    verdict = classify(sample(name, "ann@example.com", SENT_ID), UNSUBSCRIBE)
    assert verdict.kind is Kind.BOUNCE
    [failure] = verdict.failures
    assert (failure.address, failure.action, failure.status) == ("ann@example.com", "failed", status)
    assert failure.diagnostic.startswith(diagnostic)
    assert failure.permanent
    assert verdict.original_message_id == "occasion-ref@northwind.example"


def test_a_delayed_dsn_is_transient() -> None:
    verdict = classify(sample("postfix-delayed", "ann@example.com", SENT_ID), UNSUBSCRIBE)
    assert verdict.kind is Kind.DELAY
    [failure] = verdict.failures
    assert (failure.action, failure.status, failure.permanent) == ("delayed", "4.4.1", False)
    assert verdict.original_message_id == "occasion-ref@northwind.example"


@pytest.mark.parametrize("name", ["yahoo-complaint", "outlook-complaint"])
def test_a_feedback_report_is_a_complaint_by_the_original_recipient(name: str) -> None:
    verdict = classify(sample(name, "ann@example.com", SENT_ID), UNSUBSCRIBE)
    assert verdict == Verdict(
        Kind.COMPLAINT, why="abuse", address="ann@example.com", original_message_id="occasion-ref@northwind.example"
    )


def test_mail_to_the_unsubscribe_address_unsubscribes_its_sender() -> None:
    verdict = classify(sample("mailto-unsubscribe", "ann@example.com"), UNSUBSCRIBE)
    assert (verdict.kind, verdict.address) == (Kind.UNSUBSCRIBE, "ann@example.com")


def test_an_out_of_office_reply_and_a_human_reply() -> None:
    assert classify(sample("out-of-office", "hugo@example.com"), UNSUBSCRIBE).kind is Kind.AUTO_REPLY
    assert classify(sample("human-reply", "ida@example.org"), UNSUBSCRIBE).kind is Kind.HUMAN


def test_a_report_without_its_recipient_fields_is_malformed_with_a_reason() -> None:
    verdict = classify(sample("malformed-dsn", "ann@example.com"), UNSUBSCRIBE)
    assert verdict == Verdict(Kind.MALFORMED, why="a delivery-status report naming no recipient")


def _mail(headers: str, body: str = "Hello") -> Verdict:
    return classify(message_from_string(f"{headers}\n\n{body}\n", policy=policy.compat32), UNSUBSCRIBE)


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        ("From: a@example.com\nTo: hello@northwind.example\nSubject: Hi\nAuto-Submitted: auto-replied",
         Kind.AUTO_REPLY),
        ("From: a@example.com\nTo: hello@northwind.example\nSubject: Hi\nAuto-Submitted: no", Kind.HUMAN),
        ("From: a@example.com\nTo: hello@northwind.example\nSubject: Hi\nX-Autoreply: yes", Kind.AUTO_REPLY),
        ("From: a@example.com\nTo: hello@northwind.example\nSubject: Hi\nPrecedence: auto_reply", Kind.AUTO_REPLY),
        ("From: a@example.com\nTo: hello@northwind.example\nSubject: Hi\nPrecedence: bulk", Kind.AUTO_REPLY),
        ("From: a@example.com\nTo: hello@northwind.example\nSubject: Out of Office: back Monday", Kind.AUTO_REPLY),
        ("From: a@example.com\nTo: hello@northwind.example\nSubject: Abwesenheitsnotiz", Kind.AUTO_REPLY),
        # An out-of-office machine answering to the unsubscribe address unsubscribes nobody.
        ("From: a@example.com\nTo: unsubscribe@northwind.example\nSubject: Automatic reply: unsubscribe",
         Kind.AUTO_REPLY),
        ("From: a@example.com\nTo: Unsubscribe@Northwind.example\nSubject: unsubscribe", Kind.UNSUBSCRIBE),
        ("From: a@example.com\nTo: unsubscribe+c42@northwind.example\nSubject: unsubscribe", Kind.UNSUBSCRIBE),
        ("From: a@example.com\nTo: hello@northwind.example\nCc: unsubscribe@northwind.example", Kind.UNSUBSCRIBE),
        ("From: a@example.com\nTo: hello@northwind.example\nSubject: please unsubscribe me", Kind.HUMAN),
        ("To: unsubscribe@northwind.example\nSubject: unsubscribe", Kind.HUMAN),
    ],
)
def test_automatic_replies_unsubscribes_and_the_rest(headers: str, kind: Kind) -> None:
    assert _mail(headers).kind is kind


REPORT = """\
From: MAILER-DAEMON@relay.example.net
To: hello@northwind.example
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.net

{recipients}
--b--
"""


def _dsn(*recipients: str) -> Verdict:
    text = REPORT.format(recipients="\n".join(recipients))
    return classify(message_from_string(text, policy=policy.compat32), UNSUBSCRIBE)


def test_a_dsn_with_one_permanent_and_one_transient_recipient_is_a_bounce_listing_both() -> None:
    verdict = _dsn(
        "Final-Recipient: rfc822; a@example.com\nAction: failed\nStatus: 5.2.1\nDiagnostic-Code: smtp; 550 disabled\n",
        "Final-Recipient: rfc822; b@example.com\nAction: delayed\nStatus: 4.2.2\n",
    )
    assert verdict.kind is Kind.BOUNCE
    assert verdict.failures == (
        Failure("a@example.com", "failed", "5.2.1", "550 disabled"),
        Failure("b@example.com", "delayed", "4.2.2", ""),
    )
    assert [f.permanent for f in verdict.failures] == [True, False]
    assert verdict.original_message_id == ""  # nothing returned: no row can be matched


def test_original_recipient_wins_over_the_final_one() -> None:
    verdict = _dsn(
        "Original-Recipient: rfc822; Ann@Example.com\nFinal-Recipient: rfc822; ann@mailhost.example.com\n"
        "Action: failed\nStatus: 5.1.1\n"
    )
    assert [f.address for f in verdict.failures] == ["Ann@Example.com"]


def test_a_failed_action_with_a_4xx_status_is_not_permanent() -> None:
    verdict = _dsn("Final-Recipient: rfc822; a@example.com\nAction: failed\nStatus: 4.4.7\n")
    assert verdict.kind is Kind.DELAY


def test_a_delivery_report_with_nothing_failed_needs_no_action() -> None:
    verdict = _dsn("Final-Recipient: rfc822; a@example.com\nAction: delivered\nStatus: 2.0.0\n")
    assert verdict.kind is Kind.AUTO_REPLY


@pytest.mark.parametrize(
    ("recipient", "why"),
    [
        ("Final-Recipient: rfc822; a@example.com\nAction: failed\nStatus: bad\n",
         "no valid Status for a@example.com: 'bad'"),
        ("Final-Recipient: rfc822; a@example.com\nAction: failed\n", "no valid Status for a@example.com: ''"),
        ("Final-Recipient: rfc822; nobody\nAction: failed\nStatus: 5.1.1\n",
         "not an address in Final-Recipient: 'nobody'"),
    ],
)
def test_a_malformed_recipient_block_is_reported_with_its_reason(recipient: str, why: str) -> None:
    assert _dsn(recipient) == Verdict(Kind.MALFORMED, why=why)


def test_a_feedback_report_without_its_fields_is_malformed() -> None:
    text = (
        "From: fbl@example.net\nTo: fbl@northwind.example\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nA complaint.\n--b--\n"
    )
    verdict = classify(message_from_string(text, policy=policy.compat32), UNSUBSCRIBE)
    assert verdict == Verdict(Kind.MALFORMED, why="a feedback report without a message/feedback-report part")


BOUNCES = "bounces@northwind.example"


@pytest.mark.parametrize(
    ("to", "tag"),
    [
        ("bounces+abc234@northwind.example", "abc234"),
        ("Bounces+ABC234@Northwind.Example", "abc234"),  # servers may fold the case: refs are lower-case anyway
        ("bounces@northwind.example", ""),  # the bare address names no message
        ("hello@northwind.example", ""),
    ],
)
def test_a_report_to_the_verp_bounce_address_carries_its_tag(to: str, tag: str) -> None:
    text = sample_text_without_original("ann@example.com").replace("To: hello@northwind.example", f"To: {to}", 1)
    verdict = classify(message_from_string(text, policy=policy.compat32), UNSUBSCRIBE, BOUNCES)
    assert (verdict.kind, verdict.tag, verdict.original_message_id) == (Kind.BOUNCE, tag, "")


def test_without_a_verp_bounce_address_no_tag_is_read() -> None:
    text = sample_text_without_original("ann@example.com").replace("To: hello@", "To: bounces+abc234@", 1)
    assert classify(message_from_string(text, policy=policy.compat32), UNSUBSCRIBE).tag == ""


def sample_text_without_original(recipient: str) -> str:
    return REPORT.format(recipients=f"Final-Recipient: rfc822; {recipient}\nAction: failed\nStatus: 5.1.1\n")


def test_mail_to_the_tagged_unsubscribe_address_carries_the_token_even_without_a_from_address() -> None:
    verdict = _mail("To: unsubscribe+42-abcdef@northwind.example\nSubject: unsubscribe")
    assert (verdict.kind, verdict.tag, verdict.address) == (Kind.UNSUBSCRIBE, "42-abcdef", "")
    tagged = _mail("From: a@example.com\nTo: unsubscribe+42-abcdef@northwind.example")
    assert (tagged.kind, tagged.tag, tagged.address) == (Kind.UNSUBSCRIBE, "42-abcdef", "a@example.com")
