"""[[webhook]] events out: signed, de-duplicable by id, retried from the store's queue until they land."""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import subprocess
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from mailer.config import EventHookSettings, Secret, Settings
from mailer.config.settings import WatchSettings
from mailer.contacts import optout
from mailer.service import events
from mailer.store.tables import Event, EventDelivery, utcnow
from tests.support.crashkit import MAILER
from tests.support.factories import add_customer, queue_anniversaries
from tests.support.outcomes import NOW, pass_with_every_outcome
from tests.support.receiver import Call, Receiver

SECRET = "whsec-test"


def hooked(settings: Settings, url_env: str = "EVENTS_URL", **fields: object) -> Settings:
    hook = EventHookSettings(
        name="crm", url=Secret(env=url_env), secret=Secret(env="EVENTS_SECRET"), **fields  # type: ignore[arg-type]
    )
    return replace(settings, watch=WatchSettings(webhooks=(hook,)))


def verified(call: Call) -> bool:
    parts = dict(item.split("=", 1) for item in call.headers["x-mailer-signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{parts['t']}.".encode() + call.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(parts["v1"], expected)


def test_a_receiver_failing_twice_gets_each_event_once(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENTS_SECRET", SECRET)
    pass_with_every_outcome(engine, settings)  # sent, failed (and deferred, unknown: no events)
    optout.unsubscribe_address(engine, "sent@example.com", optout.Source.PAGE)
    with Session(engine) as session:
        recorded = dict(session.execute(select(Event.uid, Event.kind)).all())
    assert sorted(recorded.values()) == ["failed", "sent", "unsubscribed"]

    with Receiver(fail_first=2) as receiver:
        monkeypatch.setenv("EVENTS_URL", receiver.url)
        watched = hooked(settings)
        moment = NOW + timedelta(minutes=1)  # the pass stood for this instant
        for _ in range(6):  # each round after the retry time of the one before
            events.deliver(engine, watched, now=moment)
            moment += timedelta(hours=1)
    assert len(receiver.refused) == 2
    ids = [call.json()["id"] for call in receiver.calls]
    assert sorted(ids) == sorted(recorded) and len(set(ids)) == len(ids)
    assert all(verified(call) and call.headers["x-mailer-event-id"] == call.json()["id"] for call in receiver.calls)
    sent = next(call.json() for call in receiver.calls if call.json()["type"] == "sent")
    assert sent["data"]["to"] == "sent@example.com" and sent["data"]["campaign"] == "customer-anniversary"
    assert sent["data"]["message_id"].startswith("<")
    with Session(engine) as session:
        assert session.execute(select(EventDelivery.status, func.count()).group_by(EventDelivery.status)).all() == [
            ("delivered", 3)
        ]


def test_a_webhook_takes_only_its_kinds_and_gives_up_after_max_age(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENTS_SECRET", SECRET)
    monkeypatch.setenv("EVENTS_URL", "http://127.0.0.1:9/nobody-listens")
    pass_with_every_outcome(engine, settings)
    watched = hooked(settings, events=("failed",), max_age=timedelta(hours=1))
    events.deliver(engine, watched, now=NOW)
    events.deliver(engine, watched, now=NOW + timedelta(hours=2))
    assert events.backlog(engine) == {"crm": {"failed": 1}}


@pytest.mark.slow
def test_sigkill_between_recording_and_delivering_loses_nothing(
    project: Path, settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue_anniversaries(engine, settings, ["ann@example.com", "bob@example.com"])
    add_customer(engine, "X1", since=date(2020, 1, 1), email="x1@example.com")
    optout.suppress_address(engine, "x1@example.com", "asked by phone")
    with project.open("a", encoding="utf-8") as config:
        config.write('\n[[webhook]]\nname = "crm"\nurl_env = "EVENTS_URL"\nsecret_env = "EVENTS_SECRET"\n')
    with Receiver(stall=True) as stalled:
        env = {**os.environ, "EVENTS_URL": stalled.url, "EVENTS_SECRET": SECRET}
        # `mailer run` records the sent events with the rows; `mailer notify` is killed while POSTing one.
        ran = subprocess.run([str(MAILER), "--config", str(project), "run"], env=env, capture_output=True, check=False)
        assert b"sent 2" in ran.stdout, ran.stderr
        child = subprocess.Popen([str(MAILER), "--config", str(project), "notify"], env=env)
        assert stalled.waiting.wait(60), "mailer notify never reached the receiver"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    with Session(engine) as session:
        recorded = set(session.execute(select(Event.uid)).scalars())
    assert len(recorded) == 3  # two sent, one suppressed
    monkeypatch.setenv("EVENTS_SECRET", SECRET)
    with Receiver() as receiver:
        monkeypatch.setenv("EVENTS_URL", receiver.url)
        events.deliver(engine, hooked(settings), now=utcnow() + timedelta(minutes=5))  # the dead claim has expired
    assert sorted(call.json()["id"] for call in receiver.calls) == sorted(recorded)
    assert all(verified(call) for call in receiver.calls)
