"""Importing a gift pool: all codes or none, duplicates and bad expiry dates named by file and line."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session, col

from mailer.contacts.csvfile import ImportFailed
from mailer.contacts.giftpool import import_codes
from mailer.store.tables import GiftCode

TODAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def pool(engine: Engine, gift: str = "spring-voucher") -> dict[str, date | None]:
    with Session(engine) as session:
        rows = session.execute(select(GiftCode).where(col(GiftCode.gift) == gift)).scalars()
        return {r.code: r.expires_on for r in rows}


def test_a_good_file_adds_every_code_with_its_expiry_and_where_it_came_from(engine: Engine, tmp_path: Path) -> None:
    text = "code,expires,note\nNW-AAA1,2027-06-30,shop\nNW-BBB2,,\n NW-CCC3 ,2027-01-31,\n"
    path = write(tmp_path / "codes.csv", text)
    report = import_codes(engine, "spring-voucher", path, TODAY, NOW)
    assert report.added == 3 and report.earliest_expiry == date(2027, 1, 31)
    assert "3 codes added" in report.summary()
    assert pool(engine) == {"NW-AAA1": date(2027, 6, 30), "NW-BBB2": None, "NW-CCC3": date(2027, 1, 31)}
    with Session(engine) as session:
        mine = col(GiftCode.gift) == "spring-voucher"
        sources = set(session.execute(select(col(GiftCode.source)).where(mine)).scalars())
        states = set(session.execute(select(col(GiftCode.state)).where(mine)).scalars())
    assert sources == {"codes.csv:2", "codes.csv:3", "codes.csv:4"} and states == {"available"}


def test_a_code_twice_in_the_file_is_refused_with_both_lines_and_nothing_is_imported(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(tmp_path / "codes.csv", "code\nNW-1\nNW-2\nNW-1\n")
    with pytest.raises(ImportFailed) as failed:
        import_codes(engine, "spring-voucher", path, TODAY, NOW)
    assert str(failed.value) == f"{path}:4: code: 'NW-1' is also on line 2"
    assert pool(engine) == {}


def test_a_code_already_in_the_pool_is_refused_and_the_rest_of_the_file_waits(engine: Engine, tmp_path: Path) -> None:
    import_codes(engine, "spring-voucher", write(tmp_path / "first.csv", "code\nNW-1\n"), TODAY, NOW)
    second = write(tmp_path / "second.csv", "code\nNW-2\nNW-1\n")
    with pytest.raises(ImportFailed, match=r"second.csv:3: code: 'NW-1' is already in the pool of 'spring-voucher'"):
        import_codes(engine, "spring-voucher", second, TODAY, NOW)
    assert set(pool(engine)) == {"NW-1"}
    # Another gift's pool is another pool: the same code may be there.
    import_codes(engine, "other", write(tmp_path / "other.csv", "code\nNW-1\n"), TODAY, NOW)
    assert set(pool(engine, "other")) == {"NW-1"}


def test_bad_expiry_dates_and_codes_are_each_named_and_nothing_is_imported(engine: Engine, tmp_path: Path) -> None:
    path = write(
        tmp_path / "codes.csv",
        "code,expires\nNW-1,2027-02-30\nNW-2,31/12/2027\nNW-3,2026-11-23\n,2027-01-01\nNW 4,\nNW-5,2027-01-01\n",
    )
    with pytest.raises(ImportFailed) as failed:
        import_codes(engine, "spring-voucher", path, TODAY, NOW)
    assert str(failed.value).splitlines() == [
        f"{path}:2: expires: not a date: '2027-02-30' (write YYYY-MM-DD)",
        f"{path}:3: expires: not a date: '31/12/2027' (write YYYY-MM-DD)",
        f"{path}:4: expires: 2026-11-23 is not after today (2026-11-23): the code could never be given",
        f"{path}:5: code: is empty",
        f"{path}:6: code: 'NW 4': use letters, digits and - _ . : / + = (at most 100, no spaces)",
    ]
    assert pool(engine) == {}


def test_a_file_without_a_code_column_is_refused_at_its_header(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "codes.csv", "voucher,expires\nNW-1,2027-01-01\n")
    with pytest.raises(ImportFailed, match=r"codes.csv:1: code: missing column"):
        import_codes(engine, "spring-voucher", path, TODAY, NOW)
