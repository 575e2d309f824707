"""The drain loop: every due row, one claimed row at a time per connection, until none is left.

Each row is committed as ``sending`` before its SMTP transaction and with its outcome
after it, so a crash leaves at most one row per connection in between.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
from collections.abc import Callable
from datetime import date, datetime
from typing import cast

from sqlalchemy import Engine
from sqlmodel import Session

from mailer.compose.pool import Composer, Prepared
from mailer.compose.render import Renderer
from mailer.compose.returnpath import envelope_sender
from mailer.config import Settings
from mailer.delivery.feed import Feed
from mailer.delivery.outcome import Attempt, Deliverer, Delivery
from mailer.delivery.report import CAPPED, PassReport
from mailer.delivery.throttle import TokenBucket
from mailer.delivery.transport import Transport
from mailer.outbox import claims
from mailer.outbox.lease import lease_for
from mailer.store.tables import utcnow

log = logging.getLogger(__name__)

TransportFactory = Callable[[], Transport]


def drain(
    engine: Engine,
    settings: Settings,
    transports: Transport | TransportFactory,
    *,
    now: Callable[[], datetime] = utcnow,
    should_stop: Callable[[], bool] = lambda: False,
    bucket: TokenBucket | None = None,
    renderer: Renderer | None = None,
    pass_day: date | None = None,
    composer: Composer | None = None,
) -> PassReport:
    """Send every due ``queued`` row, one claimed row at a time per connection, until none is left.

    ``transports`` is a factory called once per connection
    (``[transport] connections`` of them, each in its own thread with its own
    session), or one transport instance, which then is the only connection.
    Each row is committed as ``sending`` before its SMTP transaction and with
    its outcome after it, so a crash leaves at most one row per connection
    in between (see :func:`mailer.outbox.recovery.recover_interrupted`).

    Stops early, leaving the rest ``queued`` and due: when ``should_stop``
    turns true (the message in flight is finished first), when the relay
    cannot take mail (down, TLS or AUTH refused), or when ``daily_cap`` is
    reached (the waiting rows say so in their reason). ``pass_day``: see
    :meth:`PassClock.emailed_at`. ``composer``: one the caller
    started (and closes), its worker processes perhaps already running.
    """
    lease = lease_for(engine)
    lease.renew()
    renderer = renderer or Renderer(settings.render.templates, settings.render.inliner)
    if callable(transports) and not hasattr(transports, "send"):
        factory: TransportFactory = transports
        connections = settings.transport.connections
    else:
        instance = cast(Transport, transports)
        factory, connections = (lambda: instance), 1
    bucket = bucket or TokenBucket(settings.transport.rate_per_second)
    halt = threading.Event()
    writers = threading.Lock() if engine.dialect.name == "sqlite" else None  # see WriteTurn

    def stopping() -> bool:
        return halt.is_set() or should_stop()

    with contextlib.nullcontext(composer) if composer else Composer(settings, renderer) as composer:

        def connection(report: PassReport, feed: Feed) -> None:
            deliverer = Deliverer(settings, composer.maker, factory(), pass_day=pass_day)
            _drain_connection(engine, deliverer, feed, lease.key, bucket, now, stopping, halt, report, writers)

        reports = [PassReport() for _ in range(connections)]
        feed = Feed(engine, composer, now, stopping, connections)
        senders = [functools.partial(connection, report, feed) for report in reports]
        jobs: list[Callable[[], None]] = [feed.run, *senders]
        try:
            _run_threads(jobs)
        finally:
            feed.close()
    report = PassReport()
    for part in reports:
        report.counts.update(part.counts)
        report.deliveries.extend(part.deliveries)
        report.stopped = report.stopped or part.stopped
        report.relay_down = report.relay_down or part.relay_down
    cap = settings.transport.daily_cap
    if report.stopped == CAPPED:
        with Session(engine) as session:
            report.counts["held"] = claims.hold_for_cap(session, now(), cap)
        log.warning("daily cap of %d reached: %d due messages wait for the next pass", cap, report.counts["held"])
    return report


class WriteTurn:
    """One connection's write transaction on the store; on SQLite, one writer at a time in this process.

    SQLite lets one connection write at a time, and a second one that tries
    waits in SQLite's busy handler, which sleeps for whole milliseconds, longer
    than an SMTP transaction takes. So the sending threads of one process take
    turns on a lock instead, held from a turn's first write to its commit, and
    the next thread writes the moment the store is free. (PostgreSQL locks rows,
    not the database: its sessions write side by side, and no lock is taken.)
    """

    def __init__(self, session: Session, lock: threading.Lock | None) -> None:
        self.session = session
        self._lock = lock
        self._held = False

    def begin(self) -> None:
        if self._lock is not None and not self._held:
            self._lock.acquire()
            self._held = True

    def commit(self) -> None:
        try:
            self.session.commit()
        finally:
            self.end()

    def end(self) -> None:
        if self._held:
            self._held = False
            assert self._lock is not None
            self._lock.release()


def _drain_connection(
    engine: Engine,
    deliverer: Deliverer,
    feed: Feed,
    claimer: int,
    bucket: TokenBucket,
    now: Callable[[], datetime],
    should_stop: Callable[[], bool],
    halt: threading.Event,
    report: PassReport,
    writers: threading.Lock | None,
) -> None:
    """One connection's loop: take a rendered row, claim it, commit, send, record; until the feed ends.

    A row is claimed and committed as ``sending`` just before its SMTP
    transaction, exactly as before; only the commit of its outcome waits for
    the next row's claim, and only while the next row is already rendered:
    one commit per message, and never more than one row per connection
    between ``sending`` and its outcome.
    """
    cap = deliverer.settings.transport.daily_cap
    throttled = bucket.rate > 0
    with Session(engine, expire_on_commit=False) as session, deliverer.transport:
        turn = WriteTurn(session, writers)
        try:
            while not should_stop():
                try:
                    prepared = feed.take(block=False)
                except queue.Empty:
                    turn.commit()  # the last outcome is not left waiting for a row that is not there yet
                    prepared = feed.take(block=True)
                if prepared is None:
                    break
                if throttled:
                    turn.commit()  # never wait for a token with an outcome unwritten
                if not bucket.acquire(should_stop):
                    break
                moment = now()
                delivery = _deliver_prepared(turn, deliverer, prepared, claimer, cap, moment, now)
                feed.done(prepared.row_id)
                if delivery is None:  # not ours to send (taken by another worker) or the cap is reached
                    if cap and claims.sent_or_in_flight(session, moment) >= cap:
                        report.stopped = CAPPED
                        halt.set()
                        break
                    continue
                report.counts[delivery.outcome] += 1
                if delivery.outcome == "sent" and delivery.result is not None:
                    report.deliveries.append((prepared.row_id, delivery.result.reply))
                if delivery.result is not None and delivery.result.relay_unusable:
                    report.relay_down = delivery.result.reply
                    report.stopped = f"relay unusable: {delivery.result.reply}"
                    log.warning("stopping this pass, the relay cannot take mail: %s", delivery.result.reply)
                    halt.set()
                    break
            turn.commit()
        finally:
            session.rollback()  # after an error: drop the unwritten outcome before the next writer's turn
            turn.end()
            feed.consumer_done()


def _deliver_prepared(
    turn: WriteTurn,
    deliverer: Deliverer,
    prepared: Prepared,
    claimer: int,
    cap: int,
    moment: datetime,
    now: Callable[[], datetime],
) -> Delivery | None:
    """Claim a row rendered ahead, then send it as :meth:`Deliverer.deliver` would; None if it is not ours.

    Returns with the claim committed and, for a message sent as rendered, the
    outcome written but not yet committed: the caller's next claim (or its
    last commit) commits it.
    """
    session = turn.session
    turn.begin()
    if not prepared.error and (transport := deliverer.wire) is not None:
        noted = {"subject": prepared.subject, "message_id": prepared.message_id, "to_address": prepared.to_address}
        noted["locale"] = prepared.locale
        # Staff mail about the customer (an owner's notice) goes whatever the customer opted out of.
        reachable = (prepared.customer_id, prepared.to_address) if prepared.to_customer else None
        if claims.claim(session, prepared.row_id, moment, claimer, cap, noted, reachable=reachable):
            turn.commit()  # `sending` is durable before the SMTP transaction starts
            result = transport.send_wire(
                envelope_sender(deliverer.settings.sender, prepared.message_id), prepared.to_address, prepared.data
            )
            # What the claim made of the row: one attempt more, the first one's time kept.
            attempt = Attempt(
                prepared.row_id,
                prepared.customer_id,
                prepared.attempts + 1,
                prepared.first_attempt_at or moment,
                timezone=prepared.timezone,
                to_customer=prepared.to_customer,
            )
            turn.begin()
            return deliverer.record_result(session, attempt, claimer, result, now(), commit=False)
        state = claims.customer_state(session, prepared.customer_id, prepared.campaign)
        if state.why is None and state.email == prepared.to_address:
            return None  # the customer can be reached: the row itself is not ours (or the cap is reached)
    # Opted out, a template that fails, an address changed since rendering, or a
    # transport that takes only EmailMessage objects: the one-row path re-reads,
    # re-renders and records it.
    if not claims.claim(session, prepared.row_id, moment, claimer, cap):
        return None
    # The turn ends here, not after the send: this path sends (and commits) on its own, and
    # the other connections must not wait for its SMTP transaction.
    turn.commit()
    return deliverer.deliver(session, prepared.row_id, claimer, now)


def _run_threads(jobs: list[Callable[[], None]]) -> None:
    """Run each job in its own thread; wait for all; re-raise the first error any of them raised."""
    errors: list[BaseException] = []

    def guarded(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as exc:  # handed to the caller's thread below, not swallowed
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(job,), name=f"mailer-send-{i + 1}") for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
