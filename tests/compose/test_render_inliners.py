"""Both CSS inliners give every shipped template the same computed inline styles."""

from __future__ import annotations

import re
from datetime import date

import pytest

from mailer.compose import inline
from mailer.compose.context import sample_customers, sample_occasion, template_context
from mailer.compose.render import Renderer
from mailer.service.project import SHIPPED_TEMPLATES
from tests.support.htmlstyles import computed_styles, parse_style
from tests.support.samples import NAMES, SENDER, kind_of


def _render_both(name: str, customer_id: str) -> tuple[str, str]:
    customer = sample_customers()[customer_id]
    context = template_context(
        customer, sample_occasion(kind_of(name), customer, date(2026, 11, 23)), SENDER, "https://n.example/u/t"
    )
    premailer = Renderer(SHIPPED_TEMPLATES, "premailer").render(name, context).html
    css_inline = Renderer(SHIPPED_TEMPLATES, "css-inline").render(name, context).html
    return premailer, css_inline


@pytest.mark.parametrize("customer_id", sorted(sample_customers()))
@pytest.mark.parametrize("name", NAMES)
def test_premailer_and_css_inline_compute_the_same_styles_for_every_element(name: str, customer_id: str) -> None:
    premailer, css_inline = _render_both(name, customer_id)
    left, right = computed_styles(premailer), computed_styles(css_inline)
    assert len(left) == len(right)
    for one, other in zip(left, right, strict=True):
        assert one == other
    styled = [element for element in left if element[2]]
    assert len(styled) >= 10  # the stylesheet really was inlined, not dropped by both


@pytest.mark.parametrize("name", NAMES)
def test_both_inliners_keep_the_phone_and_dark_mode_rules_in_a_style_tag(name: str) -> None:
    for html in _render_both(name, "sample-full"):
        styles = " ".join(re.findall(r"<style[^>]*>(.*?)</style>", html, re.S))
        assert "prefers-color-scheme: dark" in styles
        assert re.search(r"max-width:\s*600px", styles)
        assert "{% " not in styles


def test_style_normalisation_treats_short_and_long_colours_and_quotes_alike() -> None:
    assert parse_style("color:#FFF; font-family:'A B',serif") == parse_style(
        'font-family: "A B", serif;color: #ffffff;'
    )
    assert parse_style("color:#fff") != parse_style("color:#000")


@pytest.mark.parametrize("name", NAMES)
def test_premailer_with_each_stylesheet_worked_out_once_gives_stock_premailers_html(name: str) -> None:
    """The per-process stylesheet cache changes premailer's speed, not one byte of its output."""
    import premailer

    raw = Renderer(SHIPPED_TEMPLATES, None)  # Jinja only: the HTML before any inlining
    for customer_id in sorted(sample_customers()):
        customer = sample_customers()[customer_id]
        occasion = sample_occasion(kind_of(name), customer, date(2026, 11, 23))
        html = raw.render(name, template_context(customer, occasion, SENDER, "https://n.example/u/t")).html
        stock = premailer.Premailer(html, **inline._PREMAILER_OPTIONS).transform()
        assert inline._inline_with_premailer(html) == stock
        assert inline._inline_with_premailer(html) == stock  # and again, from the warm cache
