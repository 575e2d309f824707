"""Templates in the customer's language: the de-AT → de → default chain, and dates and money the way they write them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from mailer.compose.context import sample_customers, sample_occasion, template_context
from mailer.compose.formats import formatting_locale
from mailer.compose.render import Renderer
from mailer.config.locales import LocaleProblem, fallback_chain, normalize_locale
from mailer.service.project import SHIPPED_TEMPLATES
from tests.support.samples import NAMES, SENDER, SHIPPED, kind_of

DAY = date(2026, 11, 23)
UNSUBSCRIBE = "https://northwind.example/mailer/u/1.SIGNATURE"


@pytest.mark.parametrize(
    ("tag", "normal"), [("de", "de"), ("de-AT", "de-AT"), ("de_at", "de-AT"), ("pt-BR", "pt-BR"), ("EN", "en")]
)
def test_locales_are_written_in_their_bcp_47_form(tag: str, normal: str) -> None:
    assert normalize_locale(tag) == normal


@pytest.mark.parametrize("tag", ["xx", "klingon", "de-", "12", "de AT"])
def test_a_locale_babel_does_not_know_is_refused(tag: str) -> None:
    with pytest.raises(LocaleProblem):
        normalize_locale(tag)


def test_the_fallback_chain_goes_from_the_region_to_the_language() -> None:
    assert fallback_chain("de-AT") == ("de-AT", "de")
    assert fallback_chain("zh-Hans-CN") == ("zh-Hans-CN", "zh-Hans", "zh")
    assert fallback_chain("de") == ("de",)
    assert fallback_chain("") == ()


def _folder(tmp_path: Path, files: dict[str, str]) -> Renderer:
    for name, text in files.items():
        path = tmp_path / "note" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return Renderer(tmp_path, None)


DEFAULT = {"subject.txt": "Hello", "body.html": "<p>Hello {{ d | date }}</p>", "body.txt": "Hello {{ d | date }}"}
GERMAN = {
    "subject.de.txt": "Hallo",
    "body.de.html": "<p>Hallo {{ d | date }}</p>",
    "body.de.txt": "Hallo {{ d | date }}",
}


def test_an_austrian_customer_falls_back_to_german_then_to_the_default(tmp_path: Path) -> None:
    renderer = _folder(tmp_path, {**DEFAULT, **GERMAN})
    austrian = renderer.render("note", {"d": date(2027, 1, 5)}, "de-AT")
    assert (austrian.subject, austrian.locale) == ("Hallo", "de")
    assert austrian.text == "Hallo 5. Jänner 2027\n"  # German text, Austrian month name
    german = renderer.render("note", {"d": date(2027, 1, 5)}, "de")
    assert german.text == "Hallo 5. Januar 2027\n"
    french = renderer.render("note", {"d": date(2027, 1, 5)}, "fr")
    assert (french.subject, french.locale, french.text) == ("Hello", "", "Hello 5 January 2027\n")


def test_a_variant_without_its_own_html_is_not_used_so_one_email_never_mixes_two_languages(tmp_path: Path) -> None:
    renderer = _folder(tmp_path, {**DEFAULT, "subject.de.txt": "Hallo"})
    rendered = renderer.render("note", {"d": date(2027, 1, 5)}, "de")
    assert (rendered.subject, rendered.locale) == ("Hello", "")


def test_a_region_variant_wins_over_the_language(tmp_path: Path) -> None:
    swiss = {"subject.de-CH.txt": "Grüezi", "body.de-CH.html": "<p>Grüezi</p>"}
    renderer = _folder(tmp_path, {**DEFAULT, **GERMAN, **swiss})
    assert renderer.variant("note", "de-CH") == "de-CH"
    assert renderer.variant("note", "de-AT") == "de"
    rendered = renderer.render("note", {"d": date(2027, 1, 5)}, "de-CH")
    assert (rendered.subject, rendered.text) == ("Grüezi", "Grüezi\n")  # the text part derived from its HTML


def test_dates_money_numbers_and_ordinals_follow_the_formatting_locale(tmp_path: Path) -> None:
    body = (
        '{{ d | date("long") }}|{{ d | date("short") }}|{{ a | money("EUR") }}|{{ a | money("USD") }}|'
        "{{ a | number }}|{{ 3 | ordinal }}|{{ a | money }}"
    )
    files = {"subject.txt": "x", "body.html": "x", "body.txt": body}
    files |= {"subject.de.txt": "x", "body.de.html": "x", "body.de.txt": body}
    renderer = _folder(tmp_path, files)
    values = {"d": date(2027, 1, 5), "a": Decimal("1234.5")}
    assert renderer.render("note", values, "de").text.strip() == (
        "5. Januar 2027|05.01.27|1.234,50\xa0€|1.234,50\xa0$|1.234,5|3.|1.234,50"
    )
    assert renderer.render("note", values, "en").text.strip() == (
        "January 5, 2027|1/5/27|€1,234.50|$1,234.50|1,234.5|3rd|1,234.50"
    )


def test_the_customers_region_formats_only_text_in_their_own_language() -> None:
    assert formatting_locale("de-AT", "de", "en") == "de-AT"
    assert formatting_locale("de-AT", "", "en") == "en"  # English default text keeps English dates
    assert formatting_locale("en-GB", "", "en") == "en-GB"
    assert formatting_locale("", "", "de") == "de"


@pytest.mark.parametrize("name", NAMES)
def test_every_shipped_template_has_a_german_variant_that_reads_german(name: str) -> None:
    renderer = Renderer(SHIPPED_TEMPLATES)
    customer = sample_customers()["sample-de"]
    campaign = next((c for c in SHIPPED.campaigns if c.template == name), None)
    occasion = sample_occasion(kind_of(name), customer, DAY, campaign)
    email = renderer.render(name, template_context(customer, occasion, SENDER, UNSUBSCRIBE), "de-AT")
    assert email.locale == "de"
    assert "Jürgen" in email.subject
    for part in (email.text, email.html):
        assert "Jürgen" in part and "Hannah Lee" in part
        assert "abbestellen" in part and "Unsubscribe" not in part
        assert SENDER.postal_address in part
    assert UNSUBSCRIBE in email.text and f'href="{UNSUBSCRIBE}"' in email.html
    assert '<html lang="de">' in email.html
