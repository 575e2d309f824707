"""Rendering ahead of sending: worker processes, one claim per SMTP transaction, the same messages."""

from __future__ import annotations

import email.policy
import threading
from dataclasses import replace
from datetime import UTC, date, datetime
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from sqlmodel import Session

from mailer.compose import message
from mailer.compose.maker import MessageMaker
from mailer.compose.message import Envelope, build_message, to_wire
from mailer.compose.pool import Composer
from mailer.compose.render import Rendered, Renderer
from mailer.config import Settings
from mailer.contacts import optout
from mailer.delivery import drain as delivery
from mailer.delivery.feed import POOL_FROM
from mailer.delivery.outcome import Deliverer
from mailer.delivery.transport import MaildirTransport, SmtpTransport
from mailer.outbox import claims, decisions
from mailer.planning import plan as planning
from mailer.planning.clock import PassClock
from mailer.service.passes import run_pass
from mailer.store.tables import Customer, SendLog, as_loaded
from tests.support.factories import add_customer
from tests.support.smtpserver import SmtpServer

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
    count = POOL_FROM + 26  # large enough for the worker processes to start
    add_due(engine, count)
    with SmtpServer() as server:
        mine = smtp_settings(settings, server, processes=2)
        # Every 9th customer reaches their 5th: that campaign's emails carry a gift code through the workers too.
        campaigns = ["customer-anniversary", "fifth-anniversary"]
        report = run_pass(engine, mine, PassClock.on(DAY), SmtpTransport(mine.transport), campaign_names=campaigns)
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
        occasion = str(message["X-Mailer-Occasion"])  # opaque: names the occasion, reveals no row id
        assert row.message_id == f"<{occasion}@northwind.example>" and len(occasion) == 32
        if row.gift is not None:
            assert row.gift["code"] in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert sum(r.gift is not None for r in rows) == sum(1 for n in range(count) if 2016 + n % 9 == 2021)


def test_rendering_in_a_worker_process_or_in_the_sender_gives_the_same_message(
    engine: Engine, settings: Settings
) -> None:
    add_due(engine, 3)
    clock = PassClock.on(DAY)
    with Session(engine, expire_on_commit=False) as session:
        planned = planning.plan(session, settings, clock, settings.campaigns)
        decisions.record(session, planned, {c.name: c for c in settings.campaigns}, clock.now)
        due = claims.due_rows(session, clock.now, (), 10)
    pooled = replace(settings, render=replace(settings.render, processes=1))
    renderer = Renderer(settings.render.templates, settings.render.inliner)
    with Composer(settings, renderer) as inline, Composer(pooled, renderer) as workers:
        workers.use_processes()
        pairs = list(zip(inline.submit(due).result(), workers.submit(due).result(), strict=True))
    assert len(pairs) == 3
    for here, there in pairs:
        assert (here.row_id, here.to_address, here.subject, here.error) == (
            there.row_id,
            there.to_address,
            there.subject,
            there.error,
        )
        assert here.error == "" and _without_ids(here.data) == _without_ids(there.data)


def test_a_row_rebuilt_from_its_columns_reads_and_renders_as_the_validated_model_does(
    engine: Engine, settings: Settings
) -> None:
    """Composer processes rebuild rows with ``as_loaded`` (no validation): nothing a template reads may differ."""
    add_due(engine, 9)
    add_customer(engine, "R-odd", since=date(2021, 11, 23), first_name="Ünal", birthday=date(1980, 2, 29), tags=["vip"])
    clock = PassClock.on(DAY)
    with Session(engine, expire_on_commit=False) as session:
        planned = planning.plan(session, settings, clock, settings.campaigns)
        decisions.record(session, planned, {c.name: c for c in settings.campaigns}, clock.now)
        due = claims.due_rows(session, clock.now, (), 20)
    assert len(due) == 10
    maker = MessageMaker(settings, Renderer(settings.render.templates, settings.render.inliner))
    for row_columns, customer_columns in due:
        for model, columns in ((SendLog, row_columns), (Customer, customer_columns)):
            validated, loaded = model(**columns), as_loaded(model, columns)
            assert {k: getattr(loaded, k) for k in columns} == {k: getattr(validated, k) for k in columns}
        validated_row, validated_customer = SendLog(**row_columns), Customer(**customer_columns)
        loaded_row, loaded_customer = as_loaded(SendLog, row_columns), as_loaded(Customer, customer_columns)
        assert maker.recipient(loaded_row, loaded_customer) == maker.recipient(validated_row, validated_customer)
        one = maker.compose_wire(validated_row, validated_customer)
        other = maker.compose_wire(loaded_row, loaded_customer)
        assert (one.subject, one.locale) == (other.subject, other.locale)
        assert _without_ids(one.data) == _without_ids(other.data)


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


def test_what_changes_between_rendering_and_the_claim_decides_each_row(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    """Rendered ahead, then: one customer unsubscribes, one changes address, one row is taken by another worker."""
    add_due(engine, 4)
    clock = PassClock.on(DAY)
    campaign = settings.campaign("customer-anniversary")
    with Session(engine, expire_on_commit=False) as session:
        planned = planning.plan(session, settings, clock, [campaign])
        decisions.record(session, planned, {campaign.name: campaign}, clock.now)
        rows = claims.due_rows(session, clock.now, (), 10)
    assert len(rows) == 4
    renderer = Renderer(settings.render.templates, settings.render.inliner)
    with Composer(settings, renderer) as composer:
        prepared = composer.submit(rows).result()
    (opted_out, _), (moved, _), (taken, _), (kept, kept_customer) = rows
    optout.unsubscribe(engine, opted_out["customer_id"], optout.Source.PAGE)
    with Session(engine) as session:
        moving = update(Customer).where(Customer.id == moved["customer_id"])  # type: ignore[arg-type]
        session.execute(moving.values(email="new@example.com"))
        taking = update(SendLog).where(SendLog.id == taken["id"])  # type: ignore[arg-type]
        session.execute(taking.values(status="sending", claimed_by=999))
        session.commit()

    outcomes = []
    folder = tmp_path / "out"
    deliverer = Deliverer(settings, MessageMaker(settings, renderer), MaildirTransport(folder))
    with Session(engine, expire_on_commit=False) as session, deliverer.transport:
        turn = delivery.WriteTurn(session, threading.Lock())
        for ready in prepared:
            done = delivery._deliver_prepared(turn, deliverer, ready, 1, 0, clock.now, lambda: clock.now)
            outcomes.append(done.outcome if done else None)
        turn.commit()

    assert outcomes == ["skipped", "sent", None, "sent"]
    by_id = {r.id: r for r in logged(engine)}
    assert by_id[opted_out["id"]].reason == "unsubscribed before delivery"
    assert by_id[moved["id"]].to_address == "new@example.com"  # re-rendered for the new address
    assert by_id[taken["id"]].claimed_by == 999 and by_id[taken["id"]].status == "sending"  # left to its claimer
    kept_row = by_id[kept["id"]]  # the message rendered ahead is the one sent, as its first attempt
    assert (kept_row.message_id, kept_row.attempts) == (prepared[3].message_id, 1)
    assert kept_row.first_attempt_at == clock.now
    written = [BytesParser(policy=email.policy.default).parsebytes(p.read_bytes()) for p in (folder / "new").iterdir()]
    addressed = sorted(str(m["To"].addresses[0].addr_spec) for m in written)
    assert addressed == sorted(["new@example.com", kept_customer["email"]])
