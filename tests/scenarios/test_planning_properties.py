"""A year of daily passes over random customers, with outages and restarts.

Drives the real pass (plan → record → settle → render → send) against a real
SQLite file, importing each day's interactions through the real importer, and
checks three properties against an oracle written independently of the
pickers: no occasion is sent twice, every occasion that fell due was sent or
has a logged reason, and no customer got two emails within the frequency cap.
"""

from __future__ import annotations

import csv
import itertools
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Self
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer import store
from mailer.config import Campaign, Settings, load_settings
from mailer.contacts.importer import import_customers, import_interactions
from mailer.delivery.transport import Outcome, SendResult
from mailer.planning.clock import PassClock
from mailer.planning.plan import PLAN_MARK
from mailer.service.passes import run_pass
from mailer.service.project import init_project
from mailer.store.tables import Customer, Interaction, PlanMark, SendLog, SendStatus

START = date(2026, 1, 1)
DAYS = 365
ZONES = ["Pacific/Kiritimati", "Pacific/Pago_Pago", "America/New_York", "Europe/London", "Pacific/Auckland"]
# One pass a day at one of these UTC hours: each zone's 09:00-17:00 window contains at least one of them.
PASS_HOURS = [10, 15, 22]


class Inbox:
    """An in-process transport: every message accepted and kept."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def send(self, envelope_from: str, to_address: str, msg: EmailMessage) -> SendResult:
        self.messages.append(msg)
        return SendResult(Outcome.DELIVERED, "250 2.0.0 queued")


@dataclass(frozen=True)
class Person:
    since: date
    birthday: date | None
    zone: str
    staff: bool
    orders: tuple[tuple[int, int, int], ...]  # (day offset into the year, hour UTC, amount)


people = st.builds(
    Person,
    since=st.dates(date(2015, 1, 1), date(2026, 6, 30)),
    birthday=st.none() | st.dates(date(1960, 1, 1), date(2004, 12, 31)),
    zone=st.sampled_from(ZONES),
    staff=st.booleans(),
    orders=st.lists(
        st.tuples(st.integers(0, DAYS - 1), st.integers(0, 23), st.integers(5, 400)), max_size=30
    ).map(lambda xs: tuple(sorted(xs))),
)
outages = st.lists(st.tuples(st.integers(0, DAYS - 1), st.integers(1, 45)), max_size=3)


def write_customers(path: Path, persons: list[Person]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["external_id", "email", "customer_since", "birthday", "timezone", "tags"])
        for n, p in enumerate(persons):
            birthday = p.birthday.isoformat() if p.birthday else ""
            tags = "staff" if p.staff else ""
            out.writerow([f"P{n}", f"p{n}@example.com", p.since.isoformat(), birthday, p.zone, tags])


def write_orders(path: Path, orders: list[tuple[int, datetime, int, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["external_id", "kind", "occurred_at", "amount", "reference"])
        for n, moment, amount, reference in orders:
            out.writerow([f"P{n}", "order", moment.isoformat(), f"{amount}.00", reference])


def marked(month: int, day: int, year: int) -> date:
    if (month, day) == (2, 29) and not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)):
        return date(year, 2, 28)
    return date(year, month, day)


def expected_occasions(campaign: Campaign, p: Person, orders: list[tuple[datetime, int]]) -> dict[str, date]:
    """The oracle: key → due date, straight from the rules in SPEC §4 (not from mailer.planning.occasions)."""
    zone = ZoneInfo(p.zone)
    local = [(moment.astimezone(zone).date(), amount) for moment, amount in orders]
    found: dict[str, date] = {}
    years = range(START.year, START.year + 2)
    if campaign.occasion == "anniversary":
        for year in years:
            if year > p.since.year and (not campaign.years or year - p.since.year in campaign.years):
                found[f"anniversary:{year}"] = marked(p.since.month, p.since.day, year)
    elif campaign.occasion == "birthday" and p.birthday:
        for year in years:
            found[f"birthday:{year}"] = marked(p.birthday.month, p.birthday.day, year)
    elif campaign.occasion == "follow_up":
        for n, (day, _amount) in enumerate(local):
            found[f"follow_up:#{n}"] = day + timedelta(days=campaign.after_days[0])
    elif campaign.occasion == "milestone":
        running = Decimal(0)
        for day, amount in local:
            before = running
            running += 1 if campaign.metric == "order_count" else amount
            for threshold in campaign.thresholds:
                if before < Decimal(str(threshold)) <= running:
                    found[f"milestone:{campaign.metric}:{threshold:g}"] = day
    elif campaign.occasion == "silence":
        starts = [p.since, *[day for day, _ in local]]
        for start, following in zip(starts, [*starts[1:], None], strict=True):
            for step in campaign.after_days:
                due = start + timedelta(days=step)
                if following is None or due < following:
                    found[f"silence:{start.isoformat()}:{step}"] = due
    return found


def in_segment(campaign: Campaign, p: Person) -> bool:
    tags = {"staff"} if p.staff else set()
    return (not campaign.tags_any or bool(tags & campaign.tags_any)) and not tags & campaign.tags_none


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    persons=st.lists(people, min_size=1, max_size=5),
    gaps=outages,
    hours=st.lists(st.sampled_from(PASS_HOURS), min_size=DAYS, max_size=DAYS),
    restarts=st.sets(st.integers(0, DAYS - 1), max_size=20),
)
def test_a_year_of_passes_sends_each_occasion_once_logs_every_other_and_keeps_the_cap(
    persons: list[Person], gaps: list[tuple[int, int]], hours: list[int], restarts: set[int]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = init_project(Path(tmp) / "proj", START, customers=1)
        settings_ = load_settings(config)
        engine = store.make_engine(settings_.store.url)
        store.create_schema(engine)
        write_customers(Path(tmp) / "customers.csv", persons)
        import_customers(engine, Path(tmp) / "customers.csv")
        down = {start + i for start, length in gaps for i in range(length)}
        inbox = Inbox()
        orders_by_day: dict[int, list[tuple[int, datetime, int, str]]] = {}
        for n, p in enumerate(persons):
            for k, (offset, hour, amount) in enumerate(p.orders):
                midnight = datetime.combine(START + timedelta(days=offset), datetime.min.time(), UTC)
                moment = midnight + timedelta(hours=hour)
                orders_by_day.setdefault(offset, []).append((n, moment, amount, f"O{n}-{k}"))
        pending: list[tuple[int, datetime, int, str]] = []
        for offset in range(DAYS):
            day = START + timedelta(days=offset)
            instant = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=hours[offset], minutes=5)
            # Orders reach the store once they happened and the next pass imports them (late after an outage).
            pending += [o for o in orders_by_day.get(offset, []) if o[1] <= instant]
            later = [o for o in orders_by_day.get(offset, []) if o[1] > instant]
            if offset in down:
                orders_by_day.setdefault(offset + 1, []).extend(later)
                continue
            if pending:
                write_orders(Path(tmp) / "orders.csv", pending)
                import_interactions(engine, Path(tmp) / "orders.csv", now=instant)  # the simulated clock
                pending = []
            orders_by_day.setdefault(offset + 1, []).extend(later)
            run_pass(engine, settings_, PassClock.at(instant), inbox)
            if offset in restarts:  # a restarted daemon runs the pass again the same hour
                run_pass(engine, settings_, PassClock.at(instant + timedelta(minutes=7)), inbox)
        passes = [offset for offset in range(DAYS) if offset not in down]
        # mailer answers for occasions from its first pass, less the catch-up days: before it ever ran it was not
        # "down", it did not exist yet (a new install does not log a year of history as expired).
        first_pass = START + timedelta(days=passes[0]) if passes else START + timedelta(days=DAYS)
        check_properties(engine, settings_, persons, inbox, first_pass - timedelta(days=settings_.policy.catch_up_days))
        engine.dispose()


def check_properties(
    engine: Engine, settings_: Settings, persons: list[Person], inbox: Inbox, responsible_from: date
) -> None:
    with Session(engine) as session:
        rows = session.execute(select(SendLog)).scalars().all()
        ids = {c.external_id: c.id for c in session.execute(select(Customer)).scalars()}
        in_order = select(Interaction).order_by(Interaction.occurred_at, Interaction.id)
        interactions = session.execute(in_order).scalars().all()
        mark = session.get(PlanMark, PLAN_MARK)

    # (1) No occasion is sent twice: one message per sent row, one sent row per key.
    sent = [r for r in rows if r.status == SendStatus.SENT]
    assert len(inbox.messages) == len(sent)
    assert len({m["X-Mailer-Occasion"] for m in inbox.messages}) == len(inbox.messages)
    assert not [k for k, n in Counter((r.customer_id, r.campaign, r.occasion_key) for r in rows).items() if n > 1]

    # (2) Every occasion that fell due in the year was sent or has a logged reason.
    logged = {(r.customer_id, r.campaign, r.occasion_key): r for r in rows}
    # Decided for good: every pass logs what fell due (so only a pass can: one due in an outage that lasts
    # to the end is not yet overdue), and a deferral stays open until its catch-up is over in every zone,
    # when settle expires it: due before the plan mark less the catch-up days.
    settled_before = (mark.planned_through if mark else START) - timedelta(days=settings_.policy.catch_up_days)
    for n, p in enumerate(persons):
        cid = ids[f"P{n}"]
        mine = [i for i in interactions if i.customer_id == cid]
        orders = [(i.occurred_at, i.amount or Decimal(0)) for i in mine]
        for campaign in settings_.campaigns:
            if not in_segment(campaign, p):
                continue
            for key, due in expected_occasions(campaign, p, orders).items():
                if key.startswith("follow_up:#"):
                    key = f"follow_up:{mine[int(key[11:])].id}"
                if not max(START, responsible_from) <= due < settled_before:
                    continue
                row = logged.get((cid, campaign.name, key))
                assert row is not None, f"{campaign.name} {key} due {due} for P{n} ({p.zone}) was never logged"
                assert row.status in (SendStatus.SENT, SendStatus.SKIPPED), (key, row.status, row.reason)
                assert row.reason

    # (3) No customer got two emails within the frequency cap: calendar days in the customer's own zone.
    cap = timedelta(days=settings_.policy.min_days_between)
    zone_of = {ids[f"P{n}"]: ZoneInfo(p.zone) for n, p in enumerate(persons)}
    by_customer: dict[int, list[date]] = {}
    for r in sent:
        assert r.sent_at is not None
        by_customer.setdefault(r.customer_id, []).append(r.sent_at.astimezone(zone_of[r.customer_id]).date())
    for days in by_customer.values():
        days.sort()
        assert all(later - earlier >= cap for earlier, later in itertools.pairwise(days))
