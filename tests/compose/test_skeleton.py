"""CSS inlined once per skeleton gives, byte for byte, the HTML of inlining every message on its own.

The reference is today's path: the template rendered by Jinja, then the
inliner run on that message (``mailer.compose.inline.INLINERS``). It is checked
for every shipped template in both languages, for the customers ``mailer init``
writes, for values made to break escaping, for every character in every kind of
place a value can sit, and for templates where a skeleton must not be used.
"""

from __future__ import annotations

import dataclasses
import functools
import textwrap
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from mailer import store
from mailer.compose import answers, skeleton
from mailer.compose.context import sample_customers, sample_gift, sample_occasion, template_context
from mailer.compose.inline import INLINERS
from mailer.compose.render import Renderer
from mailer.compose.tokens import make_message_token
from mailer.config import Settings, load_settings
from mailer.contacts import importer
from mailer.outbox.feedback import NOTICE_TEMPLATE
from mailer.service.project import init_project
from mailer.store.tables import Customer
from tests.support.samples import kind_of

DAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
BOTH = sorted(INLINERS)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, list[Customer]]:
    """The `mailer init` project with 48 sample customers, imported (ids for the signed links)."""
    settings = load_settings(init_project(tmp_path_factory.mktemp("skeleton") / "proj", DAY, customers=48))
    engine = store.make_engine(settings.store.url)
    store.create_schema(engine)
    importer.import_customers(engine, settings.path.parent / "data" / "customers.csv")
    with Session(engine, expire_on_commit=False) as session:
        customers = list(session.exec(select(Customer).order_by(Customer.id)).all())  # type: ignore[arg-type]
    engine.dispose()
    return settings, customers


def context_for(settings: Settings, name: str, customer: Customer, row_id: int) -> dict[str, Any]:
    """What the message maker gives ``name`` for ``customer``: links signed for the row, its own gift code."""
    sender = settings.sender
    secret = sender.secret.reveal()
    campaign = next((c for c in settings.campaigns if c.template == name), None)
    kind = "feedback_notice" if name == NOTICE_TEMPLATE else kind_of(name)
    occasion = sample_occasion(kind, customer, DAY, campaign)
    unsubscribe_url = f"{sender.unsubscribe_url}/u/{make_message_token(secret, customer.id or 0, row_id)}"
    ask = None
    if campaign is not None and campaign.ask:
        links = answers.answer_links(secret, sender.unsubscribe_url, campaign, row_id, NOW)
        ask = answers.ask_view(campaign, links)
    gift = None
    if campaign is not None and campaign.gift is not None:
        gift = {**sample_gift(DAY, campaign.gift.label), "code": f"THX-{customer.id:04d}-{row_id * 7919 % 10000:04d}"}
    return template_context(customer, occasion, sender, unsubscribe_url, ask, gift=gift)


def variants(renderer: Renderer, name: str) -> list[str]:
    folder = renderer.templates_dir / name
    return [v for v in ("", "de") if (folder / (f"body.{v}.html" if v else "body.html")).exists()]


@functools.cache
def jinja_only(templates: Path) -> Renderer:
    return Renderer(templates, None)


def assert_as_inlined_one_by_one(cached: Renderer, name: str, context: dict[str, Any], variant: str) -> None:
    """The cached path gives what Jinja's HTML inlined on its own gives (and the same subject and text)."""
    plain = jinja_only(cached.templates_dir)
    assert cached.skeletons is not None
    expected = plain.render(name, context, variant=variant)
    got = cached.render(name, context, variant=variant)
    assert got.html == cached.skeletons.inline(expected.html)
    assert (got.subject, got.text, got.locale) == (expected.subject, expected.text, expected.locale)


@pytest.mark.parametrize("inliner", BOTH)
def test_every_shipped_template_in_both_languages_for_every_sample_customer_is_byte_identical(
    demo: tuple[Settings, list[Customer]], inliner: str
) -> None:
    settings, customers = demo
    assert len(customers) == 48
    cached = Renderer(settings.render.templates, inliner)
    assert cached.skeletons is not None
    checked = 0
    for name in cached.names():
        for variant in variants(cached, name):
            for row_id, customer in enumerate(customers, start=1):
                assert_as_inlined_one_by_one(cached, name, context_for(settings, name, customer, row_id), variant)
                checked += 1
    assert len(cached.names()) == 7 and checked == 48 * 13  # six emails in two languages, the owner's notice in one
    # The cache really answered: everything but each skeleton's first two sightings and odd values.
    assert cached.skeletons.hits >= 0.75 * checked, (cached.skeletons.hits, checked)


def hostile_values() -> list[str]:
    return [
        "Bob & <Co> \"quoted\" 'single'",
        "&amp; &lt;b&gt; &#39; &nbsp;",
        "\u00a0no-break\u00a0",
        "Zoë Ólafsdóttir 王芳",
        "😀🎉 emoji 👩‍👩‍👧",
        "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \u202eRTL\u202c",
        "very long " * 600,
        f"{skeleton.PREFIX}0x",  # this process's own token spelling
        f"{skeleton.PREFIX}99999x {skeleton.PREFIX}",
        "q0123456789abcdef0t1x",  # another process's
        "https://evil.example/?a=1&b=<2>&c=\"3\"&d='4'#x y",
        "javascript:alert('x')",
        "<!--comment--> and -->",
        "<b>bold</b><script>alert(1)</script>",
        "{{ customer.email }} {% if x %}",
        "100% %20 %C3%A9",
        "",
        " ",
        " \t\n",
        "  leading and trailing  ",
        "line\nbreak\ttab",
        "windows\r\nline",  # CR: parsers rewrite it, so that message is inlined on its own
        "nul\x00and\x0cform feed",
        "\x7f\x80\x9f C1",
        "\ufeffbom",
        'only"double',
        "only'single",
    ]


def hostile(settings: Settings, customer: Customer, value: str, other: str) -> tuple[Settings, Customer]:
    """Every text the templates show, and the links, made of ``value`` (and ``other``)."""
    customer = customer.model_copy()
    customer.first_name, customer.last_name, customer.owner_name = value, other, value
    customer.attributes = {"favourite_roast": other}
    sender = dataclasses.replace(
        settings.sender,
        company=value or "Northwind",  # the subject must not render empty
        postal_address=other,
        unsubscribe_url=f"{value}/mailer" if len(value) % 2 else f"https://northwind.example/{value}",
    )
    return dataclasses.replace(settings, sender=sender), customer


@pytest.mark.parametrize("inliner", BOTH)
def test_values_made_to_break_escaping_come_out_as_inlining_each_message_gives(
    demo: tuple[Settings, list[Customer]], inliner: str
) -> None:
    settings = demo[0]
    cached = Renderer(settings.render.templates, inliner)
    assert cached.skeletons is not None
    full = sample_customers()["sample-full"]
    full.id = 4242
    values = hostile_values()
    for name in cached.names():
        for variant in variants(cached, name):
            for row_id in (1, 2):  # two plain sightings make the skeleton
                assert_as_inlined_one_by_one(cached, name, context_for(settings, name, full, row_id), variant)
            for n, value in enumerate(values):
                mixed_settings, customer = hostile(settings, full, value, values[(n + 7) % len(values)])
                context = context_for(mixed_settings, name, customer, 100 + n)
                if name == "follow_up":
                    for answer in context["ask"]["answers"]:
                        answer["url"], answer["words"] = f"{answer['url']}&v={value}", value
                assert_as_inlined_one_by_one(cached, name, context, variant)
    assert cached.skeletons.hits > 0.5 * cached.skeletons.messages


# Every kind of place a value goes, around literal text that a serialiser escapes too.
PLACES = textwrap.dedent(
    """\
    <!DOCTYPE html>
    <html lang="en">
    <head><meta charset="utf-8"><title>{{ v[0] }} · A&amp;B</title>
    <style>p { color: #333 } .c td { padding: 2px } a[target] { color: red }</style></head>
    <body>
    <table class="c"><tr><td>{{ v[1] }}</td><td>Cost &amp; «{{ v[2] }}» &nbsp;</td></tr></table>
    <p>{{ v[3] }}{{ v[4] }}<b>{{ v[5] }}</b> and <a href="{{ v[6] }}" title="{{ v[7] }}">{{ v[8] }}</a></p>
    <p><a href="https://x.example/a b/{{ v[9] }}?q={{ v[10] }}&amp;r=é" name="{{ v[11] }}">x</a>
    <img src="{{ v[12] }}" alt="Photo of {{ v[13] }}" data-who="{{ v[14] }}"></p>
    <form action="{{ v[15] }}"><input type="hidden" name="x" value="{{ v[16] }}"></form>
    <h1>&lt;{{ v[17] }}&gt;</h1><li>{{ v[18] }}</li><span>{{ v[19] }}</span>
    <p>Unsubscribe: <a href="{{ v[20] }}">here</a> · 1 High St</p>
    </body>
    </html>
    """
)
SLOTS = 21


@pytest.fixture
def places(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    (folder / "probe").mkdir(parents=True)
    (folder / "probe" / "subject.txt").write_text("Probe\n", encoding="utf-8")
    (folder / "probe" / "body.txt").write_text("Probe\n", encoding="utf-8")
    (folder / "probe" / "body.html").write_text(PLACES, encoding="utf-8")
    return folder


def characters() -> Iterator[str]:
    """Every code point of the first plane and every 61st beyond it (no lone surrogates: not text)."""
    for point in (*range(1, 0x10000), *range(0x10000, 0x110000, 61)):
        if not 0xD800 <= point <= 0xDFFF:
            yield chr(point)


@pytest.mark.parametrize("inliner", BOTH)
def test_every_character_in_every_place_comes_out_as_inlining_each_message_gives(places: Path, inliner: str) -> None:
    cached = Renderer(places, inliner)
    assert cached.skeletons is not None
    plain = ["plain"] * SLOTS
    for _ in range(2):
        assert_as_inlined_one_by_one(cached, "probe", {"v": plain}, "")
    every = "".join(characters())
    chunk = 1500
    chunks = [every[i : i + chunk] for i in range(0, len(every), chunk)]
    fillable = 0
    for n, text in enumerate(chunks):
        # Each place gets the chunk turned by a different amount: every character meets different neighbours.
        values = [f"{text[(n + slot) % len(text) :]}{text[: (n + slot) % len(text)]}" for slot in range(SLOTS)]
        hits = cached.skeletons.hits
        assert_as_inlined_one_by_one(cached, "probe", {"v": values}, "")
        fillable += cached.skeletons.hits - hits
    # Chunks without a control character, CR or noncharacter went through the cache.
    clean = sum(1 for text in chunks if not skeleton._UNFILLABLE.search(text))
    assert fillable == clean and clean >= 0.9 * len(chunks) - 3


def make_template(folder: Path, body: str, *, text: bool = True) -> None:
    (folder / "t").mkdir(parents=True, exist_ok=True)
    (folder / "t" / "subject.txt").write_text("Hello\n", encoding="utf-8")
    if text:
        (folder / "t" / "body.txt").write_text("Hello\n", encoding="utf-8")
    page = (
        "<!DOCTYPE html><html><head><style>.gold { color: #c90 } .plain { color: #333 } #vip { font-weight: bold }"
        " p { margin: 0 }</style></head><body>" + body + "</body></html>"
    )
    (folder / "t" / "body.html").write_text(page, encoding="utf-8")


TIERS = [("gold", "Ann"), ("plain", "Bob"), ("gold", "Cy"), ("plain", "Di"), ("gold", "Ed")]


@pytest.mark.parametrize(
    "body",
    [
        '<p class="{{ tier }}">Hello {{ name }}</p>',  # the CSS depends on the customer
        '<p style="color: {{ tier }}">Hello {{ name }}</p>',
        '<p id="{{ tier }}">Hello {{ name }}</p><p id="vip">x</p>',
        '<p class="x {{ tier }}-tier">Hello {{ name }}</p>',
        "<h{{ name | length }}>Hello {{ name }}</h{{ name | length }}>",  # in a tag name (through Jinja's int)
        "<style>.x { color: {{ tier }} }</style><p class=x>Hello {{ name }}</p>",  # inside a stylesheet
        "<p>Hello {{ name }}</p><!-- {{ tier }} -->",  # in a comment
        # a selector reads the attribute
        '<p data-tier="{{ tier }}">Hello {{ name }}</p><style>[data-tier] { color: red }</style>',
        "<table><tr>{{ name }}<td>x</td></tr></table>",  # moved out of the table by the parser
        "<script>var t = '{{ tier }}';</script><p>Hello {{ name }}</p>",
        "<p>Hello {{ name }}</p><style>p:empty { display: none }</style>",
    ],
)
@pytest.mark.parametrize("inliner", BOTH)
def test_a_value_where_the_css_or_the_parser_could_depend_on_it_is_inlined_per_message(
    tmp_path: Path, inliner: str, body: str
) -> None:
    make_template(tmp_path, body)
    cached = Renderer(tmp_path, inliner)
    assert cached.skeletons is not None
    for tier, name in TIERS * 2:
        assert_as_inlined_one_by_one(cached, "t", {"tier": tier, "name": name}, "")
    assert cached.skeletons.hits == 0


@pytest.mark.parametrize("inliner", BOTH)
def test_a_per_customer_class_is_styled_per_customer_while_the_same_template_without_it_is_reused(
    tmp_path: Path, inliner: str
) -> None:
    make_template(tmp_path, '<p class="{{ tier }}">Hello {{ name }}</p>')
    cached = Renderer(tmp_path, inliner)
    htmls = [cached.render("t", {"tier": tier, "name": name}).html for tier, name in TIERS * 2]
    assert "#c90" in htmls[0].replace("#cc9900", "#c90") and "#333" in htmls[1].replace("#333333", "#333")
    assert cached.skeletons is not None and cached.skeletons.hits == 0
    make_template(tmp_path / "same", '<p class="gold">Hello {{ name }}</p>')
    reused = Renderer(tmp_path / "same", inliner)
    for tier, name in TIERS * 2:
        assert_as_inlined_one_by_one(reused, "t", {"tier": tier, "name": name}, "")
    assert reused.skeletons is not None and reused.skeletons.hits == len(TIERS) * 2 - 2


@pytest.mark.parametrize(
    "body",
    [
        "{% macro hi(n) %}<b>{{ n }}</b>{% endmacro %}"
        "<p>{% if hi(name) | length > 12 %}long{% endif %} {{ hi(name) }}</p>",
        "{% set who %}{{ name }}{% endset %}<p>{{ who | length }} {{ who }}</p>",
        "{% filter upper %}<p>Hello {{ name }}</p>{% endfilter %}",
        "{% set s = self %}<p>{{ name }}</p>",
    ],
)
@pytest.mark.parametrize("inliner", BOTH)
def test_a_template_that_can_look_at_its_own_output_is_rendered_and_inlined_as_before(
    tmp_path: Path, inliner: str, body: str
) -> None:
    make_template(tmp_path, body)
    cached = Renderer(tmp_path, inliner)
    assert not cached.as_skeleton("t/body.html")
    for tier, name in TIERS * 2:
        assert_as_inlined_one_by_one(cached, "t", {"tier": tier, "name": name}, "")
    assert cached.skeletons is not None and cached.skeletons.messages == 0


def test_the_shipped_templates_are_rendered_as_skeletons(demo: tuple[Settings, list[Customer]]) -> None:
    renderer = Renderer(demo[0].render.templates, "css-inline")
    for name in renderer.names():
        for variant in variants(renderer, name):
            assert renderer.as_skeleton(f"{name}/body.{variant}.html" if variant else f"{name}/body.html")


@pytest.mark.parametrize("inliner", BOTH)
def test_an_empty_value_alone_in_its_element_is_inlined_per_message_and_the_rest_reuse_the_skeleton(
    tmp_path: Path, inliner: str
) -> None:
    make_template(tmp_path, "<p>{{ name }}</p><p>\n  {{ tier }}\n</p><p><b>x</b>{{ name }}<i>y</i></p>")
    cached = Renderer(tmp_path, inliner)
    assert cached.skeletons is not None
    for tier, name in [("a", "Ann"), ("b", "Bob"), ("c", ""), ("d", " "), ("", "Ed"), ("f", "Flo")]:
        assert_as_inlined_one_by_one(cached, "t", {"tier": tier, "name": name}, "")
    assert cached.skeletons.hits == 1  # Flo; the blank ones went on their own


@pytest.mark.parametrize("inliner", BOTH)
def test_blanks_that_lead_a_link_are_trimmed_as_the_inliner_trims_them(tmp_path: Path, inliner: str) -> None:
    make_template(
        tmp_path,
        '<p><a href="{{ a }}">x</a> <a href="{{ a }}{{ b }} /path?q={{ b }}">y</a> <a href=" {{ b }}">z</a>'
        '<img src="{{ b }}{{ a }}" alt="{{ a }}"></p>',
    )
    cached = Renderer(tmp_path, inliner)
    pairs = [("x", "y"), ("x", "y"), (" x", "y"), ("\t\n x", " y"), ("", " y"), ("", ""), (" ", "\n"), ("", "y")]
    for a, b in pairs:
        assert_as_inlined_one_by_one(cached, "t", {"a": a, "b": b}, "")
    assert cached.skeletons is not None and cached.skeletons.hits >= 4


def test_the_serialisers_described_in_inline_match_the_installed_inliners() -> None:
    for inliner in BOTH:
        skeleton.serialiser_matches.cache_clear()
        assert skeleton.serialiser_matches(inliner)


def test_markup_values_stay_in_the_skeleton_as_written(tmp_path: Path) -> None:
    from markupsafe import Markup

    make_template(tmp_path, "<p>{{ note }} {{ name }}</p>")
    cached = Renderer(tmp_path, "css-inline")
    for n, name in enumerate(["Ann", "Bob", "Cy", "Di"]):
        assert_as_inlined_one_by_one(cached, "t", {"note": Markup(f"<b>{n % 2}</b>"), "name": name}, "")
    assert cached.skeletons is not None and cached.skeletons.hits == 0  # two skeletons, each seen twice
    assert_as_inlined_one_by_one(cached, "t", {"note": Markup("<b>1</b>"), "name": "Ed"}, "")
    assert cached.skeletons.hits == 1


@pytest.mark.parametrize("inliner", BOTH)
def test_a_text_part_made_from_the_html_is_made_from_the_html_jinja_renders(tmp_path: Path, inliner: str) -> None:
    make_template(tmp_path, '<p>Hello {{ name }}, <a href="{{ link }}">here</a></p>', text=False)
    cached = Renderer(tmp_path, inliner)
    for name in ["Ann & Bob", "<Cy>", 'Di "D"', "Ed\u00a0E", "Flo 😀"]:
        assert_as_inlined_one_by_one(cached, "t", {"name": name, "link": f"https://x.example/?n={name}"}, "")
    assert cached.skeletons is not None and cached.skeletons.hits == 3
