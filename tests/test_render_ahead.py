"""Rendering ahead of sending: worker processes, one claim per SMTP transaction, the same messages."""

from __future__ import annotations

import email.policy
from dataclasses import replace
from datetime import UTC, date, datetime
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer import message, outbox, store
from mailer.compose import Composer
from mailer.config import Settings
from mailer.message import Envelope, build_message, to_wire
from mailer.models import SendLog
from mailer.outbox import PassClock, run_pass
from mailer.render import Rendered, Renderer
from mailer.transport import MaildirTransport, SmtpTransport
from tests.factories import add_customer
from tests.smtpserver import SmtpServer

DAY = date(2026, 11, 23)


def add_due(engine: Engine, count: int) -> None:
    for n in range(count):
        add_customer(
            engine, f"R{n:03d}", since=date(2016 + n % 9, 11, 23), first_name=f"Zoë {n}", timezone="Europe/Berlin"
        )


def smtp_settings(settings: Settings, server: SmtpServer, processes: int) -> Settings:
    transport = replace(settings.transport, kind="smtp", host=server.host, port=server.port, security="none")
    return replace(settings, transport=transport, render=replace(settings.render, processes=processes))


def logged(engine: Engine) -> list[SendLog]:
    with Session(engine) as session:
        return list(session.execute(select(SendLog).order_by(SendLog.id)).scalars())


def test_a_backlog_rendered_in_worker_processes_is_sent_once_per_row_with_what_the_log_records(
    engine: Engine, settings: Settings
) -> None:
    count = outbox.POOL_FROM + 26  # large enough for the worker processes to start
    add_due(engine, count)
    with SmtpServer() as server:
        mine = smtp_settings(settings, server, processes=2)
        report = run_pass(
            engine, mine, PassClock.on(DAY), SmtpTransport(mine.transport), campaign_names=["customer-anniversary"]
        )
        received = [BytesParser(policy=email.policy.default).parsebytes(m.data) for m in server.messages]
    rows = logged(engine)
    assert report.counts["sent"] == count
    assert [r.status for r in rows] == ["sent"] * count and {r.attempts for r in rows} == {1}
    assert sorted(m.rcpt_tos[0] for m in server.messages) == sorted(r.to_address for r in rows)
    by_id = {str(m["Message-ID"]): m for m in received}
    assert set(by_id) == {r.message_id for r in rows}
    for row in rows:
        message = by_id[row.message_id]
        assert (str(message["Subject"]), str(message["To"].addresses[0].addr_spec)) == (row.subject, row.to_address)
        assert str(message["X-Mailer-Occasion"]) == str(row.id)


def test_rendering_in_a_worker_process_or_in_the_sender_gives_the_same_message(
    engine: Engine, settings: Settings
) -> None:
    add_due(engine, 3)
    clock = PassClock.on(DAY)
    with Session(engine, expire_on_commit=False) as session:
        planned = outbox.plan(session, settings, clock, settings.campaigns)
        outbox.record(session, planned, {c.name: c for c in settings.campaigns}, clock.now)
        due = store.due_rows(session, clock.now, (), 10)
    pooled = replace(settings, render=replace(settings.render, processes=1))
    renderer = Renderer(settings.render.templates, settings.render.inliner)
    with Composer(settings, renderer) as inline, Composer(pooled, renderer) as workers:
        workers.use_processes()
        pairs = [(inline.submit(row, c).result(), workers.submit(row, c).result()) for row, c in due]
    assert len(pairs) == 3
    for here, there in pairs:
        assert (here.row_id, here.to_address, here.subject, here.error) == (
            there.row_id,
            there.to_address,
            there.subject,
            there.error,
        )
        assert here.error == "" and _without_ids(here.data) == _without_ids(there.data)


def _without_ids(data: bytes) -> bytes:
    drop = (b"Date:", b"Message-ID:", b"Content-Type: multipart", b"--=")
    return b"\n".join(line for line in data.replace(b"\r\n", b"\n").split(b"\n") if not line.startswith(drop))


def test_a_message_written_from_its_wire_form_is_the_file_send_writes(settings: Settings, tmp_path: Path) -> None:
    rendered = Rendered("Fünf Jahre, Zoë", "Liebe Zoë,\n\ndanke. " * 40, "<p>" + "Danke, Zoë! " * 200 + "</p>")
    envelope = Envelope("zoe@example.com", "Zoë Ünal", "hannah@example.com", "Hannah Lee", "https://x.example/u/t", "7")
    msg = build_message(rendered, envelope, settings.sender)
    with MaildirTransport(tmp_path / "a") as a, MaildirTransport(tmp_path / "b") as b:
        a.send("from@example.com", "zoe@example.com", msg)
        b.send_wire("from@example.com", "zoe@example.com", to_wire(msg))
    [first] = (tmp_path / "a" / "new").iterdir()
    [second] = (tmp_path / "b" / "new").iterdir()
    assert first.read_bytes() == second.read_bytes()


def test_the_cached_header_registry_builds_exactly_the_message_the_stock_one_does(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = Rendered("Ein Jahr =?utf-8?q?x?= mit dir, Zoë " * 3, "Text\n", "<p>HTML</p>")
    envelope = Envelope(
        "o'neil@example.com", 'Zoë "Z" O\'Neil, Jr.', "r@example.com", "Ræ", "https://x.example/u/t", "1"
    )
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    cached = to_wire(build_message(rendered, envelope, settings.sender, now=now))
    monkeypatch.setattr(message, "FILE_POLICY", email.policy.default.clone(max_line_length=998))
    monkeypatch.setattr(message, "WIRE_POLICY", email.policy.SMTP.clone(max_line_length=998))
    monkeypatch.setattr(message, "_READER", email.policy.default)
    stock = to_wire(build_message(rendered, envelope, settings.sender, now=now))
    assert _without_ids(cached) == _without_ids(stock)
    assert b"From:" in cached and b"To:" in cached and b"Subject:" in cached
