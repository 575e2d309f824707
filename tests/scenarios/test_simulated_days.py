"""Passes that stand for a day tell the truth about that day: `run --date`, `plan` and `simulate` agree.

Every time rule of a `--date D` pass is applied as of D, and what it records
for the frequency cap (the day a customer counts as emailed) is in the same
time, so consecutive `--date` passes behave as the daemon would on those days.
"""

from __future__ import annotations

import hashlib
import itertools
import tempfile
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from click.testing import CliRunner
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer import store
from mailer.cli import cli
from mailer.config import Settings, load_settings
from mailer.contacts.importer import import_customers, import_interactions
from mailer.delivery.report import PassReport
from mailer.delivery.transport import MaildirTransport
from mailer.planning.clock import PassClock
from mailer.planning.forecast import forecast
from mailer.planning.occasions import marked_on
from mailer.planning.policy import Verdict
from mailer.service.passes import run_pass
from mailer.service.project import fill_sample_pools, init_project
from mailer.service.simulate import simulate
from mailer.store.tables import Customer, SendLog
from tests.scenarios.test_planning_properties import Person, people, write_customers, write_orders
from tests.support.factories import add_customer

DATED = ["customer-anniversary", "birthday"]
EVERY_DAY = (0, 1, 2, 3, 4, 5, 6)


def dated_settings(settings: Settings) -> Settings:
    """Anniversaries of every year and birthdays, a 7-day cap, 3 days of catch-up, every day a sending day."""
    campaigns = tuple(replace(c, years=()) if c.name == "customer-anniversary" else c for c in settings.campaigns)
    policy = replace(settings.policy, min_days_between=7, catch_up_days=3, weekdays=EVERY_DAY)
    return replace(settings, campaigns=campaigns, policy=policy)


# (zone, customer since, birthday): occasions on Feb 29 (marked Feb 28 in common years) and 3 days from
# another one, around DST changes (New York: Mar 14 2027, Mar 12 2028; London: Mar 28 and Oct 31 2027),
# and at both ends of the clock (UTC+14 and UTC-11).
PEOPLE = [
    ("Pacific/Kiritimati", date(2020, 2, 29), date(1990, 3, 3)),
    ("Pacific/Pago_Pago", date(2020, 2, 26), date(1988, 2, 29)),
    ("America/New_York", date(2019, 3, 11), date(1975, 3, 14)),
    ("America/New_York", date(2018, 3, 12), date(1980, 3, 9)),
    ("Europe/London", date(2016, 3, 26), date(1992, 3, 29)),
    ("Europe/London", date(2021, 10, 29), date(1970, 11, 1)),
    ("Australia/Sydney", date(2017, 4, 1), date(1985, 4, 4)),
    ("Pacific/Kiritimati", date(2015, 12, 30), date(1999, 12, 27)),
    ("Pacific/Pago_Pago", date(2012, 12, 31), date(2001, 1, 3)),
]


def test_two_years_of_date_passes_send_every_anniversary_and_birthday_once_delayed_only_by_the_cap(
    engine: Engine, settings: Settings
) -> None:
    settings = dated_settings(settings)
    ids = {add_customer(engine, f"P{n}", since=since, birthday=born, timezone=zone): n
           for n, (zone, since, born) in enumerate(PEOPLE)}
    # From a month before 2027 to a week after 2028: what the cap holds at the end of 2028 goes out too.
    first = date(2026, 12, 1)
    days = (date(2029, 1, 8) - first).days
    sent_on: dict[int, date] = {}  # send-log id → the day whose pass delivered it
    transport = MaildirTransport(settings.transport.path)
    for offset in range(days):
        day = first + timedelta(days=offset)
        report = run_pass(engine, settings, PassClock.on(day), transport, campaign_names=DATED)
        sent_on.update((row_id, day) for row_id, _reply in report.deliveries)

    with Session(engine) as session:
        every = session.execute(select(SendLog)).scalars().all()
    rows = [r for r in every if r.due_date.year in (2027, 2028)]
    assert [r for r in rows if r.status != "sent"] == []  # nothing expired, nothing left waiting
    assert {r.id for r in rows} <= set(sent_on)
    by_customer: dict[int, list[tuple[date, SendLog]]] = {}
    for row in every:  # with the occasions of late 2026 and early 2029 around them, for the cap
        assert row.id is not None
        if row.id in sent_on:
            by_customer.setdefault(row.customer_id, []).append((sent_on[row.id], row))
    for customer_id, n in ids.items():
        zone, since, born = PEOPLE[n]
        expected = {f"anniversary:{y}": marked_on(since.month, since.day, y) for y in (2027, 2028)}
        expected |= {f"birthday:{y}": marked_on(born.month, born.day, y) for y in (2027, 2028)}
        mine = sorted(by_customer[customer_id], key=lambda pair: pair[0])
        assert {r.occasion_key: r.due_date for _day, r in mine if r.due_date.year in (2027, 2028)} == expected, zone
        for (earlier, _), (later, row) in itertools.pairwise(mine):
            assert (later - earlier).days >= 7, (zone, row.occasion_key)  # the cap holds, in pass days
        for index, (day, row) in enumerate(mine):
            # Sent on its date, or on the first day the cap allowed after the email before it.
            assert day == row.due_date or (index and day == mine[index - 1][0] + timedelta(days=7)), (
                zone, row.occasion_key, row.due_date, day)


def test_a_date_pass_counts_its_customers_as_emailed_at_noon_of_that_day_in_their_zone(
    engine: Engine, settings: Settings
) -> None:
    settings = dated_settings(settings)
    day = date(2027, 3, 3)
    customer_id = add_customer(engine, "EAST", since=date(2020, 3, 3), timezone="Pacific/Kiritimati")
    run_pass(engine, settings, PassClock.on(day), MaildirTransport(settings.transport.path), campaign_names=DATED)
    with Session(engine) as session:
        customer = session.get(Customer, customer_id)
        row = session.execute(select(SendLog)).scalar_one()
    assert customer is not None and customer.last_emailed_at is not None
    zone = ZoneInfo("Pacific/Kiritimati")
    assert customer.last_emailed_at.astimezone(zone) == datetime.combine(day, time(12), zone)
    # What describes the real world stays real: the SMTP transaction happened now, not in 2027.
    assert row.sent_at is not None and row.sent_at < datetime(2027, 1, 1, tzinfo=UTC)


def test_a_dry_run_for_a_future_date_defers_by_the_cap_only_where_the_cap_holds_on_that_date(
    project: Path, engine: Engine, settings: Settings
) -> None:
    today = date.today()
    future = today + timedelta(days=3)
    emailed = {}  # external id → (zone, local day of the last email)
    for zone in ("UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago"):
        for days_ago in (2, 3, 4, 5):
            last = today - timedelta(days=days_ago)
            external_id = f"{zone.split('/')[-1]}-{days_ago}".upper()
            add_customer(engine, external_id, since=future.replace(year=future.year - 2), timezone=zone,
                         last_emailed_at=datetime.combine(last, time(12), ZoneInfo(zone)).astimezone(UTC))
            emailed[external_id] = last
    result = CliRunner().invoke(
        cli, ["--config", str(project), "run", "--dry-run", "--date", future.isoformat(),
              "--campaign", "customer-anniversary", "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    lines = [line.split(",") for line in result.output.splitlines()[1:] if line and not line.startswith("dry run")]
    decisions = {fields[0]: (fields[5], fields[6]) for fields in lines}
    assert set(decisions) == set(emailed)
    for external_id, last in emailed.items():
        held = (future - last).days < settings.policy.min_days_between
        decision, reason = decisions[external_id]
        if future.weekday() not in settings.policy.weekdays:
            assert reason.startswith("frequency cap" if held else "not a sending day"), (external_id, reason)
        elif held:
            assert (decision, reason) == ("would defer", f"frequency cap: last email {last}"), external_id
        else:
            assert (decision, reason) == ("would send", "due"), external_id


# ---- plan = simulate = consecutive `run --date` -------------------------------------------------------------


def per_day(report: PassReport) -> Counter[tuple[str, str]]:
    """(campaign, send|defer|skip) counts of one real pass, expiries included."""
    counts: Counter[tuple[str, str]] = Counter(
        (item.decision.occasion.campaign, str(item.decision.verdict)) for item in report.planned
    )
    for campaign, expired in report.expired.items():
        counts[(campaign, "skip")] += expired
    return counts


def plan_rows(engine: Engine, settings: Settings, start: date, days: int) -> dict[date, Counter[tuple[str, str]]]:
    with Session(engine) as session:
        rows = forecast(session, settings, start, days, settings.campaigns)
    found: dict[date, Counter[tuple[str, str]]] = {}
    for row in rows:
        for verdict, count in (("send", row.send), ("defer", row.defer), ("skip", row.skip)):
            if count:
                found.setdefault(row.day, Counter())[(row.campaign, verdict)] += count
    return found


def run_days(
    engine: Engine, settings: Settings, start: date, days: int, reasons: Counter[str] | None = None
) -> dict[date, Counter[tuple[str, str]]]:
    """Consecutive `mailer run --date` passes; ``reasons`` counts why each decision was taken."""
    found: dict[date, Counter[tuple[str, str]]] = {}
    transport = MaildirTransport(settings.transport.path)
    for offset in range(days):
        day = start + timedelta(days=offset)
        report = run_pass(engine, settings, PassClock.on(day), transport)
        if reasons is not None:
            reasons.update(item.decision.reason.split(":")[0] for item in report.planned)
        counts = +per_day(report)
        if counts:
            found[day] = counts
    return found


def sample_store(project: Path, engine: Engine) -> None:
    """The sample project's customers and orders, and a few whose occasions overlap or meet the cap."""
    data = project.parent / "data"
    import_customers(engine, data / "customers.csv")
    import_interactions(engine, data / "interactions.csv")
    add_customer(engine, "SAME-DAY", since=date(2020, 12, 1), birthday=date(1990, 12, 1), timezone="Pacific/Kiritimati")
    add_customer(engine, "THREE-APART", since=date(2019, 12, 2), birthday=date(1985, 12, 5),
                 timezone="Pacific/Pago_Pago")
    add_customer(engine, "RECENT", since=date(2018, 11, 26), birthday=date(1977, 12, 3), timezone="America/New_York",
                 last_emailed_at=datetime(2026, 11, 21, 15, tzinfo=UTC))
    add_customer(engine, "LEAP", since=date(2016, 2, 29), birthday=date(1996, 2, 29), timezone="Europe/London")


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_plan_equals_simulate_equals_consecutive_date_passes_day_by_day_over_60_days(
    project: Path, engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    sample_store(project, engine)
    start, days = date(2026, 11, 20), 60
    planned = plan_rows(engine, settings, start, days)

    store_file = Path(settings.store.url.removeprefix("sqlite:///"))
    engine.dispose()
    before = file_digest(store_file)
    simulated_days = simulate(settings, start, days, tmp_path / "simulated")
    assert file_digest(store_file) == before  # the real store is untouched
    simulated: dict[date, Counter[tuple[str, str]]] = {}
    for result in simulated_days:
        counts: Counter[tuple[str, str]] = Counter()
        for verdict, per_campaign in (("send", result.queued), ("defer", result.deferred), ("skip", result.skipped)):
            for campaign, count in per_campaign.items():
                counts[(campaign, verdict)] += count
        if +counts:
            simulated[result.day] = +counts
        assert result.sent == result.queued  # maildir takes everything, and the day's own messages go that day

    reasons: Counter[str] = Counter()
    passed = run_days(engine, settings, start, days, reasons)
    assert sum(c for counts in passed.values() for (_, v), c in counts.items() if v == "send") > 40
    assert reasons["frequency cap"] and reasons["one email per pass"] and reasons["not a sending day (Sun)"]
    for day in sorted(set(planned) | set(simulated) | set(passed)):
        assert planned.get(day) == simulated.get(day) == passed.get(day), day
    sent_files = len(list((tmp_path / "simulated" / "new").iterdir()))
    assert sent_files == sum(c for counts in passed.values() for (_, v), c in counts.items() if v == "send")


def test_simulate_prints_what_went_out_per_day_and_leaves_the_store_as_it_was(
    project: Path, engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    sample_store(project, engine)
    store_file = Path(settings.store.url.removeprefix("sqlite:///"))
    engine.dispose()
    before = file_digest(store_file)
    out = tmp_path / "year"
    result = CliRunner().invoke(
        cli, ["--config", str(project), "simulate", "--from", "2026-11-23", "--days", "10", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert file_digest(store_file) == before
    total = next(line for line in result.output.splitlines() if line.startswith("total"))
    sent = int(total.split()[3])
    assert sent == len(list((out / "new").iterdir())) > 0
    assert "the store was not changed" in result.output


def test_simulate_refuses_a_store_that_is_not_there_with_one_line(tmp_path: Path, project: Path) -> None:
    config = project.read_text().replace('url = "sqlite:///', f'url = "sqlite:///{tmp_path}/missing/')
    other = tmp_path / "mailer.toml"
    other.write_text(config)
    result = CliRunner().invoke(cli, ["--config", str(other), "simulate", "--days", "1"])
    assert result.exit_code == 2
    assert "error:" in result.output and "Traceback" not in result.output


def test_store_copy_of_postgresql_runs_the_same_simulation(settings: Settings, pg_url: str, tmp_path: Path) -> None:
    pg_settings = replace(settings, store=replace(settings.store, url=pg_url))
    engine = store.make_engine(pg_url)
    store.create_schema(engine)
    try:
        add_customer(engine, "ANN", since=date(2020, 11, 23))
        add_customer(engine, "BOB", since=date(2020, 11, 24), birthday=date(1990, 11, 27))
        days = simulate(pg_settings, date(2026, 11, 23), 7, tmp_path / "out")
        with Session(engine) as session:
            assert session.execute(select(SendLog)).first() is None  # nothing written to the real store
    finally:
        engine.dispose()
    assert [(d.day.day, sum(d.sent.values())) for d in days if d.sent] == [(23, 1), (24, 1)]
    assert sum(days[4].deferred.values()) == 1  # BOB's birthday, three days after his anniversary: the cap


# ---- the README's date rules ------------------------------------------------------------------------------


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_date_examples() -> list[tuple[str, str, str]]:
    """(zone, pass option, first word of the outcome) for each row of the README's table of date rules."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Dates: Feb 29"):]
    found = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1].startswith("`--"):
            found.append((cells[0].split()[0], cells[1].strip("`"), cells[2].split()[0]))
    return found


def test_the_readme_examples_of_feb_29_and_time_zones_are_what_a_pass_does(engine: Engine, settings: Settings) -> None:
    settings = dated_settings(settings)
    examples = readme_date_examples()
    assert len(examples) >= 6
    verdicts = {"sent": Verdict.SEND, "deferred": Verdict.DEFER, "skipped": Verdict.SKIP, "nothing": None}
    for n, (zone, option, outcome) in enumerate(examples):
        customer_id = add_customer(engine, f"README{n}", since=date(2015, 6, 1), timezone=zone,
                                   birthday_month=2, birthday_day=29, birthday_md=229)
        flag, value = option.split(" ", 1)
        clock = (PassClock.on(date.fromisoformat(value)) if flag == "--date"
                 else PassClock.at(datetime.fromisoformat(value.replace("Z", "+00:00"))))
        report = run_pass(engine, settings, clock, MaildirTransport(settings.transport.path),
                          campaign_names=["birthday"], dry_run=True)
        mine = [p.decision.verdict for p in report.planned if p.customer.id == customer_id]
        assert mine == ([] if verdicts[outcome] is None else [verdicts[outcome]]), (zone, option, outcome)


# ---- reasons that keep their history ------------------------------------------------------------------------


def test_an_expired_deferral_says_why_it_was_deferred_and_the_customer_log_reads_in_order(
    project: Path, engine: Engine, settings: Settings
) -> None:
    settings = dated_settings(settings)
    add_customer(engine, "HELD", since=date(2020, 3, 3), birthday=date(1990, 3, 10), timezone="UTC",
                 last_emailed_at=datetime(2027, 3, 1, 12, tzinfo=UTC))
    transport = MaildirTransport(settings.transport.path)
    run_pass(engine, settings, PassClock.on(date(2027, 3, 3)), transport, campaign_names=DATED)
    # Down from Mar 4 to Mar 19: on Mar 20 the anniversary is 12 days past the cap's end, the birthday 10 days late.
    run_pass(engine, settings, PassClock.on(date(2027, 3, 20)), transport, campaign_names=DATED)
    with Session(engine) as session:
        reasons = {r.occasion_key: (r.status, r.reason) for r in session.execute(select(SendLog)).scalars()}
    assert reasons == {
        "anniversary:2027": ("skipped", "expired after 17 days deferred: frequency cap: last email 2027-03-01"),
        "birthday:2027": ("skipped", "expired: due 2027-03-10, catch-up is 3 days"),
    }
    result = CliRunner().invoke(cli, ["--config", str(project), "log", "--customer", "HELD", "--format", "csv"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("due,id,")
    assert [line.split(",")[0] for line in lines[1:]] == ["2027-03-03", "2027-03-10"]


def test_a_deferral_no_pass_decides_again_expires_with_its_reason_once_the_cap_could_not_hold_it(
    engine: Engine, settings: Settings
) -> None:
    settings = dated_settings(settings)
    add_customer(engine, "LEFT", since=date(2020, 3, 3), timezone="UTC",
                 last_emailed_at=datetime(2027, 3, 1, 12, tzinfo=UTC))
    transport = MaildirTransport(settings.transport.path)
    run_pass(engine, settings, PassClock.on(date(2027, 3, 3)), transport, campaign_names=DATED)
    # The anniversary campaign is switched off: only settle can close the deferral, after catch-up and the cap.
    birthdays_only = ["birthday"]
    expired = [
        (day, run_pass(engine, settings, PassClock.on(day), transport, campaign_names=birthdays_only).expired.total())
        for day in (date(2027, 3, 3) + timedelta(days=n) for n in range(1, 12))
    ]
    assert [day for day, count in expired if count] == [date(2027, 3, 14)]  # due + 3 days of catch-up + 7 of cap
    with Session(engine) as session:
        row = session.execute(select(SendLog)).scalar_one()
    assert row.status == "skipped"
    assert row.reason == "expired after 11 days deferred: frequency cap: last email 2027-03-01"


def near(day: date, shift: int, year: int) -> date:
    """The month and day ``shift`` days from ``day``, in ``year`` (Feb 29 becomes Feb 28 in a common year)."""
    moved = day + timedelta(days=shift)
    return marked_on(moved.month, moved.day, year)


# ---- the forecast is the passes, for any store and span --------------------------------------------------------


@hypothesis_settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    persons=st.lists(people, min_size=1, max_size=6),
    first=st.dates(date(2026, 1, 1), date(2026, 12, 31)),
    days=st.integers(1, 21),
    cap=st.sampled_from([0, 3, 7]),
    recently=st.lists(st.integers(0, 10), max_size=6),
    shifts=st.lists(st.tuples(st.integers(-5, 25), st.integers(-5, 25)), min_size=6, max_size=6),
)
def test_plan_equals_consecutive_date_passes_for_random_stores_and_spans(
    persons: list[Person], first: date, days: int, cap: int, recently: list[int], shifts: list[tuple[int, int]]
) -> None:
    # Occasions near the span, overlapping often: anniversaries and birthdays moved to within days of it,
    # orders (milestones, follow-ups, silence) in the weeks around it.
    persons = [
        replace(p, since=near(first, a, p.since.year), birthday=p.birthday and near(first, b, p.birthday.year),
                orders=tuple(((first - date(2026, 1, 1)).days + offset % 50 - 30, hour, amount)
                             for offset, hour, amount in p.orders))
        for p, (a, b) in zip(persons, shifts, strict=False)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        config = init_project(Path(tmp) / "proj", first, customers=1)
        settings = load_settings(config)
        settings = replace(settings, policy=replace(settings.policy, min_days_between=cap))
        engine = store.make_engine(settings.store.url)
        store.create_schema(engine)
        write_customers(Path(tmp) / "customers.csv", persons)
        # The store is filled as of a moment after every generated date, not as of the real clock.
        imported_at = datetime.combine(first + timedelta(days=400), time(), UTC)
        # The fifth anniversary gives a pooled code: stocked, as `mailer init` does. (An empty pool defers
        # the email at recording, which the forecast reports as the gift's need, not as a deferral.)
        fill_sample_pools(engine, settings, config.parent / "data", first, imported_at)
        import_customers(engine, Path(tmp) / "customers.csv", now=imported_at)
        orders = [
            (n, datetime.combine(date(2026, 1, 1) + timedelta(days=offset), time(hour), UTC), amount, f"O{n}-{k}")
            for n, p in enumerate(persons) for k, (offset, hour, amount) in enumerate(p.orders)
        ]
        if orders:
            write_orders(Path(tmp) / "orders.csv", orders)
            import_interactions(engine, Path(tmp) / "orders.csv", now=imported_at)
        with Session(engine) as session:  # some customers were emailed in the days before the span
            for n, days_before in enumerate(recently[: len(persons)]):
                customer = session.execute(select(Customer).where(Customer.external_id == f"P{n}")).scalar_one()
                customer.last_emailed_at = datetime.combine(first - timedelta(days=days_before), time(15), UTC)
                session.add(customer)
            session.commit()
        planned = plan_rows(engine, settings, first, days)
        passed = run_days(engine, settings, first, days)
        engine.dispose()
    assert planned == passed
