"""The pass: plan the day → record every decision in the send log → claim → render → send → record.

The send log is the outbox. A decision to send becomes a ``queued`` row
(UNIQUE per customer, campaign and occasion key, so planning twice cannot
queue twice); delivery claims each row with a conditional update, commits it
as ``sending`` before the SMTP transaction and as ``sent`` (or a retry, a
bounce, a failure) after it.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import queue
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import cast
from zoneinfo import ZoneInfo

from sqlalchemy import Boolean, Engine, Table, bindparam, case, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from mailer import store
from mailer.compose.maker import MessageMaker
from mailer.compose.message import HeaderError
from mailer.compose.pool import Composer, Prepared
from mailer.compose.render import Renderer, RenderError
from mailer.config import Campaign, Settings
from mailer.delivery.throttle import TokenBucket
from mailer.delivery.transport import Outcome, SendResult, Transport, WireTransport
from mailer.models import Customer, PlanMark, SendLog, SendStatus, utcnow
from mailer.occasions import CustomerFacts, Occasion, noon, pick
from mailer.outbox_lease import lease_for
from mailer.policy import Decision, PassMoment, Verdict, decide

log = logging.getLogger(__name__)

# However long the outage, a pass never looks back further than this.
MAX_LOOKBACK_DAYS = 400
PLAN_MARK = "plan"


@dataclass(frozen=True, slots=True)
class PassClock:
    """The time a pass stands for: an instant, or a whole calendar day.

    ``day`` set (``mailer run --date``, ``mailer plan``, ``mailer simulate``):
    every customer's local date is ``day``, the send window is open on the
    configured weekdays, every time rule (frequency cap, catch-up, spells,
    delays) is applied as of ``day``, and a customer emailed by the pass
    counts as emailed at noon of ``day`` in their zone. Otherwise local dates
    and windows follow ``now``. ``now`` is also when the pass records and
    delivers: the real time unless given; ``replay`` (a simulation on a
    throw-away store, where nothing real happens) delivers at ``now`` itself.
    """

    now: datetime
    day: date | None = None
    replay: bool = False

    @classmethod
    def at(cls, now: datetime | None = None) -> PassClock:
        return cls(now=(now or datetime.now(UTC)).astimezone(UTC))

    @classmethod
    def on(cls, day: date, now: datetime | None = None) -> PassClock:
        return cls(now=(now or datetime.now(UTC)).astimezone(UTC), day=day)

    @classmethod
    def replayed(cls, day: date) -> PassClock:
        """A pass for ``day`` on a throw-away store: recorded and delivered at noon UTC of ``day``."""
        return cls(now=datetime.combine(day, time(12), UTC), day=day, replay=True)

    def moment_for(self, zone: str) -> PassMoment:
        if self.day is not None:
            return PassMoment(today=self.day, local_now=None, window_open=True, weekday_only=True)
        local = self.now.astimezone(ZoneInfo(zone))
        return PassMoment(today=local.date(), local_now=local, window_open=False)

    def emailed_at(self, zone: str) -> datetime:
        """When a customer in ``zone`` emailed by this pass counts as emailed (the frequency cap counts from it)."""
        return noon(self.day, zone) if self.day is not None else self.now

    def local_dates(self, lookback: int) -> list[date]:
        """Every local date this pass stands for somewhere, and the ``lookback`` days before them."""
        if self.day is not None:
            return [self.day - timedelta(days=i) for i in range(lookback + 1)]
        return store.local_dates_span(self.now, lookback)

    def planned_through(self) -> date:
        """The latest date that, after this pass, has been planned in every time zone."""
        if self.day is not None:
            return self.day
        return min(store.local_dates_span(self.now, 0))


@dataclass(frozen=True, slots=True)
class Planned:
    """One decision of a pass; ``redecided`` when it decides again an occasion the send log holds as deferred."""

    customer: CustomerFacts
    decision: Decision
    redecided: bool = False


@dataclass
class PassReport:
    planned: list[Planned] = field(default_factory=list)
    expired: Counter[str] = field(default_factory=Counter)  # per campaign: deferrals logged expired after planning
    counts: Counter[str] = field(default_factory=Counter)
    deliveries: list[tuple[int, str]] = field(default_factory=list)  # (send-log id, server reply)
    stopped: str = ""  # why delivery stopped before the queue was empty, if it did
    relay_down: str = ""  # what the relay said when it could take no mail at all (the pass then stopped)

    @property
    def needs_a_human(self) -> bool:
        """The relay could not be used, or a row ended `failed` or `unknown`: cron should hear of it."""
        return bool(self.relay_down or self.counts.get("failed") or self.counts.get("unknown"))

    def summary(self) -> str:
        order = ("sent", "queued", "retrying", "deferred", "skipped", "failed", "bounced")
        text = ", ".join(f"{name} {self.counts.get(name, 0)}" for name in order)
        extras = [f"{name} {self.counts[name]}" for name in ("unknown", "held") if self.counts.get(name)]
        stopped = [f"stopped: {self.stopped}"] if self.stopped else []
        return ", ".join([text, *extras, *stopped])


@dataclass
class Overlay:
    """Decisions a simulation has taken on top of the store (``mailer plan``): nothing is written.

    ``logged`` adds send-log statuses per customer, ``emailed`` the instants
    customers count as emailed, ``deferred`` the due date of every occasion
    held back, by (customer, campaign, key): the store's deferrals first,
    then the simulation's.
    """

    logged: dict[int, dict[tuple[str, str], str]] = field(default_factory=dict)
    emailed: dict[int, datetime] = field(default_factory=dict)
    deferred: dict[tuple[int, str, str], date] = field(default_factory=dict)

    def apply(self, planned: Iterable[Planned], clock: PassClock) -> None:
        """Take this pass's decisions as if they had been recorded and delivered by the pass."""
        for item in planned:
            occasion = item.decision.occasion
            status = SendStatus.SENT if item.decision.verdict is Verdict.SEND else item.decision.status
            self.logged.setdefault(occasion.customer_id, {})[(occasion.campaign, occasion.key)] = status
            slot = (occasion.customer_id, occasion.campaign, occasion.key)
            if status == SendStatus.DEFERRED:
                self.deferred[slot] = occasion.due
            else:
                self.deferred.pop(slot, None)
            if status == SendStatus.SENT:
                self.emailed[occasion.customer_id] = clock.emailed_at(item.customer.timezone)

    def expire(self, cutoff: date) -> Counter[str]:
        """Log every deferral due before ``cutoff`` as expired, as :func:`settle` does; how many, per campaign."""
        expired: Counter[str] = Counter()
        for slot, due in list(self.deferred.items()):
            if due < cutoff:
                customer_id, campaign, key = slot
                self.logged.setdefault(customer_id, {})[(campaign, key)] = SendStatus.SKIPPED
                del self.deferred[slot]
                expired[campaign] += 1
        return expired

    def waiting(self, due_from: date, due_before: date) -> set[int]:
        """Customers with a deferral due in [``due_from``, ``due_before``)."""
        return {slot[0] for slot, due in self.deferred.items() if due_from <= due < due_before}


def lookback_days(session: Session, settings: Settings, clock: PassClock) -> int:
    """How many days before today this pass looks for occasions.

    The catch-up window: an occasion at most that late is still sent, and a
    deferred one is decided again by every pass until the window is over
    (:func:`settle` then logs it expired). After an outage, every day since
    the last planned one (the plan mark), so that what fell due meanwhile is
    logged ``skipped: expired`` rather than lost (at most
    ``MAX_LOOKBACK_DAYS``). Days before the catch-up window that the mark says
    were planned are not looked at again: every occasion due on them was
    decided by the pass that planned them.
    """
    lookback = settings.policy.catch_up_days
    mark = session.get(PlanMark, PLAN_MARK)
    if mark is not None:
        latest_today = max(clock.local_dates(0))
        lookback = max(lookback, (latest_today - mark.planned_through).days)
    if lookback > MAX_LOOKBACK_DAYS:
        log.warning("last planned %s; looking back %d days only", mark and mark.planned_through, MAX_LOOKBACK_DAYS)
    return min(lookback, MAX_LOOKBACK_DAYS)


def plan(
    session: Session,
    settings: Settings,
    clock: PassClock,
    campaigns: Iterable[Campaign],
    *,
    lookback: int | None = None,
    overlay: Overlay | None = None,
) -> list[Planned]:
    """Every decision for this pass, from the store's facts and the pure pickers and policy.

    Reads only: nothing is written. ``lookback`` defaults to
    :func:`lookback_days`; ``overlay`` adds a simulation's earlier decisions.
    Deferrals due before the look-back are decided again too, up to
    ``min_days_between`` days before it: the frequency cap may still hold
    them (see :mod:`mailer.policy`), and they expire only when it no longer does.
    """
    policy = settings.policy
    if lookback is None:
        lookback = lookback_days(session, settings, clock)
    campaigns = [c for c in campaigns if c.enabled]
    by_name = {c.name: c for c in campaigns}
    dates = clock.local_dates(lookback)
    waiting = _waiting_customers(session, clock, lookback, policy.min_days_between, overlay)

    moments: dict[str, PassMoment] = {}  # one per time zone: the same for every customer in it

    def moment_for(zone: str) -> PassMoment:
        moment = moments.get(zone)
        if moment is None:
            moment = moments[zone] = clock.moment_for(zone)
        return moment

    found: dict[int, tuple[CustomerFacts, list[Occasion]]] = {}
    for campaign in campaigns:
        for customer in store.candidates(session, campaign, dates, settings.sender.timezone):
            if customer.id in waiting:
                continue  # picked below, with the longer look-back
            occasions = pick(customer, campaign, moment_for(customer.timezone).today, lookback)
            if occasions:
                found.setdefault(customer.id, (customer, []))[1].extend(occasions)
        if waiting:
            longer = lookback + policy.min_days_between
            ids = sorted(waiting)
            for start in range(0, len(ids), 900):  # SQLite caps bound parameters
                chunk = ids[start : start + 900]
                for customer in store.candidates(
                    session, campaign, clock.local_dates(longer), settings.sender.timezone, only=chunk
                ):
                    occasions = pick(customer, campaign, moment_for(customer.timezone).today, longer)
                    if occasions:
                        found.setdefault(customer.id, (customer, []))[1].extend(occasions)

    logged: dict[int, dict[tuple[str, str], str]] = {}
    for (customer_id, campaign_name, key), status in store.logged_statuses(session, sorted(found)).items():
        logged.setdefault(customer_id, {})[(campaign_name, key)] = status
    planned: list[Planned] = []
    for customer_id, (customer, occasions) in found.items():
        stored = mine = logged.get(customer_id, {})
        if overlay is not None:
            mine = {**mine, **overlay.logged.get(customer_id, {})}
            emailed = overlay.emailed.get(customer_id)
            if emailed is not None and (customer.last_emailed_at is None or emailed > customer.last_emailed_at):
                customer = replace(customer, last_emailed_at=emailed)
        moment = moment_for(customer.timezone)
        if customer_id in waiting:
            # The longer look-back is for deferrals only: an occasion first seen there is not this pass's.
            earliest = moment.today - timedelta(days=lookback)
            occasions = [
                o for o in occasions
                if o.due >= earliest or mine.get((o.campaign, o.key)) == SendStatus.DEFERRED
            ]
        for decision in decide(customer, occasions, by_name, mine, moment, policy):
            slot = (decision.occasion.campaign, decision.occasion.key)
            planned.append(Planned(customer, decision, redecided=slot in stored))
    return planned


def _waiting_customers(
    session: Session, clock: PassClock, lookback: int, cap_days: int, overlay: Overlay | None
) -> set[int]:
    """Customers with a deferral due up to ``cap_days`` days before the look-back of their zone."""
    if cap_days <= 0:
        return set()
    dates = clock.local_dates(lookback)
    # Wide enough for every zone: the earliest date anyone's look-back can reach, to the latest "today" less it.
    due_from = min(dates) - timedelta(days=cap_days)
    due_before = max(dates) - timedelta(days=lookback)
    if overlay is not None:
        return overlay.waiting(due_from, due_before)
    return {d.customer_id for d in store.deferrals(session, due_before=due_before, due_from=due_from)}


@dataclass(frozen=True, slots=True)
class ForecastRow:
    day: date
    campaign: str
    send: int
    defer: int
    skip: int


def forecast(
    session: Session, settings: Settings, start: date, days: int, campaigns: Iterable[Campaign]
) -> list[ForecastRow]:
    """What ``days`` consecutive ``mailer run --date`` passes from ``start`` would decide; writes nothing.

    Each day runs the real :func:`plan` with that day's :class:`PassClock`;
    its decisions carry over to the next day as if they had been recorded and
    delivered, and deferrals expire as :func:`settle` expires them, so the
    counts per day and campaign are those of the real passes (send = queued
    for delivery; skip includes deferrals the day's pass logs expired). Rows
    only for a day and campaign with something to report.
    """
    campaigns = [c for c in campaigns if c.enabled]
    overlay = Overlay()
    for row in store.deferrals(session):
        overlay.deferred[(row.customer_id, row.campaign, row.key)] = row.due
    rows: list[ForecastRow] = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        clock = PassClock.on(day)
        # The first day looks back like a real pass would (an outage shows as expired occasions);
        # later days need only the catch-up window, as the simulated day before was planned.
        lookback = None if offset == 0 else settings.policy.catch_up_days
        planned = plan(session, settings, clock, campaigns, lookback=lookback, overlay=overlay)
        counts = Counter((item.decision.occasion.campaign, item.decision.verdict) for item in planned)
        overlay.apply(planned, clock)
        expired = overlay.expire(expiry_cutoff(settings, day))
        for campaign in campaigns:
            send, defer, skip = (counts[(campaign.name, v)] for v in (Verdict.SEND, Verdict.DEFER, Verdict.SKIP))
            skip += expired[campaign.name]
            if send or defer or skip:
                rows.append(ForecastRow(day, campaign.name, send, defer, skip))
    return rows


def expiry_cutoff(settings: Settings, planned_through: date) -> date:
    """Deferrals due before this date are over once ``planned_through`` is planned: no pass decides them again.

    The catch-up window, and the frequency cap's days before it (a deferral
    the cap still held may wait that long; see :mod:`mailer.policy`).
    """
    policy = settings.policy
    return planned_through - timedelta(days=policy.catch_up_days + max(policy.min_days_between, 0))


def settle(session: Session, settings: Settings, clock: PassClock) -> Counter[str]:
    """After recording a pass: expire deferrals no pass will decide again, and move the plan mark.

    A deferred occasion that no picker yields any more (the campaign was
    disabled, the customer left the segment) is not decided again; it is
    logged ``skipped: expired`` once it is older than :func:`expiry_cutoff`
    in every time zone, its reason keeping why it was deferred. Returns how
    many rows were expired, per campaign.
    """
    through = clock.planned_through()
    expired: Counter[str] = Counter()
    stale = store.deferrals(session, due_before=expiry_cutoff(settings, through))
    if stale:
        table = cast(Table, SendLog.__table__)  # type: ignore[attr-defined]
        statement = (
            update(table)
            .where(table.c.id == bindparam("b_id"), table.c.status == SendStatus.DEFERRED)
            .values(status=SendStatus.SKIPPED, reason=bindparam("reason"), updated_at=clock.now, next_attempt_at=None)
        )
        session.connection().execute(
            statement, [{"b_id": row.id, "reason": expired_reason(through, row.due, row.reason)} for row in stale]
        )
        expired.update(row.campaign for row in stale)
    mark = session.get(PlanMark, PLAN_MARK)
    if mark is None:
        session.add(PlanMark(name=PLAN_MARK, planned_through=through, updated_at=clock.now))
    elif through > mark.planned_through:
        mark.planned_through = through
        mark.updated_at = clock.now
        session.add(mark)
    session.commit()
    return expired


def expired_reason(today: date, due: date, deferred_because: str) -> str:
    """``expired after 5 days deferred: frequency cap: last email 2027-03-01``: the deferral's reason is kept."""
    return f"expired after {(today - due).days} days deferred: {deferred_because}"[:1000]


RECORD_BATCH = 2000  # rows per executemany


def record(session: Session, planned: Iterable[Planned], by_name: dict[str, Campaign], now: datetime) -> None:
    """Write decisions to the send log and commit: new rows inserted, earlier deferrals updated, nothing else touched.

    In batches (one ``executemany`` each). A new occasion's row is inserted
    unless one exists by then (whoever wrote it first wins: the key is UNIQUE);
    a deferral is decided again only while its row is still ``deferred``, so a
    row another pass has moved on is left alone.
    """
    table = cast(Table, SendLog.__table__)  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).on_conflict_do_nothing(
        index_elements=["customer_id", "campaign", "occasion_key"]
    )
    redecide = (
        update(table)
        .where(
            table.c.customer_id == bindparam("b_customer_id"),
            table.c.campaign == bindparam("b_campaign"),
            table.c.occasion_key == bindparam("b_occasion_key"),
            table.c.status == SendStatus.DEFERRED,
        )
        .values(status=bindparam("status"), updated_at=now, next_attempt_at=bindparam("next_attempt_at"),
                # An expired deferral keeps why it was deferred after why it expired.
                reason=case((bindparam("history", type_=Boolean), bindparam("reason") + ": " + table.c.reason),
                            else_=bindparam("reason")))
    )
    connection = session.connection()
    new: list[dict[str, object]] = []
    again: list[dict[str, object]] = []
    for item in planned:
        if item.redecided:
            again.append(_redecided_row(item, now))
        else:
            new.append(_new_row(item, by_name, now))
        for statement, rows in ((insert, new), (redecide, again)):
            if len(rows) >= RECORD_BATCH:
                connection.execute(statement, rows)
                rows.clear()
    for statement, rows in ((insert, new), (redecide, again)):
        if rows:
            connection.execute(statement, rows)
    session.commit()


def _new_row(item: Planned, by_name: dict[str, Campaign], now: datetime) -> dict[str, object]:
    occasion = item.decision.occasion
    status = item.decision.status
    return {
        "customer_id": occasion.customer_id,
        "campaign": occasion.campaign,
        "occasion_key": occasion.key,
        "occasion_kind": occasion.kind,
        "due_date": occasion.due,
        "occasion": _json_details(occasion),
        "template": by_name[occasion.campaign].template,
        "status": status,
        "reason": item.decision.reason,
        "to_address": item.customer.email,
        "next_attempt_at": now if status == SendStatus.QUEUED else None,
        "created_at": now,
        "updated_at": now,
    }


def _redecided_row(item: Planned, now: datetime) -> dict[str, object]:
    occasion = item.decision.occasion
    status = item.decision.status
    return {
        "b_customer_id": occasion.customer_id,
        "b_campaign": occasion.campaign,
        "b_occasion_key": occasion.key,
        "status": status,
        "reason": item.decision.reason,
        "history": item.decision.history,
        "next_attempt_at": now if status == SendStatus.QUEUED else None,
    }


def _json_details(occasion: Occasion) -> dict[str, object]:
    return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in occasion.details.items()}


TransportFactory = Callable[[], Transport]


class Deliverer:
    """Sends claimed send-log rows over one transport, recording each outcome.

    One per sending thread (a transport is one connection); the message maker may be shared.
    """

    def __init__(
        self, settings: Settings, maker: MessageMaker, transport: Transport, *, pass_day: date | None = None
    ) -> None:
        self.settings = settings
        self.maker = maker
        self.transport = transport
        self.pass_day = pass_day  # a pass that stands for a day: delivered customers count as emailed on it

    def deliver(self, session: Session, row_id: int, claimer: int, now: Callable[[], datetime]) -> Delivery:
        """Send one row that ``claimer`` has claimed (and committed) as ``sending``; record the outcome.

        The Message-ID and subject are committed before the SMTP transaction,
        so a row that a crash leaves ``unknown`` can be looked up at the relay.
        """
        row = session.get(SendLog, row_id, populate_existing=True)
        assert row is not None
        # Re-read, not the identity map's copy: an unsubscribe may have landed since the pass planned.
        customer = session.get(Customer, row.customer_id, populate_existing=True)
        assert customer is not None
        if customer.suppressed_at or customer.unsubscribed_at:
            why = "suppressed" if customer.suppressed_at else "unsubscribed"
            return self._finish(session, row_id, claimer, SendStatus.SKIPPED, f"{why} before delivery", now())
        try:
            msg = self.maker.compose(row, customer)
        except (RenderError, HeaderError) as exc:
            return self._finish(session, row_id, claimer, SendStatus.FAILED, f"render error: {exc}", now())
        noted = {"subject": str(msg["Subject"]), "message_id": str(msg["Message-ID"]), "to_address": customer.email}
        if not store.finish(session, row_id, claimer, noted):
            session.rollback()
            return Delivery("lost", None)
        session.commit()
        result = self.transport.send(self.settings.sender.from_address, customer.email, msg)
        assert row.id is not None and customer.id is not None and row.first_attempt_at is not None
        attempt = Attempt(row.id, customer.id, row.attempts, row.first_attempt_at)
        return self.record_result(session, attempt, claimer, result, now())

    def record_result(
        self,
        session: Session,
        attempt: Attempt,
        claimer: int,
        result: SendResult,
        now: datetime,
        *,
        commit: bool = True,
    ) -> Delivery:
        """Write the outcome of the row's SMTP transaction; ``commit=False`` leaves the commit to the caller."""
        finish = functools.partial(self._finish, commit=commit)
        # Only a retry has a next attempt; every other outcome is final.
        extra: dict[str, object] = {"last_reply": result.reply[:1000], "next_attempt_at": None}
        if result.outcome is Outcome.DELIVERED:
            store.mark_emailed(
                session, attempt.customer_id, now, day=self.pass_day, default_zone=self.settings.sender.timezone
            )
            extra["sent_at"] = now
            return finish(session, attempt.row_id, claimer, SendStatus.SENT, "delivered", now, extra, result)
        if result.outcome is Outcome.PERMANENT:
            if result.user_unknown:
                session.execute(
                    update(Customer)
                    .where(Customer.id == attempt.customer_id, Customer.suppressed_at.is_(None))  # type: ignore[arg-type, union-attr]
                    .values(suppressed_at=now, suppressed_reason=f"hard bounce: {result.reply[:200]}", updated_at=now)
                )
            reason = f"bounced: {result.reply}"
            return finish(session, attempt.row_id, claimer, SendStatus.BOUNCED, reason, now, extra, result)
        if result.outcome is Outcome.UNKNOWN:
            reason = f"unknown: {result.reply}"
            return finish(session, attempt.row_id, claimer, SendStatus.UNKNOWN, reason, now, extra, result)
        if result.outcome is Outcome.IMPOSSIBLE:
            reason = f"failed: {result.reply}"
            return finish(session, attempt.row_id, claimer, SendStatus.FAILED, reason, now, extra, result)
        transport = self.settings.transport
        first = attempt.first_attempt_at
        again = retry_at(first, attempt.attempts, now, transport.retry_initial, transport.retry_max_age)
        if again is None:
            reason = f"gave up after {attempt.attempts} attempts in {_span(now - first)}: {result.reply}"
            return finish(session, attempt.row_id, claimer, SendStatus.FAILED, reason, now, extra, result)
        extra["next_attempt_at"] = again
        reason = f"retrying: {result.reply}"
        return finish(session, attempt.row_id, claimer, SendStatus.QUEUED, reason, now, extra, result)

    def _finish(
        self,
        session: Session,
        row_id: int,
        claimer: int,
        status: SendStatus,
        reason: str,
        now: datetime,
        extra: dict[str, object] | None = None,
        result: SendResult | None = None,
        *,
        commit: bool = True,
    ) -> Delivery:
        values = {"status": status, "reason": reason[:1000], "updated_at": now, **(extra or {})}
        if not store.finish(session, row_id, claimer, values):
            # Requeued by a human and claimed by another process meanwhile: its record wins.
            log.warning("send-log row %s was taken over while sending; its outcome here: %s", row_id, reason)
            session.rollback()
            return Delivery("lost", result)
        if commit:
            session.commit()
        return Delivery("retrying" if status == SendStatus.QUEUED else str(status), result)


@dataclass(frozen=True, slots=True)
class Attempt:
    """A claimed row's SMTP attempt, as its outcome is recorded: the row, its customer, and its attempts so far."""

    row_id: int
    customer_id: int
    attempts: int  # including this one
    first_attempt_at: datetime  # retries give up a fixed time after this


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of one claimed row: the report's name for it, and the transport's result if it got that far."""

    outcome: str
    result: SendResult | None


def retry_at(first: datetime, attempts: int, now: datetime, initial: timedelta, max_age: timedelta) -> datetime | None:
    """When to try again after the ``attempts``-th failed attempt, or None to give up.

    Exponential backoff (``initial``, then doubling), never past
    ``first + max_age``: the last attempt happens at that deadline, and a
    failure then is final. With 30 min and 3 days: attempts at 0, 0.5, 1.5,
    3.5, 7.5, 15.5, 31.5, 63.5 and 72 hours.
    """
    deadline = first + max_age
    if now >= deadline:
        return None
    return min(now + initial * (1 << max(attempts - 1, 0)), deadline)


def _span(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"


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
) -> PassReport:
    """Send every due ``queued`` row, one claimed row at a time per connection, until none is left.

    ``transports`` is a factory called once per connection
    (``[transport] connections`` of them, each in its own thread with its own
    session), or one transport instance, which then is the only connection.
    Each row is committed as ``sending`` before its SMTP transaction and with
    its outcome after it, so a crash leaves at most one row per connection
    in between (see :func:`mailer.store.recover_interrupted`).

    Stops early, leaving the rest ``queued`` and due: when ``should_stop``
    turns true (the message in flight is finished first), when the relay
    cannot take mail (down, TLS or AUTH refused), or when ``daily_cap`` is
    reached (the waiting rows say so in their reason). ``pass_day``: see
    :meth:`PassClock.emailed_at`.
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

    with Composer(settings, renderer) as composer:

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
            report.counts["held"] = store.hold_for_cap(session, now(), cap)
        log.warning("daily cap of %d reached: %d due messages wait for the next pass", cap, report.counts["held"])
    return report


CAPPED = "daily cap reached"


RENDER_AHEAD = 64  # rows read from the queue at a time, and rendered ahead of their claim
RENDER_CHUNK = 16  # rows rendered by one task of a worker process
POOL_FROM = RENDER_AHEAD  # a backlog this large is rendered in worker processes (a handful is not worth starting them)


class Feed:
    """Due rows, rendered ahead of their claim, handed to the sending threads oldest first.

    :meth:`run` (a thread of its own) reads due ``queued`` rows and their
    customers, renders them (in worker processes once the backlog is large)
    and puts them on a bounded queue, so memory stays flat however long the
    queue in the store is. A row stays ``queued`` until a sending thread
    claims it right before its own SMTP transaction; :meth:`done` tells the
    feed the row has left its hands, so it is not read again.
    """

    def __init__(
        self,
        engine: Engine,
        composer: Composer,
        now: Callable[[], datetime],
        should_stop: Callable[[], bool],
        consumers: int,
    ) -> None:
        self.engine = engine
        self.composer = composer
        self.now = now
        self.should_stop = should_stop
        self.consumers = consumers
        self.ready: queue.Queue[Prepared | None] = queue.Queue(maxsize=RENDER_AHEAD)
        self._lock = threading.Lock()
        self._handled: set[int] = set()
        self._closed = threading.Event()
        self._consumers_left = consumers
        # Several PostgreSQL workers each start at a different row of a queue that fell due at once.
        self._shuffle = secrets.randbelow(2**30) * 2 + 1

    def run(self) -> None:
        try:
            self._feed()
        finally:
            for _ in range(self.consumers):
                self._put(None, force=True)

    def _feed(self) -> None:
        in_flight: set[int] = set()
        # Each row's place in the rendering of its chunk.
        pending: collections.deque[tuple[Future[list[Prepared]], int]] = collections.deque()
        exhausted = False
        with Session(self.engine, expire_on_commit=False) as session:
            while not self.should_stop() and not self._closed.is_set():
                with self._lock:
                    in_flight -= self._handled
                    self._handled.clear()
                if not exhausted and len(pending) < 2 * RENDER_AHEAD:
                    rows = store.due_rows(session, self.now(), in_flight, RENDER_AHEAD, self._shuffle)
                    session.rollback()  # end the read: SQLite keeps no snapshot open while others write
                    if len(rows) >= POOL_FROM:
                        self.composer.use_processes()
                    for start in range(0, len(rows), RENDER_CHUNK):
                        chunk = rows[start : start + RENDER_CHUNK]
                        rendering = self.composer.submit(chunk)
                        for place, (row, _customer) in enumerate(chunk):
                            in_flight.add(row["id"])
                            pending.append((rendering, place))
                    exhausted = len(rows) < RENDER_AHEAD
                    continue
                if not pending:
                    if not in_flight:
                        return  # nothing due, nothing on its way: the queue is drained
                    self._closed.wait(0.05)  # the last rows are being sent; look again once they are
                    exhausted = False
                    continue
                rendering, place = pending.popleft()
                if not self._put(rendering.result()[place]):
                    return
                exhausted = exhausted and bool(pending)

    def _put(self, item: Prepared | None, force: bool = False) -> bool:
        while True:
            try:
                self.ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                if self._closed.is_set() and not force:
                    return False
                if force:
                    with contextlib.suppress(queue.Empty):
                        self.ready.get_nowait()  # consumers are gone: make room for their stop signal

    def take(self, block: bool) -> Prepared | None:
        """The next rendered row; None when the feed is over. Raises queue.Empty if ``block`` is False."""
        return self.ready.get(block=block)

    def done(self, row_id: int) -> None:
        with self._lock:
            self._handled.add(row_id)

    def consumer_done(self) -> None:
        """A sending thread has stopped taking rows; once all have, the feed stops too."""
        with self._lock:
            self._consumers_left -= 1
            if self._consumers_left == 0:
                self._closed.set()

    def close(self) -> None:
        self._closed.set()


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
                    if cap and store.sent_or_in_flight(session, moment) >= cap:
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
    transport = deliverer.transport
    turn.begin()
    if not prepared.error and isinstance(transport, WireTransport):
        noted = {"subject": prepared.subject, "message_id": prepared.message_id, "to_address": prepared.to_address}
        reachable = (prepared.customer_id, prepared.to_address)
        if store.claim(session, prepared.row_id, moment, claimer, cap, noted, reachable=reachable):
            turn.commit()  # `sending` is durable before the SMTP transaction starts
            result = transport.send_wire(deliverer.settings.sender.from_address, prepared.to_address, prepared.data)
            # What the claim made of the row: one attempt more, the first one's time kept.
            attempt = Attempt(
                prepared.row_id, prepared.customer_id, prepared.attempts + 1, prepared.first_attempt_at or moment
            )
            turn.begin()
            return deliverer.record_result(session, attempt, claimer, result, now(), commit=False)
        state = store.customer_state(session, prepared.customer_id)
        if state.why is None and state.email == prepared.to_address:
            return None  # the customer can be reached: the row itself is not ours (or the cap is reached)
    # Opted out, a template that fails, an address changed since rendering, or a
    # transport that takes only EmailMessage objects: the one-row path re-reads,
    # re-renders and records it.
    if not store.claim(session, prepared.row_id, moment, claimer, cap):
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
    goes straight to delivering what is already queued.
    """
    campaigns = [settings.campaign(n) for n in campaign_names] if campaign_names else list(settings.campaigns)
    renderer = Renderer(settings.render.templates, settings.render.inliner)
    with Session(engine, expire_on_commit=False) as session:
        if dry_run:
            planned = plan(session, settings, clock, campaigns)
            report = PassReport(planned=planned)
            for item in planned:
                report.counts[_planned_name(item.decision)] += 1
            return report
        if store.try_plan_lock(session):
            planned = plan(session, settings, clock, campaigns)
            record(session, planned, {c.name: c for c in campaigns}, clock.now)
            # record() committed, which released the lock: settle under it again, or leave it to its holder.
            expired = settle(session, settings, clock) if store.try_plan_lock(session) else Counter()
        else:
            log.info("another process is planning this pass; delivering what is queued")
            planned, expired = [], Counter()
    interrupted = store.recover_interrupted(engine)
    if interrupted:
        log.warning("%d messages were interrupted while sending, now `unknown`: %s", len(interrupted), interrupted)
    # The pass's clock may stand for another instant (`--now`): keep it moving from there. A replayed
    # day delivers at its instant: the daily cap then counts that day's messages as the relay would.
    offset = clock.now - utcnow()
    now = (lambda: clock.now) if clock.replay else (lambda: utcnow() + offset)
    report = drain(
        engine, settings, transport, now=now, should_stop=should_stop, renderer=renderer, pass_day=clock.day
    )
    report.planned = planned
    report.expired = expired
    report.counts["skipped"] += sum(expired.values())
    report.counts["unknown"] += len(interrupted)
    for item in planned:
        if item.decision.verdict is not Verdict.SEND:
            report.counts[_planned_name(item.decision)] += 1
    log.info("pass done: %s", report.summary())
    return report


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
            row = SendLog(
                customer_id=occasion.customer_id,
                campaign=occasion.campaign,
                occasion_key=occasion.key,
                occasion_kind=occasion.kind,
                due_date=occasion.due,
                occasion=_json_details(occasion),
                template=settings.campaign(occasion.campaign).template,
                status=SendStatus.QUEUED,
            )
            if isinstance(transport, WireTransport):
                wire = maker.compose_wire(row, customer)
                transport.send_wire(settings.sender.from_address, customer.email, wire.data)
            else:
                transport.send(settings.sender.from_address, customer.email, maker.compose(row, customer))
            written += 1
    return written


def _planned_name(decision: Decision) -> str:
    return {Verdict.SEND: "queued", Verdict.DEFER: "deferred", Verdict.SKIP: "skipped"}[decision.verdict]
