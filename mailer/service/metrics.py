"""Prometheus metrics, read from the store at every scrape.

Every number comes from the database, not from counters in this process, so several
workers sharing one PostgreSQL (or a web process beside the daemon) all report the same
truth, and a restart resets nothing. The values are the ones ``mailer status`` reports:
both read :func:`mailer.service.monitor.gather`. The names are documented in cron/README.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import Engine, func, select
from sqlmodel import Session, col

from mailer.config import Settings
from mailer.errors import MailerError
from mailer.service import monitor
from mailer.service.schedule import next_pass
from mailer.store import migrate
from mailer.store.tables import (
    Customer,
    Event,
    EventDelivery,
    PassRun,
    SendLog,
    TransientFailure,
    WebhookReceipt,
)

RUN_KINDS = ("pass", "retry")
RUN_STATUSES = ("running", "done", "stopped", "failed")


def suppression_kind(reason: str | None) -> str:
    """The family of a suppression reason, a small fixed set fit for a label (the reason itself is free text)."""
    text = (reason or "").lower()
    if "complaint" in text:
        return "complaint"
    if "transient" in text:  # mailer.contacts.softbounces: several 4.x.x failures
        return "soft_bounce"
    if "bounce" in text:
        return "bounce"
    return "other"


class StoreCollector(Collector):
    """Yields mailer's metrics from the store; ``now`` is injectable for tests."""

    def __init__(self, engine: Engine, settings: Settings, now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.engine = engine
        self.settings = settings
        self.now = now

    def collect(self) -> Iterator[GaugeMetricFamily | InfoMetricFamily]:
        now = self.now()
        with Session(self.engine) as session:
            facts = monitor.gather(session, now, lambda after: next_pass(self.settings, after))
            yield from _health(facts)
            yield from _send_log(session)
            yield from _runs(session)
            yield from _opt_outs(session)
            yield from _returns(session)
            yield from _events(session)
            revision = migrate.current(session.connection()) or ""
        yield InfoMetricFamily("mailer_store_schema", "The store's schema revision.", value={"revision": revision})


def _health(facts: monitor.Facts) -> Iterator[GaugeMetricFamily]:
    problems = GaugeMetricFamily(
        "mailer_problems", "Problems that need a human (what `mailer status` lists; it exits 1 when > 0)."
    )
    problems.add_metric([], len(facts.problems))
    yield problems
    queue = GaugeMetricFamily(
        "mailer_queue_rows", "Send-log rows by status, test sends included (`mailer status` queue).", labels=["status"]
    )
    for status in sorted(set(monitor.STATS_COLUMNS) | set(facts.queue)):
        queue.add_metric([status], facts.queue.get(status, 0))
    yield queue
    age = GaugeMetricFamily(
        "mailer_oldest_retry_age_seconds", "Age of the oldest queued row that has been tried before (0: none)."
    )
    age.add_metric([], monitor.oldest_retry_age(facts))
    yield age
    overdue = GaugeMetricFamily(
        "mailer_overdue_queued_rows", "Queued rows overdue by more than an hour (the retry sweep is not running)."
    )
    overdue.add_metric([], facts.overdue_queued)
    yield overdue
    down = GaugeMetricFamily("mailer_relay_down", "1 while the latest runs could not use the relay.")
    down.add_metric([], 1 if facts.relay_down is not None else 0)
    yield down
    upcoming = GaugeMetricFamily("mailer_next_pass_timestamp_seconds", "When the schedule starts the next pass.")
    upcoming.add_metric([], facts.next_pass.timestamp())
    yield upcoming


def _send_log(session: Session) -> Iterator[GaugeMetricFamily]:
    family = GaugeMetricFamily(
        "mailer_messages", "Send-log rows by campaign and status, test sends left out (`mailer stats`).",
        labels=["campaign", "status"],
    )
    query = (
        select(col(SendLog.campaign), col(SendLog.status), func.count())
        .where(col(SendLog.is_test).is_(False))
        .group_by(col(SendLog.campaign), col(SendLog.status))
    )
    for campaign, status, count in session.execute(query).all():
        family.add_metric([campaign, status], count)
    yield family


def _runs(session: Session) -> Iterator[GaugeMetricFamily]:
    started = GaugeMetricFamily(
        "mailer_last_run_start_timestamp_seconds", "When the latest pass or retry sweep started.", labels=["kind"]
    )
    took = GaugeMetricFamily(
        "mailer_last_run_duration_seconds", "How long the latest finished pass or sweep took.", labels=["kind"]
    )
    status = GaugeMetricFamily(
        "mailer_last_run_status", "1 for the status of the latest pass or sweep.", labels=["kind", "status"]
    )
    outcome = GaugeMetricFamily(
        "mailer_last_run_messages", "What the latest finished pass or sweep did, by outcome.",
        labels=["kind", "outcome"],
    )
    for kind in RUN_KINDS:
        latest = _latest(session, kind, finished=False)
        if latest is None:
            continue
        started.add_metric([kind], latest.started_at.timestamp())
        for name in RUN_STATUSES:
            status.add_metric([kind, name], 1 if latest.status == name else 0)
        finished = _latest(session, kind, finished=True)
        if finished is not None and finished.finished_at is not None:
            took.add_metric([kind], (finished.finished_at - finished.started_at).total_seconds())
            for name, count in sorted(finished.counts.items()):
                outcome.add_metric([kind, name], count)
    yield from (started, took, status, outcome)


def _latest(session: Session, kind: str, *, finished: bool) -> PassRun | None:
    query = select(PassRun).where(col(PassRun.kind) == kind)
    if finished:
        query = query.where(col(PassRun.finished_at).is_not(None))
    return session.execute(query.order_by(col(PassRun.started_at).desc()).limit(1)).scalar_one_or_none()


def _opt_outs(session: Session) -> Iterator[GaugeMetricFamily]:
    unsubscribed = GaugeMetricFamily(
        "mailer_unsubscribed_customers", "Customers unsubscribed, by where the request came from.", labels=["source"]
    )
    query = (
        select(col(Customer.unsubscribe_source), func.count())
        .where(col(Customer.unsubscribed_at).is_not(None))
        .group_by(col(Customer.unsubscribe_source))
    )
    for source, count in session.execute(query).all():
        unsubscribed.add_metric([source or "unknown"], count)
    yield unsubscribed
    suppressed = GaugeMetricFamily(
        "mailer_suppressed_customers", "Customers suppressed, by kind (bounce, complaint, soft_bounce, other).",
        labels=["kind"],
    )
    kinds: dict[str, int] = {}
    reasons = (
        select(col(Customer.suppressed_reason), func.count())
        .where(col(Customer.suppressed_at).is_not(None))
        .group_by(col(Customer.suppressed_reason))
    )
    for reason, count in session.execute(reasons).all():
        kinds[suppression_kind(reason)] = kinds.get(suppression_kind(reason), 0) + count
    for kind, count in sorted(kinds.items()):
        suppressed.add_metric([kind], count)
    yield suppressed


def _returns(session: Session) -> Iterator[GaugeMetricFamily]:
    transient = GaugeMetricFamily(
        "mailer_transient_failures",
        "Temporary delivery failures noted (soft bounces), kept for [inbox] soft_bounce_days.",
    )
    transient.add_metric([], session.execute(select(func.count()).select_from(TransientFailure)).scalar_one())
    yield transient
    receipts = GaugeMetricFamily(
        "mailer_webhook_receipts", "Provider webhook calls acted on and still remembered against replays.",
        labels=["provider"],
    )
    by_provider = select(col(WebhookReceipt.provider), func.count()).group_by(col(WebhookReceipt.provider))
    for provider, count in session.execute(by_provider).all():
        receipts.add_metric([provider], count)
    yield receipts


def _events(session: Session) -> Iterator[GaugeMetricFamily]:
    events = GaugeMetricFamily("mailer_events", "Events recorded for [[webhook]]s, by kind.", labels=["kind"])
    for kind, count in session.execute(select(col(Event.kind), func.count()).group_by(col(Event.kind))).all():
        events.add_metric([kind], count)
    yield events
    deliveries = GaugeMetricFamily(
        "mailer_event_deliveries", "Event deliveries by webhook and status (pending, sending, delivered, failed).",
        labels=["webhook", "status"],
    )
    query = select(col(EventDelivery.webhook), col(EventDelivery.status), func.count()).group_by(
        col(EventDelivery.webhook), col(EventDelivery.status)
    )
    for webhook, status, count in session.execute(query).all():
        deliveries.add_metric([webhook, status], count)
    yield deliveries


def registry(engine: Engine, settings: Settings) -> CollectorRegistry:
    """A registry holding only mailer's store metrics (no process metrics: they would differ per worker)."""
    found = CollectorRegistry(auto_describe=False)
    found.register(StoreCollector(engine, settings))
    return found


def serve(engine: Engine, settings: Settings, host: str, port: int) -> Callable[[], None]:
    """Serve the metrics on ``host:port`` from a daemon thread (``mailer daemon --metrics-port``); returns a stop.

    Raises MailerError in one line when the port cannot be had.
    """
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry(engine, settings))
    except OSError as exc:
        raise MailerError(f"--metrics-port {port}: cannot listen on {host}: {exc.strerror}") from None

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop
