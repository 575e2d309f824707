"""Sources in the service: the daemon syncs before a pass, status says when a source has failed too long."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailer.cli import cli
from mailer.config import load_settings
from mailer.service import sync as syncing
from mailer.service.daemon import Daemon
from mailer.store.tables import Customer, PassRun


def add_source(project: Path, folder: Path, extra: str = "") -> None:
    folder.mkdir()
    with project.open("a", encoding="utf-8") as config:
        config.write(f'\n[[source]]\nname = "drop"\nkind = "folder"\npath = "{folder}"\n{extra}')


def drop(folder: Path, name: str, text: str, age: timedelta = timedelta(hours=1)) -> None:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    old = (datetime.now(UTC) - age).timestamp()
    os.utime(path, (old, old))


def test_the_daemon_syncs_the_sources_before_each_pass(
    project: Path, engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    add_source(project, tmp_path / "drop")
    drop(tmp_path / "drop", "customers.csv", "external_id,email,customer_since\nS1,s1@example.com,2020-01-01\n")
    daemon = Daemon(engine, load_settings(project), sole_sender=True)

    daemon.pass_job()

    with Session(engine) as session:
        assert session.execute(select(Customer.email).where(Customer.external_id == "S1")).scalar_one() == (
            "s1@example.com"
        )
        assert session.execute(select(PassRun.kind)).scalars().all() == ["pass"]
    [record] = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "sync_done"]
    assert record.getMessage() == "source drop: 1 new, 0 updated, 0 unchanged, 0 rejected"


def test_a_failing_source_is_logged_and_the_pass_still_runs(
    project: Path, engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    add_source(project, tmp_path / "drop")
    (tmp_path / "drop").rmdir()  # the folder is gone (an unmounted share)
    daemon = Daemon(engine, load_settings(project), sole_sender=True)

    daemon.pass_job()

    [record] = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "sync_failed"]
    assert "no such folder" in record.getMessage()
    with Session(engine) as session:
        assert session.execute(select(PassRun.status)).scalars().all() == ["done"]


def test_status_exits_1_once_a_source_has_failed_longer_than_its_alert_after(
    project: Path, engine: Engine, tmp_path: Path
) -> None:
    add_source(project, tmp_path / "drop", 'alert_after = "2h"\n')
    settings = load_settings(project)
    bad = "external_id,email,customer_since\nS1,broken,2020-01-01\n"
    drop(tmp_path / "drop", "customers.csv", bad, age=timedelta(hours=5))
    now = datetime.now(UTC)
    syncing.sync(engine, settings, now=now - timedelta(hours=4))
    assert syncing.states(engine)["drop"].failing_since == now - timedelta(hours=4)
    syncing.sync(engine, settings, now=now - timedelta(hours=3))  # the bad file was moved aside: all well again
    assert syncing.states(engine)["drop"].failing_since is None

    drop(tmp_path / "drop", "customers-2.csv", bad, age=timedelta(hours=5))
    syncing.sync(engine, settings, now=now - timedelta(hours=3))
    states = syncing.states(engine)
    assert syncing.problems(settings.sources, states, now - timedelta(hours=1)) == []  # failing 2 h: not yet
    [problem] = syncing.problems(settings.sources, states, now)
    assert problem.startswith("source drop failing since ") and "1 file(s) rejected" in problem

    result = CliRunner().invoke(cli, ["--config", str(project), "status", "--format", "json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert problem in report["problems"]
    assert report["sources"]["drop"].startswith("failing since ")
