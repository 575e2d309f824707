"""[alerts]: one alert when `mailer status` starts needing a human, one "resolved" when it stops, none per pass."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from mailer.config import Secret, Settings
from mailer.config.settings import AlertSettings, WatchSettings
from mailer.planning.clock import PassClock
from mailer.service import alerts, runs
from mailer.store.tables import utcnow
from tests.support.factories import deliver_to, queue_anniversaries
from tests.support.receiver import Receiver
from tests.support.smtpserver import SmtpServer


def alerting(settings: Settings, **fields: object) -> Settings:
    return replace(settings, watch=WatchSettings(alerts=AlertSettings(**fields)))  # type: ignore[arg-type]


def test_a_broken_relay_gives_one_alert_and_one_resolution_across_passes(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each pass that finds the relay down tries one row (which then waits for its retry): four rows, four passes.
    queue_anniversaries(engine, settings, [f"{name}@example.com" for name in ("ann", "bob", "cy", "di")])
    with Receiver() as receiver:
        monkeypatch.setenv("ALERT_HOOK", receiver.url)
        watched = alerting(settings, webhook_url=Secret(env="ALERT_HOOK"))
        with SmtpServer() as gone:
            closed = deliver_to(watched, gone)  # the server stops at the end of the block: nothing listens
        for _ in range(3):
            run = runs.scheduled_pass(engine, closed, PassClock.at())
            assert run.report.relay_down
            alerts.check(engine, watched)
        assert len(receiver.calls) == 1
        text = receiver.calls[0].json()["text"]
        assert "needs attention" in text and "relay unusable" in text and "status`" in text

        with SmtpServer() as relay:
            run = runs.scheduled_pass(engine, deliver_to(watched, relay), PassClock.at())
            assert run.report.counts["sent"] == 1
        for _ in range(3):
            alerts.check(engine, watched)
        assert len(receiver.calls) == 2
        assert "fine again" in receiver.calls[1].json()["text"]


def test_a_receiver_that_fails_is_tried_again_at_the_next_check(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Receiver(fail_first=1) as receiver:
        monkeypatch.setenv("ALERT_HOOK", receiver.url)
        watched = alerting(settings, webhook_url=Secret(env="ALERT_HOOK"))
        assert alerts.check(engine, watched) is None  # no pass has run yet: the alert is refused once ...
        state = alerts.state(engine)
        assert state is not None and state.firing and not state.notified and "503" in state.last_error
        notice = alerts.check(engine, watched)  # ... and sent at the next check
        assert notice is not None and notice.firing
        assert alerts.check(engine, watched) is None
    assert len(receiver.calls) == 1 and "no pass has run yet" in receiver.calls[0].json()["text"]


def test_a_condition_that_ends_before_it_was_told_is_never_told(settings: Settings, engine: Engine) -> None:
    told: list[alerts.Notice] = []
    watched = alerting(settings, email=("ops@example.com",))

    def refuse(notice: alerts.Notice) -> None:
        raise alerts.PostFailed("receiver down")

    alerts.check(engine, watched, tell=refuse)  # no pass yet: firing, not told
    runs.scheduled_pass(engine, watched, PassClock.at())  # maildir: a pass, nothing due
    alerts.check(engine, watched, tell=told.append)
    alerts.check(engine, watched, now=utcnow() + timedelta(minutes=5), tell=told.append)
    assert told == []


def test_an_alert_email_goes_through_the_transport(settings: Settings, engine: Engine) -> None:
    watched = alerting(settings, email=("ops@example.com",))
    notice = alerts.check(engine, watched)
    assert notice is not None and notice.firing
    outbox = Path(settings.transport.path)
    files = list((outbox if outbox.is_absolute() else settings.base_dir / outbox).glob("new/*"))
    assert len(files) == 1
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert msg["To"] == "ops@example.com" and msg["Auto-Submitted"] == "auto-generated"
    assert msg["Subject"].startswith("[mailer ") and "needs attention: no pass has run yet" in msg["Subject"]
