"""The default templates: every one renders for every kind of customer, reads well, and the README matches the code."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest

from mailer.compose.context import (
    VARIABLES,
    occasion_view,
    sample_customers,
    sample_occasion,
    template_context,
    variables_markdown,
)
from mailer.compose.render import FILTERS, Rendered, Renderer
from mailer.service.project import SHIPPED_TEMPLATES
from tests.support.samples import NAMES, SENDER, SHIPPED, kind_of

DAY = date(2026, 11, 23)
UNSUBSCRIBE = "https://northwind.example/mailer/u/1.SIGNATURE"
RENDERER = Renderer(SHIPPED_TEMPLATES)


def render(name: str, customer_id: str) -> Rendered:
    customer = sample_customers()[customer_id]
    campaign = next((c for c in SHIPPED.campaigns if c.template == name), None)
    occasion = sample_occasion(kind_of(name), customer, DAY, campaign)
    return RENDERER.render(name, template_context(customer, occasion, SENDER, UNSUBSCRIBE))


def test_there_is_a_template_for_every_occasion_kind() -> None:
    assert {kind_of(name) for name in NAMES} == {"anniversary", "birthday", "milestone", "silence", "follow_up"}


@pytest.mark.parametrize("name", NAMES)
def test_a_customer_with_every_field_gets_a_personal_email_signed_by_their_account_manager(name: str) -> None:
    email = render(name, "sample-full")
    assert "Amelia" in email.subject
    for part in (email.text, email.html):
        assert "Amelia" in part
        assert "Hannah Lee" in part
        assert "straight to me" in part
    assert email.text.rstrip().endswith(SENDER.postal_address)


@pytest.mark.parametrize("name", NAMES)
def test_a_customer_with_only_an_email_address_gets_fallbacks_never_blanks(name: str) -> None:
    email = render(name, "sample-email-only")
    for part in (email.subject, email.text, email.html):
        assert not re.search(r"\b(Dear|Hi|Hello|Happy [a-z ]+|Thank you|How did we do),\s*[!.?]", part)
        assert ", ," not in part and " ," not in part and "None" not in part
    assert "friend" in email.text
    assert f"Everyone at {SENDER.company}" in email.text
    assert "straight to me" not in email.text  # no person signs, so nobody claims to read it personally


@pytest.mark.parametrize("name", NAMES)
def test_unicode_names_come_through_in_subject_text_and_html(name: str) -> None:
    email = render(name, "sample-unicode")
    assert "Zoë" in email.subject
    assert "Zoë" in email.text and "王芳" in email.text
    assert "Zoë" in email.html and "王芳" in email.html


@pytest.mark.parametrize("name", NAMES)
def test_the_plain_text_part_reads_well_on_its_own(name: str) -> None:
    text = render(name, "sample-full").text
    assert "<" not in text.replace(f"<{UNSUBSCRIBE}>", "")  # no markup
    assert "{{" not in text and "{%" not in text
    assert "\n\n\n" not in text  # no gaps left by {% if %}
    assert all(len(line) < 400 for line in text.splitlines())
    assert UNSUBSCRIBE in text
    assert text.endswith("\n") and not text.startswith("\n")


@pytest.mark.parametrize("name", NAMES)
def test_the_html_is_responsive_dark_mode_aware_and_inlined(name: str) -> None:
    html = render(name, "sample-full").html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert "@media (prefers-color-scheme: dark)" in html
    assert re.search(r"@media only screen and \(max-width: ?600px\)", html)
    assert re.search(r'<h1 style="[^"]*font-size:26px', html)
    assert f'href="{UNSUBSCRIBE}"' in html
    for image in re.findall(r"<img\b[^>]*>", html):
        assert re.search(r'\balt="[^"]+"', image), image


@pytest.mark.parametrize("name", NAMES)
def test_no_template_says_today_because_an_occasion_may_be_sent_days_late(name: str) -> None:
    for part in ("subject.txt", "body.txt", "body.html"):
        words = (SHIPPED_TEMPLATES / name / part).read_text(encoding="utf-8").lower()
        assert not re.search(r"\btoday\b|\btonight\b|\byesterday\b", words), f"{name}/{part}"


def test_names_with_markup_are_escaped_in_html_and_kept_as_written_in_text() -> None:
    customer = sample_customers()["sample-full"]
    customer.first_name = "<b>Bob</b> & Co"
    context = template_context(customer, sample_occasion("birthday", customer, DAY), SENDER, UNSUBSCRIBE)
    email = RENDERER.render("birthday", context)
    assert "&lt;b&gt;Bob&lt;/b&gt; &amp; Co" in email.html and "<b>Bob</b>" not in email.html
    assert "Happy birthday, <b>Bob</b> & Co!" in email.text


def test_occasion_details_stored_as_json_read_back_as_dates_and_amounts() -> None:
    stored = {
        "days_after": 7,
        "interaction": {"id": 5, "kind": "order", "date": "2026-11-16", "reference": "ORD-1", "amount": "42.50"},
    }
    occasion = occasion_view("follow_up", "follow_up:5", "how-did-we-do", DAY, stored)
    assert occasion["interaction"]["date"] == date(2026, 11, 16)
    assert occasion["interaction"]["amount"] == Decimal("42.50")
    customer = sample_customers()["sample-full"]
    email = RENDERER.render("follow_up", template_context(customer, occasion, SENDER, UNSUBSCRIBE))
    assert "On 16 November you placed an order with us (reference ORD-1)." in email.text


def test_the_marketers_readme_lists_exactly_the_documented_variables() -> None:
    readme = (SHIPPED_TEMPLATES / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- variables:start -->\n", 1)[1].split("<!-- variables:end -->", 1)[0]
    assert section == variables_markdown(), "regenerate: mailer templates variables, between the markers"
    for name in VARIABLES:
        assert f"### `{name}`" in section


def test_the_marketers_readme_documents_every_filter_and_every_command_it_needs() -> None:
    readme = (SHIPPED_TEMPLATES / "README.md").read_text(encoding="utf-8")
    for name in FILTERS:
        if name != "d":  # the short alias of default
            assert f"\\| {name}" in readme, name
    for command in ("mailer templates check", "mailer preview --serve", "mailer send-test anniversary --to"):
        assert command in readme
