"""CSV import: every row validated, all or nothing by default, bad rows listed as FILE:LINE: column: problem."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from mailer.cli import cli
from mailer.config import Settings
from mailer.contacts.csvfile import ImportFailed
from mailer.contacts.importer import import_customers, import_interactions
from mailer.delivery.transport import MaildirTransport
from mailer.planning.clock import PassClock
from mailer.service.passes import run_pass
from mailer.store.tables import Customer, Interaction, SendLog
from tests.support.factories import add_customer

HEADER = "external_id,email,first_name,last_name,customer_since,birthday,timezone,tags,owner_name,owner_email"
GOOD = [
    "A1,ada@example.com,Ada,Lovelace,2019-03-04,1990-12-10,Europe/London,vip;beta,Hannah Lee,hannah@shop.example",
    "A2,zoe@example.com,Zoë,,2020-02-29,--02-29,Pacific/Kiritimati,,,",
    "A3,wang@example.com,王芳,,2021-07-01,,,staff,,",
]


def write(tmp_path: Path, name: str, lines: list[str], encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding) if lines else b"")
    return path


def count(engine: Engine, model: type) -> int:
    with Session(engine) as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def customer(engine: Engine, external_id: str) -> Customer:
    with Session(engine) as session:
        return session.execute(select(Customer).where(Customer.external_id == external_id)).scalar_one()


def test_good_customers_import_with_every_documented_column(engine: Engine, tmp_path: Path) -> None:
    report = import_customers(engine, write(tmp_path, "c.csv", [HEADER, *GOOD]))
    assert (report.rows, report.inserted, report.updated) == (3, 3, 0)
    ada = customer(engine, "A1")
    assert ada.tags == ["beta", "vip"]
    assert (ada.birthday_month, ada.birthday_day, ada.birthday_year) == (12, 10, 1990)
    assert ada.owner_email == "hannah@shop.example"
    zoe = customer(engine, "A2")
    assert (zoe.first_name, zoe.birthday_year, zoe.birthday_md, zoe.since_md) == ("Zoë", None, 229, 229)
    assert customer(engine, "A3").timezone is None  # the sender's default zone applies


def test_reimporting_upserts_by_external_id_and_keeps_columns_the_file_lacks(engine: Engine, tmp_path: Path) -> None:
    import_customers(engine, write(tmp_path, "c.csv", [HEADER, *GOOD]))
    report = import_customers(
        engine, write(tmp_path, "d.csv", ["external_id,email,customer_since", "A1,ada@new.example,2019-03-04"])
    )
    assert (report.inserted, report.updated) == (0, 1)
    ada = customer(engine, "A1")
    assert ada.email == "ada@new.example"
    assert ada.first_name == "Ada" and ada.tags == ["beta", "vip"]
    assert count(engine, Customer) == 3


def test_unknown_columns_become_custom_attributes(engine: Engine, tmp_path: Path) -> None:
    import_customers(
        engine, write(tmp_path, "c.csv", ["external_id,email,customer_since,plan", "B1,b@example.com,2020-01-01,gold"])
    )
    assert customer(engine, "B1").attributes == {"plan": "gold"}


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("X1,not-an-email,2020-01-01,,,", "c.csv:3: email: not a valid email address: 'not-an-email'"),
        ("X1,x@example.com,2020-13-01,,,", "c.csv:3: customer_since: expected a date YYYY-MM-DD, got '2020-13-01'"),
        ("X1,x@example.com,01/02/2020,,,", "c.csv:3: customer_since: expected a date YYYY-MM-DD, got '01/02/2020'"),
        ("X1,x@example.com,2020-01-01,--02-30,,", "c.csv:3: birthday: expected YYYY-MM-DD or --MM-DD, got '--02-30'"),
        ("X1,x@example.com,2020-01-01,,Europe/Atlantis,", "c.csv:3: timezone: unknown time zone 'Europe/Atlantis'"),
        ("X1,,2020-01-01,,,", "c.csv:3: email: is required"),
        ("X1,x@example.com,2020-01-01,,,bad owner", "c.csv:3: owner_email: not a valid email address"),
        ("X1,x@example.com,2020-01-01,,", "c.csv:3: owner_email: missing: the row has too few fields"),
        ("A1,x@example.com,2020-01-01,,,", "c.csv:3: external_id: duplicate of line 2"),
        ("X1,x@example.com,2999-01-01,,,", "c.csv:3: customer_since: in the future: '2999-01-01'"),
        ("X1,a@Example.COM,2020-01-01,,,", "c.csv:3: email: same mailbox as line 2 ('a@example.com')"),
    ],
)
def test_one_bad_row_imports_nothing_and_names_file_line_and_column(
    engine: Engine, tmp_path: Path, row: str, expected: str
) -> None:
    path = write(
        tmp_path,
        "c.csv",
        ["external_id,email,customer_since,birthday,timezone,owner_email", "A1,a@example.com,2020-01-01,,,", row],
    )
    with pytest.raises(ImportFailed) as caught:
        import_customers(engine, path)
    [error] = caught.value.errors
    assert str(error).replace(str(tmp_path) + "/", "").startswith(expected)
    assert count(engine, Customer) == 0


def test_every_bad_row_is_listed_not_just_the_first(engine: Engine, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "c.csv",
        ["external_id,email,customer_since", "A,bad,2020-01-01", "B,b@example.com,x", "C,c@example.com,2020-01-01"],
    )
    with pytest.raises(ImportFailed) as caught:
        import_customers(engine, path)
    assert [(e.line, e.column) for e in caught.value.errors] == [(2, "email"), (3, "customer_since")]


@pytest.mark.parametrize(
    ("lines", "encoding", "expected"),
    [
        ([], "utf-8", "c.csv:1: header: the file is empty"),
        (["external_id,customer_since", "A,2020-01-01"], "utf-8", "c.csv:1: email: missing column"),
        ([HEADER, "A9,ç@example.com,Françoise,,2020-01-01,,,,,"], "latin-1", "c.csv:2: file: not UTF-8 text"),
    ],
)
def test_broken_files_are_refused_whole(
    engine: Engine, tmp_path: Path, lines: list[str], encoding: str, expected: str
) -> None:
    with pytest.raises(ImportFailed) as caught:
        import_customers(engine, write(tmp_path, "c.csv", lines, encoding))
    assert str(caught.value).replace(str(tmp_path) + "/", "").startswith(expected)
    assert count(engine, Customer) == 0


def test_skip_invalid_imports_the_good_rows_and_writes_the_rejected_ones_beside_the_file(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(
        tmp_path, "c.csv", ["external_id,email,customer_since", "A,a@example.com,2020-01-01", "B,broken,2020-01-01"]
    )
    report = import_customers(engine, path, skip_invalid=True)
    assert (report.inserted, len(report.rejected)) == (1, 1)
    rejected = (tmp_path / "c.csv.rejected.csv").read_text(encoding="utf-8").splitlines()
    assert rejected[0] == "external_id,email,customer_since,line,reason"
    assert rejected[1].startswith("B,broken,2020-01-01,3,email: not a valid email address")
    assert count(engine, Customer) == 1


def test_dry_run_validates_and_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    report = import_customers(engine, write(tmp_path, "c.csv", [HEADER, *GOOD]), dry_run=True)
    assert (report.inserted, report.dry_run) == (3, True)
    assert count(engine, Customer) == 0


def test_interactions_keep_customer_aggregates_and_reimporting_adds_nothing(engine: Engine, tmp_path: Path) -> None:
    import_customers(engine, write(tmp_path, "c.csv", [HEADER, *GOOD]))
    lines = [
        "external_id,kind,occurred_at,amount,reference",
        "A1,order,2024-05-01,19.90,ORD-1",
        "A1,order,2024-06-01T10:00:00+02:00,5.10,ORD-2",
        "A1,support,2024-07-01T09:00:00,,TCK-1",
        "A2,visit,2024-01-01,,",
    ]
    path = write(tmp_path, "i.csv", lines)
    first = import_interactions(engine, path)
    again = import_interactions(engine, path)
    assert (first.inserted, again.inserted, again.unchanged) == (4, 1, 3)  # the reference-less visit is new each time
    ada = customer(engine, "A1")
    assert (ada.order_count, ada.lifetime_spend, ada.interaction_count) == (2, Decimal("25.00"), 3)
    assert ada.last_interaction_at == datetime(2024, 7, 1, 9, 0, tzinfo=UTC)
    with Session(engine) as session:
        order = session.execute(select(Interaction).where(Interaction.reference == "ORD-2")).scalar_one()
    assert order.occurred_at == datetime(2024, 6, 1, 8, 0, tzinfo=UTC)  # offsets become UTC


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("NOPE,order,2024-01-01,1,R1", "i.csv:2: external_id: no customer with external_id 'NOPE'"),
        ("A1,order,yesterday,1,R1", "i.csv:2: occurred_at: expected an ISO date or date-time, got 'yesterday'"),
        ("A1,order,2024-01-01,12.3.4,R1", "i.csv:2: amount: expected a decimal amount, got '12.3.4'"),
        ("A1,order,2024-01-01,NaN,R1", "i.csv:2: amount: not a usable amount: 'NaN'"),
        ("A1,,2024-01-01,1,R1", "i.csv:2: kind: is required"),
        ("A1,order,2999-01-01T10:00:00,1,R1", "i.csv:2: occurred_at: in the future: '2999-01-01T10:00:00'"),
    ],
)
def test_bad_interactions_import_nothing(engine: Engine, tmp_path: Path, row: str, expected: str) -> None:
    import_customers(engine, write(tmp_path, "c.csv", [HEADER, *GOOD]))
    path = write(tmp_path, "i.csv", ["external_id,kind,occurred_at,amount,reference", row, "A2,order,2024-01-01,3,R2"])
    with pytest.raises(ImportFailed) as caught:
        import_interactions(engine, path)
    assert str(caught.value).replace(str(tmp_path) + "/", "").startswith(expected)
    assert count(engine, Interaction) == 0
    assert customer(engine, "A2").order_count == 0


def test_the_import_command_prints_every_bad_row_and_exits_2(project: Path, tmp_path: Path) -> None:
    path = write(
        tmp_path, "c.csv", ["external_id,email,customer_since", "A,bad,2020-01-01", "B,b@example.com,2020-02-30"]
    )
    result = CliRunner().invoke(cli, ["--config", str(project), "import", "customers", str(path)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {path}:2: email: not a valid email address: 'bad' (An email address must have an @-sign.)",
        f"error: {path}:3: customer_since: expected a date YYYY-MM-DD, got '2020-02-30'",
    ]


def test_the_import_command_is_quiet_without_a_terminal(project: Path) -> None:
    data = project.parent / "data" / "customers.csv"
    result = CliRunner().invoke(cli, ["--config", str(project), "import", "customers", str(data)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "customers.csv: 60 rows, imported 60 new, 0 updated"
    assert result.stderr == ""


def test_sample_customers_and_interactions_import_cleanly(engine: Engine, project: Path) -> None:
    data = project.parent / "data"
    import_customers(engine, data / "customers.csv")
    report = import_interactions(engine, data / "interactions.csv")
    assert report.inserted > 100 and not report.rejected
    assert date(2026, 11, 23)  # sample data is anchored on the fixture's day


# ---- dates after today ------------------------------------------------------------------------

NOW = datetime(2026, 12, 4, 19, 0, tzinfo=UTC)  # already Dec 5 in Kiritimati (UTC+14), still Dec 4 in London


def test_customer_since_is_in_the_future_only_after_today_in_the_customers_own_zone(
    engine: Engine, tmp_path: Path
) -> None:
    lines = [
        "external_id,email,customer_since,timezone",
        "KIRI,kiri@example.com,2026-12-05,Pacific/Kiritimati",
        "LON,lon@example.com,2026-12-05,",
        "TODAY,today@example.com,2026-12-04,",
    ]
    path = write(tmp_path, "c.csv", lines)
    with pytest.raises(ImportFailed) as caught:
        import_customers(engine, path, now=NOW, default_zone="Europe/London")
    assert [str(e) for e in caught.value.errors] == [f"{path}:3: customer_since: in the future: '2026-12-05'"]
    # Where the sender's default zone has reached Dec 5 too, the zone-less customer is fine.
    report = import_customers(engine, path, now=NOW, default_zone="Pacific/Kiritimati")
    assert report.inserted == 3


def test_skip_invalid_rejects_a_future_customer_and_does_not_count_it(engine: Engine, tmp_path: Path) -> None:
    lines = ["external_id,email,customer_since", "A,a@example.com,2020-01-01", "B,b@example.com,2999-01-01"]
    path = write(tmp_path, "c.csv", lines)
    report = import_customers(engine, path, skip_invalid=True)
    assert (report.rows, report.inserted, len(report.rejected)) == (2, 1, 1)
    rejected = (tmp_path / "c.csv.rejected.csv").read_text(encoding="utf-8").splitlines()
    assert rejected[1] == "B,b@example.com,2999-01-01,3,customer_since: in the future: '2999-01-01'"
    assert count(engine, Customer) == 1


def test_an_interaction_after_the_import_instant_is_a_bad_row_a_zoneless_one_may_be_local_time_ahead_of_utc(
    engine: Engine, tmp_path: Path
) -> None:
    import_customers(engine, write(tmp_path, "c.csv", [HEADER, *GOOD]))
    lines = [
        "external_id,kind,occurred_at,amount,reference",
        "A1,order,2026-12-04T21:00:00+02:00,1,ON-TIME",  # 19:00 UTC: now, not later
        "A1,order,2026-12-05T09:00:00,1,TOKYO-LOCAL",  # no zone: a shop east of UTC may write its local time
        "A1,order,2026-12-05T09:00:01,1,TOO-EARLY",  # more than 14 hours ahead even so
        "A1,order,2026-12-04T19:06:00+00:00,1,LATER",  # with a zone: only the clocks' skew is allowed
    ]
    path = write(tmp_path, "i.csv", lines)
    with pytest.raises(ImportFailed) as caught:
        import_interactions(engine, path, now=NOW)
    assert [str(e) for e in caught.value.errors] == [
        f"{path}:4: occurred_at: in the future: '2026-12-05T09:00:01'",
        f"{path}:5: occurred_at: in the future: '2026-12-04T19:06:00+00:00'",
    ]
    assert count(engine, Interaction) == 0


# ---- refunds ------------------------------------------------------------------------------------


def test_a_refund_lowers_lifetime_spend_and_is_not_an_order(engine: Engine, tmp_path: Path) -> None:
    import_customers(engine, write(tmp_path, "c.csv", [HEADER, *GOOD]))
    lines = [
        "external_id,kind,occurred_at,amount,reference",
        "A1,order,2024-05-01,120.00,ORD-1",
        "A1,order,2024-05-09,-45.50,REFUND-1",
    ]
    report = import_interactions(engine, write(tmp_path, "i.csv", lines))
    assert report.inserted == 2
    ada = customer(engine, "A1")
    assert (ada.order_count, ada.lifetime_spend, ada.interaction_count) == (1, Decimal("74.50"), 2)


def spend_orders(path: Path, orders: list[tuple[date, str, str]]) -> Path:
    lines = ["external_id,kind,occurred_at,amount,reference"]
    lines += [f"BIG,order,{day.isoformat()}T10:00:00Z,{amount},{reference}" for day, amount, reference in orders]
    return write(path.parent, path.name, lines)


def test_a_refund_then_a_new_order_over_the_same_spend_threshold_sends_no_second_email(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    """big-spender marks 500, 1000, 2500 of lifetime spend; catch-up is 3 days."""
    add_customer(engine, "BIG", since=date(2020, 1, 1), timezone="UTC")
    transport = MaildirTransport(settings.transport.path)

    def pass_on(day: date) -> list[tuple[str, str]]:
        clock = PassClock.on(day, datetime.combine(day, time(12), UTC))
        run_pass(engine, settings, clock, transport, campaign_names=["big-spender"])
        with Session(engine) as session:
            return [(r.occasion_key, r.status) for r in session.execute(select(SendLog)).scalars()]

    import_interactions(engine, spend_orders(tmp_path / "1.csv", [(date(2026, 9, 1), "600.00", "O1")]))
    assert pass_on(date(2026, 9, 1)) == [("milestone:lifetime_spend:500", "sent")]
    import_interactions(engine, spend_orders(tmp_path / "2.csv", [(date(2026, 9, 10), "-200.00", "R1")]))
    assert customer(engine, "BIG").lifetime_spend == Decimal("400.00")
    pass_on(date(2026, 9, 10))
    pass_on(date(2026, 9, 20))
    # Back over 500 on Sep 25: the refund is before this pass's look-back, so the picker sees a
    # crossing of 500 again; the send log already holds that key, so nobody is mailed.
    import_interactions(engine, spend_orders(tmp_path / "3.csv", [(date(2026, 9, 25), "150.00", "O2")]))
    assert pass_on(date(2026, 9, 25)) == [("milestone:lifetime_spend:500", "sent")]
    assert len(list((settings.transport.path / "new").iterdir())) == 1


# ---- oversized fields ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "line"),
    [
        (["A,a@example.com,2020-01-01", "B,{big},2020-01-01", "C,c@example.com,2020-01-01"], 3),
        (["A,a@example.com,2020-01-01", 'B,"{big}",2020-01-01'], 3),
        (['A,"a@example.com', '{big}",2020-01-01'], 3),  # a quoted field that runs onto a second line
    ],
)
def test_a_field_over_the_csv_limit_is_reported_on_its_own_line(
    engine: Engine, tmp_path: Path, lines: list[str], line: int
) -> None:
    limit = csv.field_size_limit()
    big = "x" * (limit + 1)
    path = write(tmp_path, "c.csv", ["external_id,email,customer_since", *(x.format(big=big) for x in lines)])
    with pytest.raises(ImportFailed) as caught:
        import_customers(engine, path)
    assert str(caught.value) == f"{path}:{line}: file: a field is larger than the limit of {limit} characters"
    assert count(engine, Customer) == 0


# ---- one mailbox, one customer ------------------------------------------------------------------


def test_addresses_are_stored_as_given_with_only_the_domain_lower_cased(engine: Engine, tmp_path: Path) -> None:
    lines = [
        "external_id,email,customer_since,owner_email",
        "ANNA,Anna@XN--BCHER-KVA.Example,2020-01-01,Owner@XN--BCHER-KVA.example",
        "BEA,bea@BÜCHER.example,2020-01-01,",
        "JUERGEN,Jürgen@Example.org,2020-01-01,",
    ]
    import_customers(engine, write(tmp_path, "c.csv", lines))
    assert customer(engine, "ANNA").email == "Anna@xn--bcher-kva.example"  # stays ASCII: no SMTPUTF8 needed
    assert customer(engine, "ANNA").owner_email == "Owner@xn--bcher-kva.example"
    assert customer(engine, "BEA").email == "bea@bücher.example"
    assert customer(engine, "JUERGEN").email == "Jürgen@example.org"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("anna@bücher.example", "anna@xn--bcher-kva.example"),
        ("anna@xn--bcher-kva.example", "anna@BÜCHER.example"),
        ("anna@XN--BCHER-KVA.EXAMPLE", "anna@xn--bcher-kva.example"),
        ("anna@example.com", "anna@example.com"),
    ],
)
def test_two_customers_with_one_mailbox_are_a_bad_row_naming_both_lines(
    engine: Engine, tmp_path: Path, first: str, second: str
) -> None:
    lines = [
        "external_id,email,customer_since",
        f"A1,{first},2020-01-01",
        "A2,someone@example.org,2020-01-01",
        f"A3,{second},2020-01-01",
    ]
    path = write(tmp_path, "c.csv", lines)
    with pytest.raises(ImportFailed) as caught:
        import_customers(engine, path)
    stored_first = first.rpartition("@")[0] + "@" + first.rpartition("@")[2].lower()
    assert [str(e) for e in caught.value.errors] == [f"{path}:4: email: same mailbox as line 2 ({stored_first!r})"]
    assert count(engine, Customer) == 0


def test_skip_invalid_keeps_the_first_customer_of_a_mailbox(engine: Engine, tmp_path: Path) -> None:
    lines = [
        "external_id,email,customer_since",
        "A1,anna@bücher.example,2020-01-01",
        "A2,anna@xn--bcher-kva.example,2020-01-01",
    ]
    report = import_customers(engine, write(tmp_path, "c.csv", lines), skip_invalid=True)
    assert (report.inserted, [e.line for e in report.rejected]) == (1, [3])
    assert customer(engine, "A1").email == "anna@bücher.example"


def test_a_local_part_that_differs_in_case_is_another_mailbox(engine: Engine, tmp_path: Path) -> None:
    lines = ["external_id,email,customer_since", "A1,anna@example.com,2020-01-01", "A2,Anna@example.com,2020-01-01"]
    assert import_customers(engine, write(tmp_path, "c.csv", lines)).inserted == 2


def test_a_customer_in_the_store_keeps_its_mailbox_against_another_external_id(engine: Engine, tmp_path: Path) -> None:
    add_customer(engine, "A1", since=date(2020, 1, 1), email="anna@bücher.example")  # as earlier imports stored it
    lines = ["external_id,email,customer_since", "A2,anna@xn--bcher-kva.example,2020-01-01"]
    path = write(tmp_path, "c.csv", lines)
    with pytest.raises(ImportFailed) as caught:
        import_customers(engine, path)
    assert [str(e) for e in caught.value.errors] == [
        f"{path}:2: email: same mailbox as customer 'A1' in the store ('anna@bücher.example')"
    ]
    assert count(engine, Customer) == 1


def test_skip_invalid_rejects_a_row_whose_mailbox_the_store_holds_in_line_order(engine: Engine, tmp_path: Path) -> None:
    add_customer(engine, "A1", since=date(2020, 1, 1), email="anna@xn--bcher-kva.example")
    lines = [
        "external_id,email,customer_since",
        "A2,anna@BÜCHER.example,2020-01-01",
        "A3,broken,2020-01-01",
        "A4,other@example.com,2020-01-01",
    ]
    report = import_customers(engine, write(tmp_path, "c.csv", lines), skip_invalid=True)
    assert [(e.line, e.column) for e in report.rejected] == [(2, "email"), (3, "email")]
    assert report.inserted == 1 and count(engine, Customer) == 2
    rejected = (tmp_path / "c.csv.rejected.csv").read_text(encoding="utf-8").splitlines()
    assert rejected[1].startswith("A2,anna@BÜCHER.example,2020-01-01,2,email: same mailbox as customer 'A1'")


def test_a_mailbox_may_pass_to_another_customer_when_the_file_moves_its_holder(engine: Engine, tmp_path: Path) -> None:
    add_customer(engine, "A1", since=date(2020, 1, 1), email="shared@example.com")
    lines = ["external_id,email,customer_since", "A2,shared@example.com,2020-01-01", "A1,a1@example.com,2020-01-01"]
    report = import_customers(engine, write(tmp_path, "c.csv", lines))
    assert (report.inserted, report.updated) == (1, 1)
    assert (customer(engine, "A1").email, customer(engine, "A2").email) == ("a1@example.com", "shared@example.com")


def test_a_mailbox_stays_with_its_holder_when_the_row_moving_it_is_rejected(engine: Engine, tmp_path: Path) -> None:
    add_customer(engine, "A1", since=date(2020, 1, 1), email="one@example.com")
    add_customer(engine, "A2", since=date(2020, 1, 1), email="two@example.com")
    lines = [
        "external_id,email,customer_since",
        "A3,two@example.com,2020-01-01",  # A2's mailbox: A2 moves below, but that row is rejected
        "A2,one@example.com,2020-01-01",  # A1's mailbox, and A1 keeps it
    ]
    report = import_customers(engine, write(tmp_path, "c.csv", lines), skip_invalid=True)
    assert [(e.line, e.problem) for e in report.rejected] == [
        (2, "same mailbox as customer 'A2' in the store ('two@example.com')"),
        (3, "same mailbox as customer 'A1' in the store ('one@example.com')"),
    ]
    assert (report.inserted, report.updated, count(engine, Customer)) == (0, 0, 2)


# ---- the log command's enumerated options ------------------------------------------------------


@pytest.mark.parametrize("option", [["--status", "nonsense"], ["--format", "yaml"]])
def test_log_refuses_a_value_outside_its_list_and_names_the_valid_ones(project: Path, option: list[str]) -> None:
    result = CliRunner().invoke(cli, ["--config", str(project), "log", *option])
    assert result.exit_code == 2
    assert f"Invalid value for '{option[0]}'" in result.stderr
    statuses = ["sent", "queued", "deferred", "skipped", "failed", "bounced", "unknown"]
    valid = statuses if option[0] == "--status" else ["table", "csv", "json"]
    assert all(f"'{value}'" in result.stderr for value in valid)


def test_log_filters_by_a_valid_status(project: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(project), "log", "--status", "unknown"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split()[:2] == ["id", "updated"]
