"""One pass: plan, record, deliver (or, as a dry run, plan only and write the messages to a folder)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session

from mailer.compose.context import sample_gift
from mailer.compose.maker import MessageMaker
from mailer.compose.pool import Composer
from mailer.compose.render import Renderer
from mailer.compose.returnpath import envelope_sender
from mailer.config import Campaign, Settings
from mailer.delivery.drain import TransportFactory, drain
from mailer.delivery.feed import POOL_FROM
from mailer.delivery.report import PassReport
from mailer.delivery.transport import Transport, WireTransport
from mailer.outbox import recovery
from mailer.outbox.decisions import json_details, record, settle
from mailer.planning import candidates
from mailer.planning.clock import PassClock
from mailer.planning.occasions import Occasion
from mailer.planning.plan import Planned, plan
from mailer.planning.policy import Decision, Verdict
from mailer.store.tables import Customer, SendLog, SendStatus, utcnow

log = logging.getLogger(__name__)

# How long a worker waits for another one's plan before it delivers what is already queued.
# Planning a million customers takes seconds; a wait this long means the planner is stuck.
PLAN_WAIT = timedelta(minutes=10)

def run_pass(
    engine: Engine,
    settings: Settings,
    clock: PassClock,
    transport: Transport | TransportFactory,
    *,
    campaign_names: Iterable[str] | None = None,
    dry_run: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
) -> PassReport:
    """Plan, record and deliver one pass. A dry run plans only: nothing is written or sent.

    On PostgreSQL only one process plans at a time (an advisory lock held by
    the planning transaction); a process that finds another one planning
    waits for that plan and then delivers alongside (:func:`_join_planner`).
    """
    campaigns = [settings.campaign(n) for n in campaign_names] if campaign_names else list(settings.campaigns)
    renderer = Renderer(settings.render.templates, settings.render.inliner)
    # Delivery runs on the real time, unless the pass stands for another instant (`--now`): it then
    # moves on from there. A replayed day delivers at its instant: the daily cap then counts that
    # day's messages as the relay would. (A real-time pass used to move on from the instant its
    # clock was read, counted from the end of planning: a worker that waited for another one's plan
    # lagged behind the rows that planner queued, found none of them due yet, and sent nothing.)
    offset = clock.now - utcnow()
    now = (lambda: clock.now) if clock.replay else (lambda: utcnow() + offset) if clock.given else utcnow
    with Composer(settings, renderer) as composer:
        return _plan_and_deliver(engine, settings, clock, now, transport, campaigns, dry_run, should_stop, composer)


def _plan_and_deliver(
    engine: Engine,
    settings: Settings,
    clock: PassClock,
    now: Callable[[], datetime],
    transport: Transport | TransportFactory,
    campaigns: list[Campaign],
    dry_run: bool,
    should_stop: Callable[[], bool],
    composer: Composer,
) -> PassReport:
    with Session(engine, expire_on_commit=False) as session:
        if dry_run:
            planned = plan(session, settings, clock, campaigns)
            report = PassReport(planned=planned)
            for item in planned:
                report.counts[_planned_name(item.decision)] += 1
            return report
        if candidates.try_plan_lock(session):
            planned = plan(session, settings, clock, campaigns)
            to_send = sum(item.decision.verdict is Verdict.SEND for item in planned)
            if to_send >= POOL_FROM:
                composer.use_processes()  # the composers start while the plan is recorded
            held_for_gifts = record(session, planned, {c.name: c for c in campaigns}, clock.now)
            log.info("plan recorded: %d decisions, %d to send", len(planned), to_send)
            # record() committed, which released the lock: settle under it again, or leave it to its holder.
            expired = settle(session, settings, clock) if candidates.try_plan_lock(session) else Counter()
        else:
            planned, expired, held_for_gifts = [], _join_planner(session, settings, clock, should_stop), Counter()
    interrupted = recovery.recover_interrupted(engine)
    if interrupted:
        log.warning("%d messages were interrupted while sending, now `unknown`: %s", len(interrupted), interrupted)
    report = drain(
        engine, settings, transport, now=now, should_stop=should_stop, pass_day=clock.day, composer=composer
    )
    report.planned = planned
    report.expired = expired
    report.counts["skipped"] += sum(expired.values())
    report.counts["unknown"] += len(interrupted)
    report.counts["deferred"] += sum(held_for_gifts.values())  # due, but the gift's pool is empty
    for item in planned:
        if item.decision.verdict is not Verdict.SEND:
            report.counts[_planned_name(item.decision)] += 1
    log.info("pass done: %s", report.summary())
    return report


def _join_planner(
    session: Session, settings: Settings, clock: PassClock, should_stop: Callable[[], bool]
) -> Counter[str]:
    """Another worker is planning this pass: wait for its plan, then deliver alongside it.

    Workers started at the same instant (a systemd timer, a CronJob on several hosts) would
    otherwise find nothing queued yet and exit at once, leaving the whole day to the planner.
    Once the lock is ours the plan is recorded; settling again is cheap and covers the moment
    between the planner's commit and its own settle. A stop request (SIGTERM to the daemon or to
    `mailer run`) ends the wait within a second. Returns the deferrals expired here.
    """
    log.info("another process is planning this pass; waiting for its plan (at most %s)", PLAN_WAIT)
    started = time.monotonic()
    if candidates.wait_for_plan_lock(session, PLAN_WAIT, should_stop):
        log.info("the plan is recorded after %.1fs of waiting; delivering alongside", time.monotonic() - started)
        return settle(session, settings, clock)
    if should_stop():
        log.info("stopped while waiting for the other process's plan, after %.1fs", time.monotonic() - started)
        return Counter()
    log.warning("the other process was still planning after %s; delivering what is queued", PLAN_WAIT)
    return Counter()


def render_planned(engine: Engine, settings: Settings, planned: Iterable[Planned], transport: Transport) -> int:
    """Write the messages a dry run would send to ``transport`` (a folder), touching no send-log row."""
    maker = MessageMaker(settings, Renderer(settings.render.templates, settings.render.inliner))
    written = 0
    with Session(engine) as session, transport:
        for item in planned:
            if item.decision.verdict is not Verdict.SEND:
                continue
            occasion = item.decision.occasion
            customer = session.get(Customer, occasion.customer_id)
            assert customer is not None
            row = unsent_row(settings, occasion, _dry_run_gift(settings.campaign(occasion.campaign), occasion.due))
            if isinstance(transport, WireTransport):
                wire = maker.compose_wire(row, customer)
                transport.send_wire(envelope_sender(settings.sender, wire.message_id), customer.email, wire.data)
            else:
                msg = maker.compose(row, customer)
                transport.send(envelope_sender(settings.sender, str(msg["Message-ID"])), customer.email, msg)
            written += 1
    return written


def unsent_row(
    settings: Settings, occasion: Occasion, gift: dict[str, object] | None, row_id: int | None = None
) -> SendLog:
    """The send-log row a planned occasion's message is written from, never stored (dry runs, benchmarks)."""
    return SendLog(
        id=row_id,
        customer_id=occasion.customer_id,
        campaign=occasion.campaign,
        occasion_key=occasion.key,
        occasion_kind=occasion.kind,
        due_date=occasion.due,
        occasion=json_details(occasion),
        template=settings.campaign(occasion.campaign).template,
        status=SendStatus.QUEUED,
        gift=gift,
    )


def _dry_run_gift(campaign: Campaign, day: date) -> dict[str, object] | None:
    """A dry run binds no code: its messages show a sample one where the campaign gives a gift."""
    return sample_gift(day, campaign.gift.label) if campaign.gift else None


def _planned_name(decision: Decision) -> str:
    return {Verdict.SEND: "queued", Verdict.DEFER: "deferred", Verdict.SKIP: "skipped"}[decision.verdict]
