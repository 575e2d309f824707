"""The daemon reads the [inbox] at start-up and on [schedule] inbox_every, and outlives an unreadable one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session, col

from mailer.config import load_settings
from mailer.service.daemon import Daemon
from mailer.store.tables import Customer
from tests.support.factories import add_customer
from tests.support.inbox import sample_bytes

PYTHON_MAILER = [sys.executable, "-c", "from mailer.cli import main; main()"]


def unsubscribed(engine: Engine, email: str) -> str | None:
    with Session(engine) as session:
        return session.execute(
            select(col(Customer.unsubscribe_source)).where(col(Customer.email) == email)
        ).scalar_one()


@pytest.mark.slow
def test_the_daemon_reads_the_inbox_at_start_up_and_logs_what_it_found(
    project: Path, engine: Engine, tmp_path: Path
) -> None:
    with project.open("a", encoding="utf-8") as config:
        config.write('\n[inbox]\nkind = "maildir"\npath = "inbox"\n')
    text = project.read_text(encoding="utf-8").replace("[schedule]\n", '[schedule]\ninbox_every = "1h"\n', 1)
    project.write_text(text, encoding="utf-8")
    for sub in ("new", "cur", "tmp"):
        (project.parent / "inbox" / sub).mkdir(parents=True)
    add_customer(engine, "A1", since=date(2020, 1, 1), email="ann@example.com")
    (project.parent / "inbox" / "new" / "1.unsubscribe.mx1").write_bytes(
        sample_bytes("mailto-unsubscribe", "ann@example.com")
    )
    log = tmp_path / "daemon.log"
    with log.open("wb") as stderr:
        daemon = subprocess.Popen(
            [*PYTHON_MAILER, "--config", str(project), "--log-json", "daemon"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 60
        while unsubscribed(engine, "ann@example.com") is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert unsubscribed(engine, "ann@example.com") == "mailto"
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    [started] = [e for e in events if e.get("event") == "daemon_started"]
    assert "inbox every 1:00:00" in started["message"]
    [done] = [e for e in events if e.get("event") == "inbox_done"]
    assert done["counts"] == {"unsubscribe": 1}


def test_an_unreadable_inbox_is_logged_and_the_daemon_goes_on(
    project: Path, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with project.open("a", encoding="utf-8") as config:
        config.write('\n[inbox]\nkind = "maildir"\npath = "nowhere"\n')
    daemon = Daemon(engine, load_settings(project), sole_sender=True)

    daemon.inbox_job()  # raises nothing: the next run tries again

    [record] = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "inbox_failed"]
    assert record.getMessage() == (
        f"inbox failed: [inbox] path: {project.parent / 'nowhere'} is not a Maildir folder (it needs new/ and cur/)"
    )
