"""CSV import: every row validated, all or nothing by default, bad rows listed as FILE:LINE: column: problem."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from mailer.cli import cli
from mailer.importer import ImportFailed, import_customers, import_interactions
from mailer.models import Customer, Interaction

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
        (["external_id,email", "A,a@example.com"], "utf-8", "c.csv:1: customer_since: missing column"),
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
