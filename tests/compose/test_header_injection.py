"""Names and subjects never add a header: the known CPython email header-injection cases, checked on the bytes.

Each hostile value goes into the subject, the recipient's display name and the
Reply-To display name; the produced wire bytes are parsed back and the header
set must be exactly what the builder set, with the intended addresses.
"""

from __future__ import annotations

import email.policy
from datetime import date
from email.parser import BytesParser

import pytest

from mailer.compose.message import Envelope, HeaderError, address, build_message, to_wire
from mailer.compose.render import Rendered
from mailer.compose.wire import serialize
from mailer.config import Settings, load_settings
from mailer.service.project import init_project

EXPECTED = {
    "from",
    "to",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "auto-submitted",
    "x-mailer-occasion",
    "mime-version",
    "content-type",
}

HOSTILE = [
    pytest.param("Ann\r\nBcc: evil@attacker.example", id="crlf"),
    pytest.param("Ann\nBcc: evil@attacker.example", id="lf"),
    pytest.param("Ann\rBcc: evil@attacker.example", id="cr"),
    pytest.param("Ann\x00Bcc: evil@attacker.example", id="nul"),
    pytest.param("Ann\u2028Bcc: evil@attacker.example", id="unicode-line-separator"),
    pytest.param("Ann\u2029Bcc: evil@attacker.example", id="unicode-paragraph-separator"),
    pytest.param("Ann\x85Bcc: evil@attacker.example", id="next-line-c1"),
    pytest.param("Ann\x0bBcc: evil@attacker.example\x0c\x1c\x1d\x1e", id="vt-ff-and-separators"),
    pytest.param("Ann\r\n\r\nbody injected", id="blank-line-ends-headers"),
    # gh-121650 / CVE-2024-6923: an encoded word that decodes to a line break was written out raw.
    pytest.param("Ann=?UTF-8?Q?=0A?=Bcc: evil@attacker.example", id="gh-121650-q-encoded-lf"),
    pytest.param("=?utf-8?q?Ann=0D=0ABcc:_evil@attacker.example?=", id="q-encoded-crlf"),
    pytest.param("=?utf-8?b?QW5uDQpCY2M6IGV2aWxAYXR0YWNrZXIuZXhhbXBsZQ==?=", id="b-encoded-crlf"),
    pytest.param("=?utf-8?q?=E2=80=A8Bcc:_evil@attacker.example?=", id="encoded-unicode-line-separator"),
    pytest.param("=?utf-8?q?Ann=00Bcc:_evil@attacker.example?=", id="encoded-nul"),
    pytest.param("=?utf-8?q?=3D=3Futf-8=3Fq=3F=3D0A=3F=3DBcc:_evil@attacker.example?=", id="encoded-twice"),
    # bpo-39073: CR/LF inside Address parts; gh-80222: a long quoted display name folded without its quotes.
    pytest.param("Doe, Jane <evil@attacker.example>", id="comma-and-angle-brackets"),
    pytest.param('"Evil, evil@attacker.example" ' + "x" * 1200, id="gh-80222-long-quoted-name"),
    pytest.param('Dr. Smith: Chief; =?utf-8?q?Hi?= (comment) \\ "q"', id="specials"),
]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(init_project(tmp_path_factory.mktemp("hdr") / "proj", date(2026, 11, 23), customers=3))


def parse(wire: bytes) -> email.message.EmailMessage:
    return BytesParser(policy=email.policy.default).parsebytes(wire)  # type: ignore[return-value]


def build(settings: Settings, hostile: str, builder: str = "email") -> bytes:
    rendered = Rendered(subject=f"Thank you, {hostile}", text="Hello\n", html="<p>Hello</p>")
    envelope = Envelope(
        to_address="ann@example.com",
        to_name=hostile,
        reply_to="owner@example.com",
        reply_to_name=hostile,
        unsubscribe_url="https://example.com/u/1.abc",
        reference=hostile,
    )
    if builder == "wire":  # the fast serializer every render-ahead message goes out with
        return serialize(rendered, envelope, settings.sender).data
    return to_wire(build_message(rendered, envelope, settings.sender))


def header_lines(wire: bytes) -> list[bytes]:
    head = wire.split(b"\r\n\r\n", 1)[0]
    return [line for line in head.split(b"\r\n") if line[:1] not in (b" ", b"\t")]


@pytest.mark.parametrize("builder", ["email", "wire"])
@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_hostile_name_or_subject_never_produces_an_extra_header(
    settings: Settings, hostile: str, builder: str
) -> None:
    wire = build(settings, hostile, builder)
    msg = parse(wire)
    assert {k.lower() for k in msg} == EXPECTED
    assert len(msg.keys()) == len(EXPECTED), "no header may appear twice"
    assert [a.addr_spec for a in msg["To"].addresses] == ["ann@example.com"]
    assert [a.addr_spec for a in msg["Reply-To"].addresses] == ["owner@example.com"]
    for name, value in msg.items():
        assert not any(ch in str(value) for ch in "\r\n\x00\u2028\u2029\x85"), name
    assert b"\x00" not in wire
    assert {line.split(b":", 1)[0].lower().decode() for line in header_lines(wire)} == EXPECTED
    assert all(len(line) <= 998 for line in wire.split(b"\r\n"))
    assert msg.get_body(("plain",)).get_content().strip() == "Hello"  # type: ignore[union-attr]


def test_a_clean_name_is_kept_as_written(settings: Settings) -> None:
    msg = parse(build(settings, "José Ærø-O'Brien"))
    assert msg["To"].addresses[0].display_name == "José Ærø-O'Brien"
    assert str(msg["Subject"]) == "Thank you, José Ærø-O'Brien"


def test_an_address_with_a_line_break_or_encoded_word_is_refused() -> None:
    for bad in ("ann@example.com\r\nBcc: x@y", "ann\n@example.com", "=?utf-8?q?a?=@example.com", "no-at-sign"):
        with pytest.raises(HeaderError):
            address("Ann", bad)
