"""DKIM: messages signed on the exact bytes sent verify with dkimpy against the test public key."""

from __future__ import annotations

import base64
import re
from datetime import date
from pathlib import Path

import dkim
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailer.cli import cli
from mailer.compose.dkim import DkimSigner, signer_for
from mailer.compose.message import Envelope, build_message, to_wire
from mailer.compose.render import Rendered
from mailer.config import ConfigError, Settings, load_settings
from mailer.delivery.transport import MaildirTransport, SmtpTransport
from tests.support.smtpserver import SmtpServer

SELECTOR = "mail2026"


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A fresh RSA key as a PEM file, and the DNS TXT record that publishes its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    path = tmp_path_factory.mktemp("dkim") / "dkim.pem"
    path.write_bytes(pem)
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def dns_for(record: bytes, domain: str) -> object:
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == f"{SELECTOR}._domainkey.{domain}.".encode() else None

    return dnsfunc


def with_dkim(project: Path, key: Path) -> Settings:
    text = project.read_text(encoding="utf-8")
    text = text.replace("[sender]\n", f'[sender]\ndkim_selector = "{SELECTOR}"\ndkim_key_file = "{key}"\n', 1)
    project.write_text(text, encoding="utf-8")
    return load_settings(project)


def message(settings: Settings) -> bytes:
    rendered = Rendered(subject="Thank you, Ann", text="Hello Ann\n", html="<p>Hello Ann</p>")
    envelope = Envelope("ann@example.com", "Ann Lee", "owner@example.com", "Owner", "https://example.com/u/1.abc")
    return to_wire(build_message(rendered, envelope, settings.sender))


def test_a_signed_message_verifies_and_covers_the_one_click_headers(project: Path, keypair: tuple[Path, bytes]) -> None:
    settings = with_dkim(project, keypair[0])
    sign = signer_for(settings.sender)
    assert sign is not None
    signed = sign(message(settings))
    assert dkim.verify(signed, dnsfunc=dns_for(keypair[1], settings.sender.domain))
    header = signed.split(b"\r\n\r\n", 1)[0].decode()
    signed_names = re.search(r"h=([^;]+);", re.sub(r"\r\n[ \t]+", " ", header)).group(1)  # type: ignore[union-attr]
    names = [n.strip().lower() for n in signed_names.split(":")]
    assert names.count("list-unsubscribe") == 2 and names.count("list-unsubscribe-post") == 2
    assert names.count("from") == 2


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda m: m.replace(b"Subject: Thank you, Ann", b"Subject: Thank you, Bob"), id="subject-edited"),
        pytest.param(
            lambda m: m.replace(b"https://example.com/u/1.abc", b"https://evil.example/u/1.abc"), id="link-edited"
        ),
        pytest.param(lambda m: m.replace(b"Hello Ann", b"Hello Bob", 1), id="body-edited"),
        pytest.param(lambda m: b"List-Unsubscribe: <https://evil.example/x>\r\n" + m, id="second-list-unsubscribe"),
        pytest.param(lambda m: b"From: Evil <evil@evil.example>\r\n" + m, id="second-from"),
    ],
)
def test_a_changed_or_added_header_breaks_the_signature(
    project: Path, keypair: tuple[Path, bytes], tamper: object
) -> None:
    settings = with_dkim(project, keypair[0])
    sign = signer_for(settings.sender)
    assert sign is not None
    signed = sign(message(settings))
    tampered = tamper(signed)  # type: ignore[operator]
    assert tampered != signed
    assert not dkim.verify(tampered, dnsfunc=dns_for(keypair[1], settings.sender.domain))


def test_a_relay_that_refolds_list_unsubscribe_at_its_space_keeps_the_signature_valid(
    project: Path, keypair: tuple[Path, bytes]
) -> None:
    settings = with_dkim(project, keypair[0])
    sign = signer_for(settings.sender)
    assert sign is not None
    signed = sign(message(settings))
    assert b">, <mailto:" in signed
    refolded = signed.replace(b">, <mailto:", b">,\r\n <mailto:", 1)
    assert dkim.verify(refolded, dnsfunc=dns_for(keypair[1], settings.sender.domain))


def test_the_pass_signs_maildir_files_and_smtp_data(project: Path, keypair: tuple[Path, bytes]) -> None:
    settings = with_dkim(project, keypair[0])
    dnsfunc = dns_for(keypair[1], settings.sender.domain)
    data = project.parent / "data" / "customers.csv"
    assert CliRunner().invoke(cli, ["--config", str(project), "import", "customers", str(data)]).exit_code == 0
    result = CliRunner().invoke(cli, ["--config", str(project), "run", "--date", date(2026, 11, 23).isoformat()])
    assert result.exit_code == 0, result.output
    files = list((settings.transport.path / "new").glob("*.eml"))
    assert files, "the sample day sends something"
    for path in files:
        assert dkim.verify(path.read_bytes(), dnsfunc=dnsfunc), path.name

    sign = signer_for(settings.sender)
    with SmtpServer() as server:
        smtp_settings = settings.transport.__class__(kind="smtp", host=server.host, port=server.port, security="none")
        with SmtpTransport(smtp_settings, sign) as transport:
            msg = build_message(
                Rendered("Hi", "Hello\n", "<p>Hello</p>"),
                Envelope("ann@example.com", "Ann", "", "", "https://example.com/u/1.x"),
                settings.sender,
            )
            assert transport.send(settings.sender.from_address, "ann@example.com", msg).outcome.value == "delivered"
        server.wait_for(1)
        [received] = server.messages
    assert dkim.verify(received.data, dnsfunc=dnsfunc)

    with MaildirTransport(project.parent / "signed", sign) as folder:
        folder.send(settings.sender.from_address, "ann@example.com", msg)
    [written] = (project.parent / "signed" / "new").glob("*.eml")
    assert dkim.verify(written.read_bytes(), dnsfunc=dnsfunc)


def test_an_unreadable_or_bad_key_is_one_clear_error(project: Path, tmp_path: Path) -> None:
    settings = with_dkim(project, tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match=r"\[sender\] dkim_key_file: .*missing.pem: cannot read it"):
        signer_for(settings.sender)
    (tmp_path / "missing.pem").write_text("not a key\n")
    result = CliRunner().invoke(cli, ["--config", str(project), "run", "--date", "2026-11-23"])
    assert result.exit_code == 2
    assert "dkim_key_file" in result.output and "not a PEM RSA private key" in result.output
    with pytest.raises(ValueError):
        DkimSigner(SELECTOR, "example.com", b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")
