"""A real pass over a scripted aiosmtpd server that leaves one row in each of sent, deferred, failed and unknown."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine

from mailer.config import Settings
from mailer.planning.clock import PassClock
from mailer.service import runs
from tests.support.factories import add_customer, deliver_to, queue_anniversaries
from tests.support.smtpserver import SmtpServer

DAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SCRIPT = {"failed@example.com": ["451 4.3.0 busy"], "unknown@example.com": ["lost-reply"]}


def pass_with_every_outcome(engine: Engine, settings: Settings) -> runs.Run:
    """Queue three anniversaries and one that the frequency cap defers, then run one pass.

    sent@ is delivered, failed@ gets a 4xx with no retry time left, unknown@ loses the reply
    after the final dot, late@ was emailed yesterday.
    """
    add_customer(engine, "LATE", since=date(2020, 11, 23), email="late@example.com",
                 last_emailed_at=NOW - timedelta(days=1))
    queue_anniversaries(engine, settings, ["sent@example.com", "failed@example.com", "unknown@example.com"])
    with SmtpServer(script=SCRIPT) as server:
        relay = deliver_to(settings, server, retry_max_age=timedelta(0))
        return runs.scheduled_pass(engine, relay, PassClock.on(DAY, NOW))
