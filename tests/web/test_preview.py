"""`mailer preview` (command and page) and `mailer send-test`, on a real project, store and SMTP server."""

from __future__ import annotations

import email.policy
import time
from dataclasses import replace
from datetime import date
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer.cli import cli
from mailer.compose.tokens import BadToken, read_link
from mailer.config import Settings
from mailer.delivery.transport import MaildirTransport, SmtpTransport
from mailer.planning.clock import PassClock
from mailer.service import passes
from mailer.store.tables import Interaction, SendLog, utcnow
from mailer.web.preview import choose_test_customer, create_app, send_test
from tests.support.factories import add_customer
from tests.support.smtpserver import SmtpServer

DAY = date(2026, 11, 23)


def invoke(project: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--config", str(project), *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def client(settings: Settings) -> FlaskClient:
    app = create_app(settings)
    app.config["TESTING"] = True
    return app.test_client()


def test_preview_prints_subject_and_text_for_a_sample_customer_and_writes_the_html(
    project: Path, tmp_path: Path
) -> None:
    out = tmp_path / "anniversary.html"
    code, stdout, _ = invoke(
        project, "preview", "anniversary", "--customer", "sample-unicode", "--date", "2026-02-28", "--out", str(out)
    )
    assert code == 0
    assert stdout.startswith(
        "Subject: 7 years together, Zoë: thank you\n"
        "(anniversary email for sample-unicode, in en: the default templates)\n"
    )
    assert "Happy 7th anniversary, Zoë." in stdout
    assert "On 28 February 2019 you became a customer of Northwind Coffee Roasters." in stdout
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "Zoë" in html and 'style="' in html


def test_preview_renders_a_real_customer_from_the_store_with_their_latest_interaction(
    project: Path, engine: Engine, tmp_path: Path
) -> None:
    customer_id = add_customer(
        engine,
        "C-77",
        since=date(2020, 5, 1),
        first_name="Ólafur",
        owner_name="Hannah Lee",
        owner_email="hannah@northwind.example",
    )
    with Session(engine) as session:
        session.add(
            Interaction(
                customer_id=customer_id,
                kind="order",
                occurred_at=utcnow().replace(2026, 11, 16),
                reference="ORD-9001",
            )
        )
        session.commit()
    out = tmp_path / "m.eml"
    code, stdout, _ = invoke(
        project, "preview", "follow_up", "--customer", "C-77", "--date", "2026-11-23", "--out", str(out)
    )
    assert code == 0, stdout
    assert "Subject: How was your order ORD-9001, Ólafur?" in stdout
    assert "On 16 November you placed an order with us (reference ORD-9001)." in stdout
    message = BytesParser(policy=email.policy.default).parsebytes(out.read_bytes())
    assert isinstance(message, EmailMessage)
    assert message["To"].addresses[0].addr_spec == "c-77@example.com"
    assert {p.get_content_type() for p in message.iter_parts()} == {"text/plain", "text/html"}


def test_preview_of_an_unknown_customer_or_template_is_one_clear_line(project: Path) -> None:
    code, _, stderr = invoke(project, "preview", "anniversary", "--customer", "NOPE")
    assert code == 2
    assert (
        stderr.strip() == "error: no customer with external_id 'NOPE' in the store "
        "(samples: sample-full, sample-email-only, sample-unicode, sample-de)"
    )
    code, _, stderr = invoke(project, "preview", "aniversary")
    assert code == 2
    assert "aniversary: no such template" in stderr and len(stderr.strip().splitlines()) == 1


def test_the_page_lists_templates_and_shows_subject_html_and_text_side_by_side(client: FlaskClient) -> None:
    page = client.get("/t/birthday?customer=sample-full&date=2026-07-02").get_data(as_text=True)
    for name in ("anniversary", "birthday", "follow_up", "milestone", "silence", "staff_anniversary"):
        assert f'href="/t/{name}?' in page
    assert 'id="subject"><span>Subject:</span> Happy birthday, Amelia! A note from Northwind Coffee Roasters' in page
    assert '<iframe id="html" title="HTML part" sandbox="allow-popups" srcdoc="&lt;!DOCTYPE html&gt;' in page
    assert '<pre id="text">Happy birthday, Amelia!' in page
    assert 'id="problems"' not in page
    assert client.get("/").status_code == 200
    assert client.get("/t/nope").status_code == 404
    alone = client.get("/t/birthday/email.html?customer=sample-unicode")
    assert alone.status_code == 200 and alone.mimetype == "text/html" and "Zoë" in alone.get_data(as_text=True)


def test_the_page_shows_a_template_error_in_place_and_reloads_when_a_file_changes(
    client: FlaskClient, settings: Settings
) -> None:
    stamp = client.get("/stamp").get_json()["stamp"]
    body = settings.render.templates / "silence" / "body.txt"
    time.sleep(0.01)
    body.write_text(
        body.read_text(encoding="utf-8").replace("{{ occasion.days_silent }}", "{{ occasion.days_slient }}"),
        encoding="utf-8",
    )
    assert client.get("/stamp").get_json()["stamp"] != stamp
    page = client.get("/t/silence").get_data(as_text=True)
    assert 'id="problems"' in page
    assert (
        "silence/body.txt:3: unknown variable &#39;occasion.days_slient&#39; "
        "(did you mean &#39;occasion.days_silent&#39;?)" in page
    )
    assert "has no attribute &#39;days_slient&#39;" in page  # the render error itself, with its line


def test_send_test_goes_through_smtp_marked_test_and_never_counts_as_the_occasion(
    project: Path, settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer_id = add_customer(
        engine,
        "C-1",
        since=date(2020, 11, 23),
        first_name="Zoë",
        owner_name="王芳",
        owner_email="wang.fang@northwind.example",
    )
    with SmtpServer(tls="starttls") as server:
        smtp = replace(
            settings,
            transport=replace(
                settings.transport,
                kind="smtp",
                host=server.host,
                port=server.port,
                timeout=5.0,
                ca_file=Path(server.ca_path),
            ),
        )
        customer = choose_test_customer(engine, None, "marketer@northwind.example")
        row = send_test(
            smtp, engine, SmtpTransport(smtp.transport), "anniversary", "marketer@northwind.example", customer, DAY
        )
        server.wait_for(1)
        [received] = server.messages
    assert list(received.rcpt_tos) == ["marketer@northwind.example"]
    message = received.parsed()
    assert message["Subject"] == "[TEST] 6 years together, Zoë: thank you"
    assert "王芳" in (message.get_body(("plain",)) or message).get_content()
    token = message["List-Unsubscribe"].split("/u/", 1)[1].split(">", 1)[0]
    with pytest.raises(BadToken):  # clicking unsubscribe in a test message unsubscribes nobody
        read_link(settings.sender.secret.reveal(), token)
    with Session(engine) as session:
        [logged] = session.execute(select(SendLog)).scalars().all()
    assert (logged.id, logged.is_test, logged.status, logged.customer_id) == (row.id, True, "sent", customer_id)
    assert logged.occasion_key.startswith("test:") and len(logged.occasion_key) == len("test:") + 36
    assert logged.subject == "[TEST] 6 years together, Zoë: thank you"
    assert logged.to_address == "marketer@northwind.example"
    # The real occasion is still due: the pass sends the customer their own anniversary email.
    report = passes.run_pass(
        engine,
        settings,
        PassClock.on(DAY),
        MaildirTransport(settings.transport.path),
        campaign_names=["customer-anniversary"],
    )
    assert report.counts["sent"] == 1
    with Session(engine) as session:
        real = session.execute(select(SendLog).where(SendLog.is_test.is_(False))).scalars().one()  # type: ignore[attr-defined]
    assert (real.occasion_key, real.to_address, real.subject) == (
        "anniversary:2026",
        "c-1@example.com",
        "6 years together, Zoë: thank you",
    )


def test_send_test_on_the_command_line_writes_to_the_maildir_and_the_log(
    project: Path, settings: Settings, engine: Engine
) -> None:
    add_customer(engine, "C-2", since=date(2020, 1, 5), email="tester@northwind.example")
    code, stdout, _ = invoke(project, "send-test", "birthday", "--to", "tester@northwind.example")
    assert code == 0, stdout
    assert stdout.startswith(
        "sent: '[TEST] Happy birthday! A note from Northwind Coffee Roasters' "
        "to tester@northwind.example (rendered for C-2;"
    )
    [eml] = (settings.transport.path / "new").glob("*.eml")
    assert b"Subject: [TEST] Happy birthday!" in eml.read_bytes()
    code, stdout, _ = invoke(project, "log", "--format", "csv")
    assert "test:" in stdout and "test send: delivered" in stdout


def test_send_test_refuses_a_bad_address_and_an_empty_store_in_one_line(project: Path) -> None:
    code, _, stderr = invoke(project, "send-test", "birthday", "--to", "not an address")
    assert code == 2 and stderr.startswith("error: --to: not a valid address")
    code, _, stderr = invoke(project, "send-test", "birthday", "--to", "me@northwind.example")
    assert code == 2
    assert stderr.strip().startswith("error: the store has no customers yet")


def test_serve_with_preview_mounts_the_preview_beside_the_unsubscribe_endpoint(
    settings: Settings, engine: Engine
) -> None:
    from mailer.cli.serve import mount_preview
    from mailer.web.unsubscribe import create_app as create_unsubscribe_app

    combined = create_unsubscribe_app(settings, engine)
    mount_preview(combined, settings)
    client = combined.test_client()
    page = client.get("/preview/")
    assert page.status_code == 200
    assert 'href="/preview/' in page.get_data(as_text=True)  # links stay under the mount point
    assert client.get("/healthz").status_code == 200
    plain = create_unsubscribe_app(settings, engine).test_client()
    assert plain.get("/preview/").status_code == 404  # off unless asked for
