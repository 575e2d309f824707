"""The drop folder: good files go to done/, bad ones to rejected/ with every bad row, partial ones wait."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer.cli import cli
from mailer.config import Campaign, Settings
from mailer.config.settings import SourceSettings
from mailer.service import sync as syncing
from mailer.store.tables import Customer

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
HEADER = "external_id,email,customer_since,shoe_size"


def drop(folder: Path, name: str, lines: list[str], *, age: timedelta = timedelta(hours=1)) -> Path:
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    stamp = (NOW - age).timestamp()
    os.utime(path, (stamp, stamp))
    return path


def folder_settings(settings: Settings, folder: Path) -> Settings:
    return replace(settings, sources=(SourceSettings(name="drop", kind="folder", path=folder),))


def external_ids(engine: Engine) -> set[str]:
    with Session(engine) as session:
        return set(session.execute(select(Customer.external_id).where(Customer.external_id.like("D%"))).scalars())  # type: ignore[attr-defined]


def test_good_bad_and_half_written_files(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    drop(folder, "customers-1.csv", [HEADER, "D1,d1@example.com,2020-01-01,42", "D2,d2@example.com,2020-01-02,"])
    drop(folder, "customers-2.csv", [HEADER, "D3,nope,2020-01-01,", "D4,d4@example.com,2020-01-01,", "D5,,2020-13-01,"])
    drop(folder, "interactions-1.csv", ["external_id,kind,occurred_at,reference", "D1,order,2026-11-01,o-1"])
    drop(folder, "customers-3.csv.part", [HEADER, "D6,d6@example.com,2020-01-01,"])
    drop(folder, "customers-4.csv", [HEADER, "D7,d7@example.com,2020-01-01,"], age=timedelta(seconds=5))

    [outcome] = syncing.sync(engine, folder_settings(settings, folder), now=NOW)

    assert (outcome.new, outcome.rejected, outcome.waiting) == (3, 1, 1)  # 2 customers and 1 order; 1 file bad
    assert outcome.failed and "1 file(s) rejected" in outcome.error
    assert external_ids(engine) == {"D1", "D2"}  # nothing of the bad file, though D4 was a good row
    assert sorted(p.name for p in (folder / "done").iterdir()) == ["customers-1.csv", "interactions-1.csv"]
    rejected = sorted(p.name for p in (folder / "rejected").iterdir())
    assert rejected == ["customers-2.csv", "customers-2.csv.errors.txt"]
    errors = (folder / "rejected" / "customers-2.csv.errors.txt").read_text(encoding="utf-8").splitlines()
    where = [line.split(": ")[0:2] for line in errors]
    assert where == [["customers-2.csv:2", "email"], ["customers-2.csv:4", "email"]]
    # Still being written: left where they are for the next sync.
    assert sorted(p.name for p in folder.glob("customers-*")) == ["customers-3.csv.part", "customers-4.csv"]

    later = NOW + timedelta(minutes=5)
    [again] = syncing.sync(engine, folder_settings(settings, folder), now=later)
    assert (again.new, again.rejected, again.waiting, again.failed) == (1, 0, 0, False)
    assert external_ids(engine) == {"D1", "D2", "D7"}


def test_a_dropped_file_is_checked_against_the_date_campaigns_columns(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    renewal = Campaign(name="renewal-reminder", occasion="date", template="anniversary", attribute="renewal_date")
    dated = replace(folder_settings(settings, folder), campaigns=(*settings.campaigns, renewal))
    drop(folder, "customers.csv", ["external_id,email,customer_since,renewal_date", "D1,d1@example.com,2020-01-01,x"])

    [outcome] = syncing.sync(engine, dated, now=NOW)

    assert outcome.failed and outcome.rejected == 1 and external_ids(engine) == set()  # as `mailer import` would
    errors = (folder / "rejected" / "customers.csv.errors.txt").read_text(encoding="utf-8")
    assert errors.startswith("customers.csv:2: renewal_date: ")


def test_mailer_sync_prints_each_source_and_exits_1_when_one_failed(project: Path, tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    drop(good, "customers.csv", [HEADER, "D1,d1@example.com,2020-01-01,42"], age=timedelta(days=30))
    drop(bad, "customers.csv", [HEADER, "D2,broken,2020-01-01,"], age=timedelta(days=30))
    with open(project, "a", encoding="utf-8") as config:
        config.write(f'\n[[source]]\nname = "good"\nkind = "folder"\npath = "{good}"\n')
        config.write(f'\n[[source]]\nname = "bad"\nkind = "folder"\npath = "{bad}"\n')
    runner = CliRunner()

    dry = runner.invoke(cli, ["--config", str(project), "sync", "good", "--dry-run"])
    assert (dry.exit_code, dry.stdout) == (0, "would sync good: 1 new, 0 updated, 0 unchanged, 0 rejected\n")
    assert (good / "customers.csv").exists()

    result = runner.invoke(cli, ["--config", str(project), "sync"])
    assert result.exit_code == 1
    assert result.stdout == "good: 1 new, 0 updated, 0 unchanged, 0 rejected\n"
    assert result.stderr.splitlines()[0] == (
        "bad: 0 new, 0 updated, 0 unchanged, 1 rejected; failed: 1 file(s) rejected; the other files were imported"
    )
    assert "customers.csv:2: email: not a valid email address" in result.stderr

    unknown = runner.invoke(cli, ["--config", str(project), "sync", "shop"])
    assert unknown.exit_code != 0 and "no [[source]] named 'shop'" in unknown.stderr

    again = runner.invoke(cli, ["--config", str(project), "sync"])
    assert again.exit_code == 0
    assert again.stdout.splitlines() == [
        "good: 0 new, 0 updated, 0 unchanged, 0 rejected",
        "bad: 0 new, 0 updated, 0 unchanged, 0 rejected",
    ]
