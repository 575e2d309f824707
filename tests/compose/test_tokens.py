"""Unsubscribe tokens: bound to one customer and one purpose; undo links expire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailer.compose.returnpath import envelope_sender
from mailer.compose.tokens import (
    RESUBSCRIBE,
    UNSUBSCRIBE,
    BadToken,
    Link,
    check_form_stamp,
    form_stamp,
    mailto_token,
    make_answer_token,
    make_message_token,
    make_token,
    read_answer_token,
    read_link,
    read_mailto_token,
    read_token,
)
from mailer.config import Secret, SenderSettings

SECRET = "s3cret-for-tests"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_a_token_reads_back_to_its_customer() -> None:
    assert read_token(SECRET, make_token(SECRET, 42)) == 42


def test_a_token_is_url_safe_and_fits_in_a_header_line() -> None:
    token = make_token(SECRET, 123456789)
    assert set(token) <= set("0123456789.ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_")
    assert len(token) < 50


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "42",
        "42.",
        ".abc",
        "x.abc",
        "42.abc.def",
        " 42." + "A" * 32,
        "\N{SUPERSCRIPT TWO}." + "A" * 32,
        "\N{FULLWIDTH DIGIT FOUR}2." + "A" * 32,
        "1" * 19 + "." + "A" * 32,
        "0." + "A" * 32,
        "42.\N{SNOWMAN}",
    ],
)
def test_malformed_tokens_raise_bad_token_never_another_error(token: str) -> None:
    with pytest.raises(BadToken):
        read_token(SECRET, token)


def test_a_signature_for_one_customer_does_not_verify_for_another() -> None:
    signature = make_token(SECRET, 42).split(".")[1]
    with pytest.raises(BadToken, match="signature"):
        read_token(SECRET, f"43.{signature}")


def test_a_token_signed_with_another_secret_is_refused() -> None:
    with pytest.raises(BadToken):
        read_token(SECRET, make_token("not the secret", 42))


def test_the_purpose_is_bound_into_the_signature() -> None:
    undo = make_token(SECRET, 42, RESUBSCRIBE, issued=NOW)
    with pytest.raises(BadToken):
        read_token(SECRET, undo, UNSUBSCRIBE)
    with pytest.raises(BadToken):
        read_token(
            SECRET,
            make_token(SECRET, 42, UNSUBSCRIBE),
            RESUBSCRIBE,
            max_age=timedelta(days=30),
            now=NOW,
        )
    assert read_token(SECRET, undo, RESUBSCRIBE, max_age=timedelta(days=30), now=NOW) == 42


def test_an_undo_token_expires_and_its_time_cannot_be_edited() -> None:
    undo = make_token(SECRET, 42, RESUBSCRIBE, issued=NOW - timedelta(days=31))
    with pytest.raises(BadToken, match="expired"):
        read_token(SECRET, undo, RESUBSCRIBE, max_age=timedelta(days=30), now=NOW)
    cid, _issued, signature = undo.split(".")
    fresher = f"{cid}.{int(NOW.timestamp())}.{signature}"
    with pytest.raises(BadToken, match="signature"):
        read_token(SECRET, fresher, RESUBSCRIBE, max_age=timedelta(days=30), now=NOW)


def test_an_undo_token_from_the_future_is_refused() -> None:
    undo = make_token(SECRET, 42, RESUBSCRIBE, issued=NOW + timedelta(days=1))
    with pytest.raises(BadToken, match="expired"):
        read_token(SECRET, undo, RESUBSCRIBE, max_age=timedelta(days=30), now=NOW)


def test_a_mailto_token_reads_back_to_its_customer_in_any_case_and_only_for_that_purpose() -> None:
    token = mailto_token(SECRET, 42)
    assert token == token.lower() and token.startswith("42-")
    assert read_mailto_token(SECRET, token) == read_mailto_token(SECRET, token.upper()) == 42
    with pytest.raises(BadToken):
        read_mailto_token(SECRET, token.replace("42-", "43-"))
    with pytest.raises(BadToken):
        read_mailto_token("another secret", token)
    with pytest.raises(BadToken):
        read_token(SECRET, token)  # not an unsubscribe link's token either


@pytest.mark.parametrize(
    ("bounce", "verp", "message_id", "expected"),
    [
        ("", False, "<ref234@northwind.example>", "hello@northwind.example"),
        ("bounces@northwind.example", False, "<ref234@northwind.example>", "bounces@northwind.example"),
        ("bounces@northwind.example", True, "<ref234@northwind.example>", "bounces+ref234@northwind.example"),
        # Python's make_msgid (test sends): digits and dots are a fine tag.
        ("bounces@northwind.example", True, "<176.12.34@northwind.example>", "bounces+176.12.34@northwind.example"),
        # Nothing that is not a plain tag goes into an address: the bare bounce address.
        ("bounces@northwind.example", True, '<"odd id"@northwind.example>', "bounces@northwind.example"),
        ("bounces@northwind.example", True, "", "bounces@northwind.example"),
    ],
)
def test_the_envelope_sender(bounce: str, verp: bool, message_id: str, expected: str) -> None:
    sender = SenderSettings(
        company="N", from_address="hello@northwind.example", postal_address="x", unsubscribe_url="https://n.example",
        secret=Secret(env="X"), bounce_address=bounce, verp=verp,
    )
    assert envelope_sender(sender, message_id) == expected


def test_a_message_token_names_its_customer_and_send_log_row() -> None:
    token = make_message_token(SECRET, 42, 7001)
    assert read_link(SECRET, token) == Link(42, 7001)
    assert read_link(SECRET, make_token(SECRET, 42)) == Link(42, None)


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: t.replace("42.", "43.", 1),  # another customer
        lambda t: t.replace(".7001.", ".7002."),  # another message
        lambda t: t[:-1],
        lambda t: "x" + t,
    ],
)
def test_an_altered_message_token_is_refused(damage: object) -> None:
    with pytest.raises(BadToken):
        read_link(SECRET, damage(make_message_token(SECRET, 42, 7001)))  # type: ignore[operator]


def test_a_message_token_is_not_an_undo_token_and_an_undo_token_is_not_a_message_token() -> None:
    with pytest.raises(BadToken):
        message_token = make_message_token(SECRET, 42, 1_700_000_000)  # shaped like an undo token's issue time
        read_token(SECRET, message_token, RESUBSCRIBE, max_age=timedelta(days=30), now=NOW)
    with pytest.raises(BadToken):
        read_link(SECRET, make_token(SECRET, 42, RESUBSCRIBE, issued=NOW))


# ---- answer links and the answer page's form stamp ------------------------------------------------

def test_an_answer_token_names_its_row_and_answer_and_nothing_else_verifies() -> None:
    issued = datetime(2026, 11, 23, 10, tzinfo=UTC)
    token = make_answer_token("s3cret", 42, 4, issued)
    later = issued + timedelta(days=10)
    assert read_answer_token("s3cret", token, max_age=timedelta(days=60), now=later) == (42, 4)
    row, answer, moment, signature = token.split(".")
    for spoiled in (
        f"43.{answer}.{moment}.{signature}",  # another row
        f"{row}.1.{moment}.{signature}",  # another answer
        f"{row}.{answer}.{int(moment) + 1}.{signature}",  # a younger issue time
        token[:-1],
        f"{row}.{answer}.{signature}",
        make_answer_token("other", 42, 4, issued),
        make_token("s3cret", 42),  # an unsubscribe token is no answer
    ):
        with pytest.raises(BadToken):
            read_answer_token("s3cret", spoiled, max_age=timedelta(days=60), now=later)
    with pytest.raises(BadToken, match="expired"):
        read_answer_token("s3cret", token, max_age=timedelta(days=60), now=issued + timedelta(days=61))


def test_a_form_stamp_is_bound_to_its_page_and_expires() -> None:
    issued = datetime(2026, 11, 23, 10, tzinfo=UTC)
    stamp = form_stamp("s3cret", "page-token", issued)
    check_form_stamp("s3cret", "page-token", stamp, max_age=timedelta(days=1), now=issued + timedelta(hours=2))
    for token, value, at in (
        ("other-page", stamp, issued),
        ("page-token", stamp[:-1], issued),
        ("page-token", "", issued),
        ("page-token", stamp, issued + timedelta(days=2)),
    ):
        with pytest.raises(BadToken):
            check_form_stamp("s3cret", token, value, max_age=timedelta(days=1), now=at)
