"""The fast serializer writes exactly the bytes the email package writes, for any input.

``mailer.compose.wire.serialize`` is what every render-ahead message goes out as;
``build_message`` + ``to_wire`` is the reference. With the same Date,
Message-ID and boundary the two must give the same bytes, or both refuse the
input with HeaderError: on every shipped template for sample customers, and
on generated headers and bodies full of what makes mail hard (accents,
emoji, encoded-word markers, quotes, line breaks, trailing blanks, ``=``, long
lines).
"""

from __future__ import annotations

import email.policy
from datetime import UTC, date, datetime
from email.parser import BytesParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from mailer import store
from mailer.compose import message
from mailer.compose.message import Envelope, HeaderError, build_message, to_wire
from mailer.compose.render import Rendered, Renderer
from mailer.compose.wire import quoted_printable, serialize
from mailer.config import Settings, load_settings
from mailer.contacts import importer
from mailer.service.project import init_project
from mailer.store.tables import Customer
from mailer.web.preview import render_preview

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
MESSAGE_ID = "<176390000000.4242.1234567890@northwind.example>"
BOUNDARY = "===============0123456789012345678=="


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(init_project(tmp_path_factory.mktemp("wire") / "proj", date(2026, 11, 23), customers=40))


def reference(rendered: Rendered, envelope: Envelope, project: Settings) -> bytes:
    msg = build_message(rendered, envelope, project.sender, now=NOW, message_id=MESSAGE_ID)
    msg.set_boundary(BOUNDARY)
    return to_wire(msg)


def fast(rendered: Rendered, envelope: Envelope, project: Settings) -> bytes:
    return serialize(rendered, envelope, project.sender, now=NOW, message_id=MESSAGE_ID, boundary=BOUNDARY).data


def assert_same(rendered: Rendered, envelope: Envelope, project: Settings) -> bytes:
    try:
        expected = reference(rendered, envelope, project)
    except HeaderError:
        with pytest.raises(HeaderError):
            fast(rendered, envelope, project)
        return b""
    assert fast(rendered, envelope, project) == expected
    return expected


def test_every_shipped_template_for_every_sample_customer_is_byte_identical(project: Settings) -> None:
    renderer = Renderer(project.render.templates, project.render.inliner)
    engine = store.make_engine(project.store.url)
    store.create_schema(engine)
    importer.import_customers(engine, project.path.parent / "data" / "customers.csv")
    with Session(engine) as session:
        customers = session.exec(select(Customer)).all()
    assert len(customers) == 40 and len(renderer.names()) == 7  # six for customers, the owner's notice
    checked = 0
    for name in renderer.names():
        for customer in customers:
            preview = render_preview(project, renderer, name, customer, date(2026, 11, 23), engine, "https://x.example/u/1.t")
            assert preview.rendered is not None, preview.problems
            envelope = Envelope(
                customer.email,
                f"{customer.first_name} {customer.last_name or ''}".strip(),
                customer.owner_email or "",
                customer.owner_name or "",
                "https://x.example/u/1.t",
                str(customer.id),
            )
            wire = assert_same(preview.rendered, envelope, project)
            assert all(len(line) <= 998 for line in wire.split(b"\r\n"))
            checked += 1
    engine.dispose()
    assert checked == 280


# Text that makes headers and quoted-printable hard, mixed with plain words.
_TRICKY = st.sampled_from(
    [" ", "  ", "\t", "\r\n", "\n", "\r", "=", "=?", "?=", "=?utf-8?q?Hi=0AThere?=", '"', "\\", "(", ")", ",", ".",
     ":", ";", "<", ">", "@", "[", "]", "é", "Zoë", "—", "🎉", "\u2028", "\x00", "\x85", "\x0b", "'", "-", "_"]
)
_WORDS = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12)
_PIECE = st.one_of(_WORDS, _TRICKY, st.text(max_size=4))
_TEXT = st.lists(_PIECE, max_size=30).map("".join)
_LONG_LINE = st.integers(60, 1100).map(lambda n: ("abc def=" * 200)[:n])
_BODY = st.lists(st.one_of(_PIECE, _LONG_LINE, st.just("\n")), max_size=40).map("".join)
_LOCAL = st.sampled_from(["ann", "o'neil", "first.last", "a+tag", "x_y", "Ann.Lee", "a..b", "\"quoted\"", "sp ace"])
_DOMAIN = st.sampled_from(["example.com", "mail.example.org", "xn--bcher-kva.example", "ex-ample.co.uk"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    subject=_TEXT,
    to_name=_TEXT,
    reply_name=_TEXT,
    local=_LOCAL,
    domain=_DOMAIN,
    text=_BODY,
    html=_BODY,
    reference_=_TEXT,
    reply=st.booleans(),
)
@example(subject="x" * 990, to_name="y" * 119, reply_name="", local="ann", domain="example.com", text="", html="",
         reference_="", reply=False)
@example(subject="Fünf Jahre", to_name="Dr. J. Smith, Jr.", reply_name="Ræ", local="ann", domain="example.com",
         text="a \nb\t\n" + "=" * 200, html="<p style=\"x\">" + "é" * 300, reference_="7", reply=True)
def test_generated_headers_and_bodies_are_byte_identical(
    project: Settings,
    subject: str,
    to_name: str,
    reply_name: str,
    local: str,
    domain: str,
    text: str,
    html: str,
    reference_: str,
    reply: bool,
) -> None:
    envelope = Envelope(
        f"{local}@{domain}",
        to_name,
        "owner@example.com" if reply else "",
        reply_name,
        "https://x.example/u/1.t",
        reference_,
    )
    assert_same(Rendered(subject, text, html), envelope, project)


@given(text=_BODY)
@settings(max_examples=300, deadline=None)
def test_quoted_printable_lines_stay_within_76_characters_and_decode_to_the_text(text: str) -> None:
    encoded = quoted_printable(text)
    assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
    head = b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
    part = BytesParser(policy=email.policy.default).parsebytes(head + encoded)
    lines = text.encode("utf-8").splitlines()
    assert part.get_payload(decode=True) == b"\r\n".join(lines or [b""]) + b"\r\n"  # the wire's line ends


def test_a_message_from_the_serializer_reads_back_as_what_was_rendered(project: Settings, tmp_path: Path) -> None:
    rendered = Rendered("Fünf Jahre, Zoë 🎉", "Liebe Zoë,\n\ndanke.\n", "<p style=\"color: #333\">Danke, Zoë!</p>\n")
    envelope = Envelope("zoe@example.com", "Zoë Ünal", "hannah@example.com", "Hannah Lee", "https://x.example/u/t", "7")
    wire = serialize(rendered, envelope, project.sender, now=NOW)
    msg = BytesParser(policy=email.policy.default).parsebytes(wire.data)
    assert str(msg["Subject"]) == wire.subject == "Fünf Jahre, Zoë 🎉"
    assert str(msg["Message-ID"]) == wire.message_id and wire.message_id.endswith(f"@{project.sender.domain}>")
    assert msg["To"].addresses[0].display_name == "Zoë Ünal"
    # (the parser keeps the wire's CRLF line ends in a part's content)
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == rendered.text  # type: ignore[union-attr]
    assert msg.get_body(("html",)).get_content().replace("\r\n", "\n") == rendered.html  # type: ignore[union-attr]
    assert msg.get_content_type() == "multipart/alternative" and not msg.defects


@given(text=st.one_of(_TEXT, st.text()))
@settings(max_examples=500, deadline=None)
def test_header_safe_skips_decoding_only_where_decoding_would_change_nothing(text: str) -> None:
    """``header_safe`` returns a value without ``=?`` as it is: decoding it gives the same text back."""
    clean = " ".join(message._UNSAFE.sub(" ", text).split())
    assume("=?" not in clean)
    assert str(message._READER.header_factory("subject", clean)) == clean == message.header_safe(text)
